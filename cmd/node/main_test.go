package main

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
	"go.uber.org/goleak"
)

func TestNodesFlag(t *testing.T) {
	none := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{args: []string{"--nodes", "0"}, want: "--nodes 0: want 1 to 64"},
		{args: []string{"--nodes", "65"}, want: "--nodes 65: want 1 to 64"},
		{args: []string{"--nodes", "3", "--http-port", "65534"}, want: "--http-port 65534: with --nodes 3 the last node's port would pass 65535"},
		{args: []string{"--nodes", "2", "--rpc-port", "65535"}, want: "--rpc-port 65535: with --nodes 2"},
		{env: "three", want: `RATEMESH_NODES="three": want a whole number`},
	} {
		getenv := none
		if tc.env != "" {
			getenv = func(k string) string {
				if k == "RATEMESH_NODES" {
					return tc.env
				}
				return ""
			}
		}
		if _, err := parseOptions(tc.args, getenv, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %q: error %v, want %q", tc.args, tc.env, err, tc.want)
		}
	}

	o, err := parseOptions([]string{"--nodes", "3", "--name", "n", "--gossip-port", "7000", "--rpc-port", "0", "--http-port", "8000"}, none, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := o.member(2)
	if m.name != "n-2" || m.gossipPort != 7002 || m.rpcPort != 0 || m.http.port != 8002 {
		t.Fatalf("member 2: name %q ports %d %d %d", m.name, m.gossipPort, m.rpcPort, m.http.port)
	}
	if o.name != "n" || o.gossipPort != 7000 || o.http.port != 8000 {
		t.Fatalf("member changed the options: %+v", o)
	}
	if o, _ := parseOptions(nil, none, io.Discard); o.nodes != 1 || o.member(0) != o {
		t.Fatalf("one node: nodes %d, member(0) is a copy", o.nodes)
	}
}

// TestServeNodes runs --nodes 3 in this process: the three nodes form one
// cluster, a limit holds across their HTTP ports, and all of them leave
// when the context ends.
func TestServeNodes(t *testing.T) {
	defer goleak.VerifyNone(t, clustertest.LeakOptions()...)
	policy := writePolicy(t, "routes:\n  - method: GET\n    path: /products\n    limits: \"5 per minute\"\n")
	var logs testlog.Buffer
	stop := serveInBackground(t, []string{
		"--nodes", "3", "--name", "t", "--gossip-port", "0", "--rpc-port", "0", "--http-port", "0",
		"--gossip-profile", "local", "--secret", "test-secret-0123456789", "--policy", policy, "--headers", "legacy",
	}, &logs)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
		if n := strings.Count(logs.String(), `msg="left the cluster"`); n != 3 {
			t.Errorf("%d nodes left the cluster, want 3:\n%s", n, logs.String())
		}
	}()

	ready := regexp.MustCompile(`msg="ratemesh node ready" node_index=\d name=(t-\d) .* http=(\S+)`)
	var found [][]string
	testkit.Eventually(t, 15*time.Second, "3 nodes ready", func() bool {
		found = ready.FindAllStringSubmatch(logs.String(), -1)
		return len(found) == 3
	})
	var addrs []string
	for i, f := range found {
		if want := fmt.Sprintf("t-%d", i); f[1] != want {
			t.Fatalf("node %d is named %q, want %q", i, f[1], want)
		}
		addrs = append(addrs, f[2])
	}
	c := &http.Client{Timeout: 5 * time.Second}
	for _, a := range addrs {
		var body string
		testkit.Eventually(t, 15*time.Second, a+" sees 3 live members", func() bool {
			code, b, _ := get(t, c, "GET", "http://"+a+"/v1/cluster/members")
			body = b
			return code == 200 && strings.Count(body, `"state":"alive"`) == 3
		}, &body)
	}
	// Every request comes from 127.0.0.1, one key with one owner: the two
	// other nodes must forward, or more than 5 would pass.
	admitted := 0
	for i := 0; i < 300; i++ {
		code, _, _ := get(t, c, "GET", "http://"+addrs[i%3]+"/products")
		switch code {
		case 200:
			admitted++
		case 429:
		default:
			t.Fatalf("request %d: status %d", i, code)
		}
	}
	if admitted != 5 {
		t.Fatalf("%d of 300 requests admitted over 3 nodes, want exactly 5", admitted)
	}
	c.CloseIdleConnections()
}

// TestFlagDefaults: the flags default to the library's DefaultConfig, so
// that the node and an embedded ratemesh.Node agree, and --addr-file is
// off unless asked for.
func TestFlagDefaults(t *testing.T) {
	o, err := parseOptions(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	def := ratemesh.DefaultConfig()
	if o.bind != def.BindAddr || o.gossipPort != def.GossipPort || o.rpcPort != def.RPCPort ||
		o.forwardTimeout != def.ForwardTimeout || o.failPolicy != def.FailPolicy.String() || o.addrFile != "" {
		t.Fatalf("defaults %+v, want those of %+v and no --addr-file", o, def)
	}
	o, err = parseOptions(nil, func(k string) string {
		if k == "RATEMESH_ADDR_FILE" {
			return "/run/ratemesh/addrs.json"
		}
		return ""
	}, io.Discard)
	if err != nil || o.addrFile != "/run/ratemesh/addrs.json" {
		t.Fatalf("RATEMESH_ADDR_FILE: %v, addr file %q", err, o.addrFile)
	}
}
