package yamlsyntax

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestLineAndMessage(t *testing.T) {
	const head = "domain: edge\ndescriptors:\n  - key: plan\n"
	for _, tc := range []struct {
		yaml, msg string
		line      int
	}{
		{head + "    rate_limit: {unit: minute, requests_per_unit: 2\n  - key: other\n", "did not find expected ',' or '}'", 4},
		{head + "    value: \"x\n  - key: other\n", "found unexpected end of stream", 4},
		{head + "   value: x\n", "did not find expected '-' indicator", 4},
		{head + "    value: x\n  key: y\n", "did not find expected '-' indicator", 5},
		{head + "\tvalue: x\n", "found a tab character that violates indentation", 4},
		{"domain: edge\ndescriptors:\n  - key: [plan\n", "did not find expected ',' or ']'", 3},
		{"a: b: c\n", "mapping values are not allowed in this context", 1},
	} {
		var n yaml.Node
		err := yaml.Unmarshal([]byte(tc.yaml), &n)
		if err == nil {
			t.Fatalf("%q parses", tc.yaml)
		}
		if got := Line([]byte(tc.yaml)); got != tc.line || Message(err) != tc.msg {
			t.Errorf("%q: line %d, %q; want %d, %q", tc.yaml, got, Message(err), tc.line, tc.msg)
		}
	}
	if got := Line([]byte("a: 1\nb: [2]\n")); got != 0 {
		t.Errorf("valid YAML: line %d, want 0", got)
	}
	big := []byte(strings.Repeat("k: value\n", 400_000) + "x: [\n")
	if got := Line(big); got != 0 {
		t.Errorf("a 3.6 MB file: line %d, want 0 (past the budget)", got)
	}
}
