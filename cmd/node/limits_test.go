package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/testkit"
)

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// slowClient connects from local and sends the start of a request (by
// default a GET of /healthz), then nothing.
func slowClient(t *testing.T, local, addr string, line ...string) net.Conn {
	t.Helper()
	c := testkit.DialFrom(t, local, addr)
	start := "GET /healthz HTTP/1.1"
	if len(line) > 0 {
		start = line[0]
	}
	fmt.Fprintf(c, "%s\r\nHost: x\r\n", start)
	return c
}

// isTimeout tells our own read deadline from the node closing (EOF) or
// resetting (it had unread bytes) the connection.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// healthzWithin asserts that /healthz answers 200 within d, which must
// be under the client's timeout of 30 s: an answer shows that the slow
// clients, which hold their connections until the test ends, left room
// for others; one stuck behind them would wait the whole timeout.
func healthzWithin(t *testing.T, base string, d time.Duration) {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	code, _, _ := get(t, c, "GET", base+"/healthz")
	if took := time.Since(start); code != 200 || took > d {
		t.Fatalf("/healthz under attack: %d in %v, want 200 within %v", code, took, d)
	}
}

// serveLimited starts the node's HTTP server with lim.
func serveLimited(t *testing.T, lim serverLimits) string {
	t.Helper()
	srv := serveNode(t, startedNode(t), &httpOptions{bind: "127.0.0.1", headers: "all", limits: lim})
	t.Cleanup(func() { srv.srv.Close(); <-srv.done })
	return srv.Addr()
}

// One client IP opening 50 slow connections holds 10 descriptors of the
// node, not 50, and /healthz answers others at once.
func TestSlowClientsPerIPCap(t *testing.T) {
	addr := serveLimited(t, serverLimits{maxConns: 1000, maxConnsPerIP: 10})
	before := openFDs(t)
	for range 50 {
		slowClient(t, "127.0.0.2", addr)
	}
	// Our 50 client sockets are descriptors of this process too.
	testkit.Eventually(t, 5*time.Second, "the node to hold 10 of 50 slow connections", func() bool {
		return openFDs(t)-before == 50+10
	})
	healthzWithin(t, "http://"+addr, 10*time.Second)
}

// Slow connections from many IPs fill at most --max-connections slots:
// the node's descriptors stay bounded, whoever attacks.
func TestSlowClientsTotalCap(t *testing.T) {
	addr := serveLimited(t, serverLimits{maxConns: 20, maxConnsPerIP: 10})
	before := openFDs(t)
	for i := range 40 {
		slowClient(t, fmt.Sprintf("127.0.1.%d", i+1), addr)
	}
	testkit.Eventually(t, 5*time.Second, "40 client sockets and 20 of the node's", func() bool {
		return openFDs(t)-before == 40+20
	})
}

// A client that sends its headers, or its body, too slowly is cut off at
// the read timeouts; a header block over the cap is refused with 431.
func TestSlowRequestsCut(t *testing.T) {
	addr := serveLimited(t, serverLimits{readTimeout: 300 * time.Millisecond, readHeaderTimeout: 200 * time.Millisecond, maxHeaderBytes: 4 << 10})
	hdr := slowClient(t, "127.0.0.1", addr)
	// A route that reads its body: the handler would wait for it forever.
	body := slowClient(t, "127.0.0.1", addr, "POST /v1/check HTTP/1.1")
	fmt.Fprintf(body, "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
	trickle := time.NewTicker(20 * time.Millisecond)
	defer trickle.Stop()
	cut := make(chan error, 1)
	go func() {
		body.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, body)
		cut <- err
	}()
	for sent := false; !sent; {
		select {
		case err := <-cut:
			if isTimeout(err) {
				t.Fatalf("slow body: %v, want the node to close the connection", err)
			}
			sent = true
		case <-trickle.C:
			body.Write([]byte("x"))
		}
	}
	hdr.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, hdr); isTimeout(err) {
		t.Fatalf("slow headers: %v, want the node to close the connection", err)
	}
	big, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	fmt.Fprintf(big, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 64<<10))
	resp, err := http.ReadResponse(bufio.NewReader(big), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB of headers with a 4 KiB cap: %v %v, want 431", resp, err)
	}
	resp.Body.Close()
}

func TestLimitFlags(t *testing.T) {
	env := map[string]string{"RATEMESH_MAX_KEYS": "1000", "RATEMESH_MAX_CONNECTIONS_PER_IP": "7"}
	o, err := parseOptions([]string{"--max-counters", "5000", "--read-timeout", "3s", "--max-connections", "99"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.nodeConfig(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l := o.http.limits
	if cfg.Store.MaxKeys != 1000 || cfg.Store.MaxCounters != 5000 || l.readTimeout != 3*time.Second || l.maxConns != 99 || l.maxConnsPerIP != 7 {
		t.Fatalf("store %+v, limits %+v", cfg.Store, l)
	}
	for args, want := range map[string]string{
		"--max-keys 0":                 "--max-keys 0: want at least 1",
		"--max-moving-window-slots -5": "--max-moving-window-slots -5: want at least 1",
	} {
		o, err := parseOptions(strings.Fields(args), func(string) string { return "" }, io.Discard)
		if err == nil {
			_, err = o.nodeConfig(slog.New(slog.DiscardHandler))
		}
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
	for _, tc := range []struct {
		l    serverLimits
		want string
	}{
		{serverLimits{readTimeout: -1}, "--read-timeout -1ns: want a positive duration"},
		{serverLimits{maxHeaderBytes: 10}, "--max-header-bytes 10: want at least 1024"},
		{serverLimits{maxConnsPerIP: -1}, "--max-connections-per-ip -1: want 0 (off) or more"},
	} {
		if err := tc.l.resolve(); err == nil || err.Error() != tc.want {
			t.Errorf("%+v: %v, want %q", tc.l, err, tc.want)
		}
	}
	for _, p := range []int{0, 129} {
		h := httpOptions{headers: "all", ipv6Prefix: p}
		if err := h.preflight(); err == nil || err.Error() != fmt.Sprintf("--ipv6-prefix %d: want 1 to 128", p) {
			t.Errorf("--ipv6-prefix %d: %v", p, err)
		}
	}
	for fds, want := range map[uint64]int{0: minAutoConns, 1024: minAutoConns, 1 << 20: 1<<20 - fdReserve} {
		if got := autoMaxConns(fds); got != want {
			t.Errorf("autoMaxConns(%d) = %d, want %d", fds, got, want)
		}
	}
}

func TestDataDirFlags(t *testing.T) {
	dir := t.TempDir()
	o, err := parseOptions([]string{"--nodes", "2", "--gossip-port", "0", "--rpc-port", "0", "--http-port", "0", "--snapshot-interval", "3s"}, func(k string) string {
		return map[string]string{"RATEMESH_DATA_DIR": dir}[k]
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.member(1).nodeConfig(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "node-1"); cfg.DataDir != want || cfg.SnapshotInterval != 3*time.Second {
		t.Fatalf("node 1: data dir %q every %v, want %q every 3s", cfg.DataDir, cfg.SnapshotInterval, want)
	}
}
