//go:build linux

// Package e2e tests ratemesh as its users run it: ratemesh-node processes
// on real sockets, started, signalled, partitioned and restarted by the
// tests, which talk to them over HTTP and gRPC only. The node binary is
// built once per run of the package; every test shares internal/proctest,
// the harness of node processes. All of them are skipped by -short.
package e2e

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/ratemesh/ratemesh/internal/proctest"
)

// nodeBin is the binary TestMain built; "" in -short mode, where no test
// runs a node.
var nodeBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if !testing.Short() {
		dir, err := os.MkdirTemp("", "ratemesh-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if nodeBin, err = proctest.Build(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	code := m.Run()
	// The tests' own goroutines (loads, waits for exits) must all have
	// ended: the nodes are processes, so anything left is the test's.
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		return 1
	}
	return code
}

// nodeBinary is the node binary of the run; a test that needs it skips in
// -short mode.
func nodeBinary(t *testing.T) string {
	t.Helper()
	if nodeBin == "" {
		t.Skip("process test: skipped in -short mode")
	}
	return nodeBin
}
