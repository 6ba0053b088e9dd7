package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The scripts need only bash, Go and curl (and what a bench names with
// need): they read JSON with the node binary, never with jq.
func TestScriptsNeedNoJQ(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "scripts", "*.sh"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts found: %v", err)
	}
	jq := regexp.MustCompile(`(^|[\s|;(&])jq(\s|$)`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if code, _, _ := strings.Cut(line, "#"); jq.MatchString(code) {
				t.Errorf("%s:%d runs jq: %s", filepath.Base(f), i+1, strings.TrimSpace(line))
			}
		}
	}
}
