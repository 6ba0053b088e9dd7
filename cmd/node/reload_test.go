package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
)

// replaceFile writes content to path through a rename, as an editor or a
// config tool does, so that no read sees it half-written.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// productsPolicy is a policy file limiting GET /products, the limit on
// line 4.
func productsPolicy(limit string) string {
	return "# test policy\nroutes:\n  - method: GET\n    limits: \"" + limit + "\"\n    path: /products\n"
}

// admitted sends n GET /products and counts the 200s; any status but 200
// and 429 fails the test.
func admitted(t *testing.T, c *http.Client, addr string, n int) int {
	t.Helper()
	ok := 0
	for i := range n {
		switch code, body, _ := get(t, c, "GET", "http://"+addr+"/products"); code {
		case 200:
			ok++
		case 429:
		default:
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	return ok
}

// waitLog waits until the logs hold want n times.
func waitLog(t *testing.T, logs *testlog.Buffer, want string, n int) {
	t.Helper()
	var all string
	testkit.Eventually(t, 10*time.Second, "log line "+want, func() bool {
		all = logs.String()
		return strings.Count(all, want) >= n
	}, &all)
}

// TestPolicyReload: a changed --policy file is applied to the running
// node without a restart; a broken one is refused with its file, line and
// string logged once, and the limits stay those of the last good file.
func TestPolicyReload(t *testing.T) {
	policy := writePolicy(t, productsPolicy("2 per minute"))
	var logs testlog.Buffer
	n, c := servedClient(t, &logs, "--policy", policy, "--reload-interval", "20ms", "--headers", "none")
	if got := admitted(t, c, n.HTTP, 5); got != 2 {
		t.Fatalf("2 per minute: %d of 5 admitted", got)
	}

	replaceFile(t, policy, productsPolicy("4 per minute"))
	waitLog(t, &logs, `msg=reloaded flag=--policy file=`+policy, 1)
	// A new limit is a new counter: its window starts now.
	if got := admitted(t, c, n.HTTP, 6); got != 4 {
		t.Fatalf("4 per minute after the reload: %d of 6 admitted", got)
	}

	replaceFile(t, policy, productsPolicy("2 per fortnight"))
	refused := `msg="reload refused; keeping the last good version" flag=--policy file=` + policy +
		` err="` + policy + `:4: limits \"2 per fortnight\": `
	waitLog(t, &logs, refused, 1)
	// Still the spent "4 per minute": the tutorial's own limit would admit.
	if got := admitted(t, c, n.HTTP, 3); got != 0 {
		t.Fatalf("after a refused file: %d of 3 admitted, want the old limit's 0", got)
	}

	replaceFile(t, policy, productsPolicy("3 per minute"))
	waitLog(t, &logs, `msg=reloaded flag=--policy`, 2)
	if got := admitted(t, c, n.HTTP, 4); got != 3 {
		t.Fatalf("3 per minute after the fix: %d of 4 admitted", got)
	}
	if got := strings.Count(logs.String(), "reload refused"); got != 1 {
		t.Fatalf("the broken file was logged %d times over its polls, want once:\n%s", got, logs.String())
	}
}

// TestPolicyReloadOnSIGHUP: with polling off, SIGHUP applies the file.
func TestPolicyReloadOnSIGHUP(t *testing.T) {
	policy := writePolicy(t, productsPolicy("1 per minute"))
	var logs testlog.Buffer
	n, c := servedClient(t, &logs, "--policy", policy, "--reload-interval", "0s", "--headers", "none")
	replaceFile(t, policy, productsPolicy("3 per minute"))
	if got := admitted(t, c, n.HTTP, 2); got != 1 {
		t.Fatalf("before SIGHUP: %d of 2 admitted, want the old 1", got)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, &logs, `msg=reloaded flag=--policy`, 1)
	if got := admitted(t, c, n.HTTP, 4); got != 3 {
		t.Fatalf("after SIGHUP: %d of 4 admitted, want 3", got)
	}
}

// TestTokenFileReload: a rotated --api-token-file takes effect without a
// restart; a file that disappears keeps the last tokens, logged once.
func TestTokenFileReload(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	replaceFile(t, file, "# check API tokens\n"+tokenA+"\n")
	var logs testlog.Buffer
	n, c := servedClient(t, &logs, "--api-token-file", file, "--reload-interval", "20ms", "--demo=false")
	members := "http://" + n.HTTP + "/v1/cluster/members"
	codes := func() [2]int {
		a, _, _ := send(t, c, "GET", members, "", "Bearer "+tokenA)
		b, _, _ := send(t, c, "GET", members, "", "Bearer "+tokenB)
		return [2]int{a, b}
	}
	if got := codes(); got != [2]int{200, 401} {
		t.Fatalf("token A, B at start: %v", got)
	}
	replaceFile(t, file, tokenB)
	waitLog(t, &logs, `msg=reloaded flag=--api-token-file`, 1)
	if got := codes(); got != [2]int{401, 200} {
		t.Fatalf("token A, B after the rotation: %v", got)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	waitLog(t, &logs, "reload: cannot read the file", 1)
	if got := codes(); got != [2]int{401, 200} {
		t.Fatalf("token A, B with the file gone: %v, want the last tokens", got)
	}
	replaceFile(t, file, "") // empty: refused, the tokens stay
	waitLog(t, &logs, `--api-token-file `+file+`: no tokens in the file`, 1)
	replaceFile(t, file, tokenA+","+tokenB)
	waitLog(t, &logs, `msg=reloaded flag=--api-token-file`, 2)
	if got := codes(); got != [2]int{200, 200} {
		t.Fatalf("token A, B after the file came back with both: %v", got)
	}
	if got := strings.Count(logs.String(), "cannot read the file"); got != 1 {
		t.Fatalf("the missing file was logged %d times, want once:\n%s", got, logs.String())
	}
}
