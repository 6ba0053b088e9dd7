//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/ratemesh/ratemesh/internal/docblocks"
)

// docStep is a command of a page's sh block and what the page says it
// prints: the "# " comment lines after it, a comment at the end of its
// line, or the json block that follows the sh block.
type docStep struct {
	command, want string
}

// docBlock is an sh block of a page, with the heading it is under.
type docBlock struct {
	heading string
	steps   []docStep
}

var (
	// trailingOutput is a comment at the end of a command's line that shows
	// what it prints.
	trailingOutput = regexp.MustCompile(`^(.*?\S)\s+# (\{.*)$`)
	// statusNote is a status code after a shown output: "...}      (401)".
	statusNote = regexp.MustCompile(`\s+\(\d{3}\)$`)
)

// pageBlocks reads the sh blocks of a page in order. A command runs to the
// next line that is a comment or starts another command (a line that
// neither continues with a backslash nor closes an open quote); the
// comment lines after it are its output, without "# ". A json block right
// after an sh block is the output of that block's last command.
func pageBlocks(t *testing.T, page string) []docBlock {
	t.Helper()
	var blocks []docBlock
	for _, b := range docblocks.Load(t, repoRoot, page) {
		if b.Lang == "json" && len(blocks) > 0 && strings.TrimSpace(b.Before) == "" {
			last := &blocks[len(blocks)-1].steps[len(blocks[len(blocks)-1].steps)-1]
			if last.want == "" {
				last.want = strings.TrimSpace(b.Text)
			}
			continue
		}
		if b.Lang == "sh" {
			blocks = append(blocks, docBlock{heading: b.Heading, steps: shSteps(b.Text)})
		}
	}
	return blocks
}

// shSteps splits an sh block into its commands and their shown outputs.
func shSteps(body string) []docStep {
	var steps []docStep
	var cmd []string
	open := false // inside a quote or after a backslash
	for _, line := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
		if !open && strings.HasPrefix(line, "# ") {
			if len(steps) > 0 {
				s := &steps[len(steps)-1]
				s.want = strings.TrimSpace(s.want + "\n" + strings.TrimPrefix(line, "# "))
			}
			continue
		}
		want := ""
		if !open {
			if m := trailingOutput.FindStringSubmatch(line); m != nil {
				line, want = m[1], m[2]
			}
		}
		cmd = append(cmd, line)
		open = strings.HasSuffix(line, "\\") || strings.Count(strings.Join(cmd, "\n"), "'")%2 == 1
		if !open {
			steps = append(steps, docStep{command: strings.Join(cmd, "\n"), want: want})
			cmd = nil
		}
	}
	return steps
}

// stepMark starts the output of each command of a block.
const stepMark = "@@http-api.md step "

// volatileNumbers are JSON fields whose numbers are times: they differ from
// run to run.
var volatileNumbers = map[string]bool{"reset": true, "expiry": true, "start": true, "retry_after": true}

// sameJSON says whether got has what the page shows: the same fields, the
// same values but for times, node names and addresses (which differ from run
// to run), and "..." in a shown string standing for any text.
func sameJSON(field string, got, want any) bool {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k, v := range w {
			if gv, ok := g[k]; !ok || !sameJSON(k, gv, v) {
				return false
			}
		}
		return true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !sameJSON(field, g[i], w[i]) {
				return false
			}
		}
		return true
	case float64:
		_, ok := got.(float64)
		return ok && (volatileNumbers[field] || got == want)
	case string:
		g, ok := got.(string)
		switch {
		case !ok:
			return false
		case field == "node" || field == "name":
			return regexp.MustCompile(`^node\d+$`).MatchString(g)
		case field == "rpc_addr" || field == "http_addr":
			return regexp.MustCompile(`^127\.0\.0\.1:\d+$`).MatchString(g)
		}
		parts := strings.Split(w, "...")
		for i, p := range parts {
			p = strings.TrimSpace(p)
			j := strings.Index(g, p)
			if j < 0 || (i == 0 && j != 0) {
				return false
			}
			g = g[j+len(p):]
		}
		return strings.TrimSpace(parts[len(parts)-1]) == "" || g == ""
	default:
		return reflect.DeepEqual(got, want)
	}
}

