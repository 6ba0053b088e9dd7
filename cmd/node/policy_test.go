package main

import (
	"log/slog"
	"testing"

	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
)

// writePolicy writes content to policy.yaml in a temporary directory.
func writePolicy(t *testing.T, content string) string {
	t.Helper()
	return testkit.WriteTemp(t, "policy.yaml", content)
}

// A route of the policy that matches no route of the demo is loaded (the
// file is valid) but said at start: it limits nothing.
func TestUnservedPolicyRouteWarns(t *testing.T) {
	n := startedNode(t)
	h := &httpOptions{demo: true, jwtSecret: "js", headers: "all", policyFile: writePolicy(t,
		"routes:\n  - method: GET\n    path: /prodcts\n    limits: \"5/minute\"\n  - method: DELETE\n    path: /products\n    limits: \"1/minute\"\n  - path: /login\n    limits: \"3/minute\"\n")}
	var logs testlog.Buffer
	if _, _, err := h.handler(n, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: dropTime}))); err != nil {
		t.Fatal(err)
	}
	want := `level=WARN msg="a route of the policy matches no route the node serves: it limits nothing; did you mean \"/products\"?" route="GET /prodcts"` + "\n" +
		`level=WARN msg="a route of the policy matches no route the node serves: it limits nothing" route="DELETE /products"` + "\n"
	if got := logs.String(); got != want {
		t.Fatalf("log:\n%s\nwant:\n%s", got, want)
	}
}
