package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
	"go.uber.org/goleak"
)

// serveInBackground runs serve with args until the returned stop is
// called; stop returns serve's error.
func serveInBackground(t *testing.T, args []string, logs io.Writer) (stop func() error) {
	t.Helper()
	o, err := parseOptions(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, o, log) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("serve did not return 20 s after its context ended")
			return nil
		}
	}
}

// readAddrFile parses path strictly: an unknown field is an error.
func readAddrFile(t *testing.T, path string) addrDoc {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc addrDoc
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s does not parse: %v\n%s", path, err, b)
	}
	return doc
}

// TestAddrFile runs two nodes on port 0 with --addr-file: the file appears
// with the ports they really bound, every address answers, the members the
// nodes gossip agree with it, and the file is gone once serve returns.
func TestAddrFile(t *testing.T) {
	defer goleak.VerifyNone(t, clustertest.LeakOptions()...)
	dir := t.TempDir()
	path := filepath.Join(dir, "addrs.json")
	var logs testlog.Buffer
	stop := serveInBackground(t, []string{
		"--nodes", "2", "--name", "a", "--gossip-port", "0", "--rpc-port", "0", "--http-port", "0",
		"--gossip-profile", "local", "--addr-file", path,
	}, &logs)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()

	testkit.Eventually(t, 15*time.Second, "the address file", func() bool {
		_, err := os.Stat(path)
		return err == nil
	})
	doc := readAddrFile(t, path)
	if doc.PID != os.Getpid() {
		t.Errorf("pid %d, want this process's %d", doc.PID, os.Getpid())
	}
	if len(doc.Nodes) != 2 || doc.Nodes[0].Name != "a-0" || doc.Nodes[1].Name != "a-1" {
		t.Fatalf("nodes %+v, want a-0 and a-1", doc.Nodes)
	}
	for _, n := range doc.Nodes {
		for _, a := range []string{n.HTTP, n.Gossip, n.RPC} {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "0" {
				t.Fatalf("node %s: address %q is not a bound host:port", n.Name, a)
			}
			conn, err := net.DialTimeout("tcp", a, 5*time.Second)
			if err != nil {
				t.Fatalf("node %s: %s does not accept: %v", n.Name, a, err)
			}
			conn.Close()
		}
	}
	assertMembersMatch(t, doc)
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d entries in the file's directory, want only the file (no temporary left)", len(entries))
	}

	stopped = true
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the address file outlived the nodes: stat: %v", err)
	}
}

// assertMembersMatch checks that the first node's member list gives every
// node of doc the HTTP and RPC addresses the file gives it.
func assertMembersMatch(t *testing.T, doc addrDoc) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	var body string
	testkit.Eventually(t, 15*time.Second, "both nodes in the member list", func() bool {
		code, b, _ := get(t, c, "GET", "http://"+doc.Nodes[0].HTTP+"/v1/cluster/members")
		body = b
		return code == 200 && strings.Count(b, `"state":"alive"`) == 2
	}, &body)
	var got nodeapi.MembersResponse
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	for _, n := range doc.Nodes {
		found := false
		for _, m := range got.Members {
			if m.Name == n.Name {
				found = true
				if m.HTTPAddr != n.HTTP || m.RPCAddr != n.RPC {
					t.Errorf("member %s gossips http %s rpc %s; the file says %s and %s", n.Name, m.HTTPAddr, m.RPCAddr, n.HTTP, n.RPC)
				}
			}
		}
		if !found {
			t.Errorf("member %s missing from %s", n.Name, body)
		}
	}
}

// TestAddrFileBadPath: a path that cannot be written stops serve before any
// node starts, with an error that names the flag and the path.
func TestAddrFileBadPath(t *testing.T) {
	defer goleak.VerifyNone(t, clustertest.LeakOptions()...)
	dir := t.TempDir()
	for _, tc := range []struct {
		path, want string
	}{
		{filepath.Join(dir, "missing", "addrs.json"), "no such file or directory"},
		{dir, "is a directory"},
	} {
		var logs testlog.Buffer
		stop := serveInBackground(t, []string{
			"--gossip-port", "0", "--rpc-port", "0", "--http-port", "0", "--gossip-profile", "local", "--addr-file", tc.path,
		}, &logs)
		err := stop()
		if err == nil || !strings.Contains(err.Error(), `--addr-file "`+tc.path+`"`) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming --addr-file %q and %q", tc.path, err, tc.path, tc.want)
		}
		if strings.Contains(logs.String(), "ratemesh node ready") {
			t.Errorf("%s: a node started before the path was checked:\n%s", tc.path, logs.String())
		}
	}
}