// sameOutput says whether a command printed what the page shows: as JSON
// (sameJSON) when the page shows JSON, else line for line, a number after
// "retry-after=" standing for any.
func sameOutput(got, want string) bool {
	want = statusNote.ReplaceAllString(strings.TrimSpace(want), "")
	got = strings.TrimSpace(got)
	var w, g any
	if json.Unmarshal([]byte(want), &w) == nil {
		return json.Unmarshal([]byte(got), &g) == nil && sameJSON("", g, w)
	}
	pattern := regexp.QuoteMeta(want)
	pattern = regexp.MustCompile(`retry-after=\d+`).ReplaceAllString(pattern, `retry-after=\d+`)
	return regexp.MustCompile(`(?i)^` + pattern + `$`).MatchString(got)
}

// TestHTTPAPIDocBlocks runs every sh block of docs/http-api.md, command by
// command, against the README's local cluster (./scripts/cluster.sh up), and
// checks each command prints what the page shows after it. The page's
// blocks for a cluster with an API token and for a node in --shadow run
// last, on the same cluster restarted with RATEMESH_API_TOKEN and
// RATEMESH_SHADOW, as the page says. The denied body the page shows is
// what the sixth GET /products of one key gets. Skipped when a port of
// the README's cluster is taken.
func TestHTTPAPIDocBlocks(t *testing.T) {
	nodeBinary(t)
	skipUnlessFree(t, readmePorts...)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: docs/http-api.md's commands are not run")
	}
	blocks := pageBlocks(t, "docs/http-api.md")
	var later []docBlock // the token and shadow blocks
	var now []docBlock
	for _, b := range blocks {
		switch {
		case strings.Contains(b.heading, "Tokens"), strings.Contains(b.heading, "Shadow"):
			later = append(later, b)
		default:
			now = append(now, b)
		}
	}
	if len(blocks) != 9 || len(later) != 2 {
		t.Fatalf("docs/http-api.md: %d sh blocks (%d for tokens and shadow), want 9 (2): update this test with the page", len(blocks), len(later))
	}
	downAtEnd(t)
	run := func(script string, env ...string) string {
		for i := len(env) - 1; i >= 0; i-- {
			script = "export " + env[i] + "\n" + script
		}
		return runScript(t, repoRoot, script)
	}
	// check runs a block in one shell (a variable one command sets is there
	// for the next), each command's output marked off from the next's.
	check := func(b docBlock, env ...string) {
		var script strings.Builder
		for i, s := range b.steps {
			fmt.Fprintf(&script, "echo '%s%d'\n%s\n", stepMark, i, s.command)
		}
		outs := strings.Split(run(script.String(), env...), stepMark)[1:]
		if len(outs) != len(b.steps) {
			t.Fatalf("docs/http-api.md, %s: %d outputs of %d commands", b.heading, len(outs), len(b.steps))
		}
		for i, s := range b.steps {
			_, got, _ := strings.Cut(outs[i], "\n")
			if s.want != "" && !sameOutput(got, s.want) {
				t.Errorf("docs/http-api.md, %s:\n%s\nprinted\n%s\nthe page shows\n%s", b.heading, s.command, got, s.want)
			}
		}
	}

	run("./scripts/cluster.sh up")
	for _, b := range now {
		check(b)
	}
	denied := regexp.MustCompile("(?s)A denied request gets the\ntutorial's body:\n\n```json\n(.*?)\n```")
	page, err := os.ReadFile(filepath.Join(repoRoot, "docs", "http-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	body := denied.FindSubmatch(page)
	if body == nil {
		t.Fatal("docs/http-api.md shows no denied body")
	}
	got := run(`for i in 1 2 3 4 5; do curl -s -o /dev/null -H 'X-API-KEY: http-api-doc' http://127.0.0.1:8081/products; done
curl -s -H 'X-API-KEY: http-api-doc' http://127.0.0.1:8081/products`)
	if !sameOutput(got, string(body[1])) {
		t.Errorf("the sixth GET /products printed\n%s\ndocs/http-api.md shows\n%s", got, body[1])
	}

	token := "TOKEN=http-api-doc-token-0123456789"
	run("./scripts/cluster.sh down")
	run("RATEMESH_API_TOKEN=\"$TOKEN\" RATEMESH_SHADOW=true ./scripts/cluster.sh up", token)
	check(later[0], token)
	run(`for i in 1 2 3 4 5; do curl -s -o /dev/null http://127.0.0.1:8081/products; done`)
	check(later[1])
	run("./scripts/cluster.sh down")
}
