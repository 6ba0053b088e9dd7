//go:build linux

package counterapi_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/docblocks"
)

// flaskApp is the smallest Flask app around docs/flask.md's block (%s): one
// route, which the block's default limit covers, called argv[1] times
// through Flask's test client; it prints each status.
const flaskApp = `import sys
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
app = Flask(__name__)
%s
@app.route("/products")
def products():
    return "ok"
client = app.test_client()
print(" ".join(str(client.get("/products").status_code) for _ in range(int(sys.argv[1]))))
`

// TestFlaskDocBlock runs the Python block of docs/flask.md in a Flask app
// of two processes, one after the other, with the block's storage URI
// naming three node processes (and their token, an option of the page's):
// the first sends 60 requests, the second 41. The block's "100 per hour"
// is one counter in the cluster for both, so the second's last request,
// the 101st, is the one denied.
func TestFlaskDocBlock(t *testing.T) {
	needPython(t, "flask_limiter, limits")
	blocks := docblocks.Load(t, "../..", "docs/flask.md")
	var block string
	for _, b := range blocks {
		if b.Lang == "python" {
			block += b.Text
		}
	}
	uri := regexp.MustCompile(`"ratemesh://[^"]*"`)
	if n := len(uri.FindAllString(block, -1)); n != 1 {
		t.Fatalf("docs/flask.md: %d ratemesh:// URIs in its Python blocks, want 1: update this test with the page", n)
	}
	ps := startProcs(t, 3)
	waitMembers(t, client(t), ps, "every node did not list the 3 members")
	var addrs []string
	for _, p := range ps {
		addrs = append(addrs, p.http)
	}
	block = uri.ReplaceAllLiteralString(block, `"ratemesh://`+strings.Join(addrs, ",")+"?token="+testToken+`"`)
	app := filepath.Join(t.TempDir(), "app.py")
	if err := os.WriteFile(app, []byte(fmt.Sprintf(flaskApp, block)), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := runApp(t, app, 60), strings.TrimSpace(strings.Repeat("200 ", 60)); got != want {
		t.Fatalf("the first app process got %s, want 60 times 200", got)
	}
	if got, want := runApp(t, app, 41), strings.Repeat("200 ", 40)+"429"; got != want {
		t.Fatalf("the second app process got %s, want 40 times 200 and 429", got)
	}
}

// runApp runs the app with n requests and returns the statuses it printed.
func runApp(t *testing.T, app string, n int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, app, fmt.Sprint(n))
	cmd.Env = append(os.Environ(), "PYTHONPATH=../../clients/python", "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v %s", app, err, stderrOf(err))
	}
	return strings.TrimSpace(string(out))
}

// stderrOf is what a failed command wrote on stderr.
func stderrOf(err error) string {
	if e, ok := err.(*exec.ExitError); ok {
		return string(e.Stderr)
	}
	return ""
}
