package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/docblocks"
	"github.com/ratemesh/ratemesh/internal/testlog"
)

// docSessions lists the terminal sessions of a page's fenced blocks.
func docSessions(t *testing.T, page string) []docblocks.Session {
	t.Helper()
	var out []docblocks.Session
	for _, b := range docblocks.Load(t, repoRoot, page) {
		out = append(out, docblocks.Sessions(b.Text)...)
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
		if !strings.HasPrefix(s.Command, "curl ") || !strings.Contains(s.Command, "localhost:8081/") {
			t.Fatalf("docs/envoy.md: a session that is not curl to localhost:8081: %s", s.Command)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, "bash", "-c", strings.ReplaceAll(s.Command, "localhost:8081", n.HTTP))
		cmd.Env = append(os.Environ(), "RATEMESH_API_TOKEN="+tokenA)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		got, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("%s: %v %s", s.Command, err, stderr.String())
		}
		if strings.HasPrefix(s.Output, "{") {
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("%s printed %s: %v", s.Command, got, err)
			}
			if err := json.Unmarshal([]byte(s.Output), &w); err != nil {
				t.Fatalf("docs/envoy.md: the output of %s is not JSON: %v", s.Command, err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("%s printed\n%s\nthe page shows\n%s", s.Command, got, s.Output)
			}
		} else if string(got) != s.Output {
			t.Errorf("%s printed\n%s\nthe page shows\n%s", s.Command, got, s.Output)
		}
	}
}
