package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/testlog"
)

// docSession is a terminal session a page shows: a command after "$ ",
// continued on lines that end in a backslash, and what it prints.
type docSession struct {
	command, output string
}

// docSessions lists the sessions of the page's fenced blocks that start
// with "$ ".
func docSessions(t *testing.T, page string) []docSession {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, page))
	if err != nil {
		t.Fatal(err)
	}
	var out []docSession
	for _, m := range fence.FindAllStringSubmatch(string(b), -1) {
		text := dedent(m[2])
		if !strings.HasPrefix(text, "$ ") {
			continue
		}
		lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
		i := 0
		for strings.HasSuffix(lines[i], "\\") && i+1 < len(lines) {
			i++
		}
		out = append(out, docSession{
			command: strings.TrimPrefix(strings.Join(lines[:i+1], "\n"), "$ "),
			output:  strings.Join(lines[i+1:], "\n") + "\n",
		})
	}
	return out
}

// TestEnvoyDocSessions runs the curl sessions of docs/envoy.md (GET
// /rlconfig, POST /json) with curl against a node serving the example's
// config with a token, as the page's node on localhost:8081 does, and
// checks they print what the page shows: /rlconfig byte for byte, a JSON
// answer as the same JSON (protobuf's JSON writer varies its spaces).
func TestEnvoyDocSessions(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: docs/envoy.md's curl sessions are not run")
	}
	var logs testlog.Buffer
	n, _, _, _ := exampleGateway(t, &logs, "--api-token", tokenA)
	sessions := docSessions(t, "docs/envoy.md")
	if len(sessions) != 2 {
		t.Fatalf("docs/envoy.md shows %d curl sessions, want 2 (/rlconfig and /json)", len(sessions))
	}
	for _, s := range sessions {
		if !strings.HasPrefix(s.command, "curl ") || !strings.Contains(s.command, "localhost:8081/") {
			t.Fatalf("docs/envoy.md: a session that is not curl to localhost:8081: %s", s.command)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, "bash", "-c", strings.ReplaceAll(s.command, "localhost:8081", n.HTTP))
		cmd.Env = append(os.Environ(), "RATEMESH_API_TOKEN="+tokenA)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		got, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("%s: %v %s", s.command, err, stderr.String())
		}
		if strings.HasPrefix(s.output, "{") {
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("%s printed %s: %v", s.command, got, err)
			}
			if err := json.Unmarshal([]byte(s.output), &w); err != nil {
				t.Fatalf("docs/envoy.md: the output of %s is not JSON: %v", s.command, err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("%s printed\n%s\nthe page shows\n%s", s.command, got, s.output)
			}
		} else if string(got) != s.output {
			t.Errorf("%s printed\n%s\nthe page shows\n%s", s.command, got, s.output)
		}
	}
}
