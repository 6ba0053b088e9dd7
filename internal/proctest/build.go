// Package proctest runs ratemesh-node processes for tests: it builds the
// binary, starts nodes on free loopback ports (or in network namespaces),
// signals them and reads their HTTP API. The e2e package and the root
// package's integration test share it, so that there is one harness of
// node processes.
//
// All but Build is Linux-only because the children are tied to the test
// process with a parent-death signal: even a test binary killed by
// -timeout leaves no node behind holding its ports.
package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// nodePackage is the node's main package, built by import path so that a
// test of any directory of the module can build it.
const nodePackage = "github.com/ratemesh/ratemesh/cmd/node"

// Build builds the node binary into dir and returns its path. It is built
// without the race detector whatever the test's flags: the nodes are the
// system under test, not the test's own goroutines. A package builds it
// once, in TestMain or its one test, and passes the path to New.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "ratemesh-node")
	if out, err := exec.Command("go", "build", "-o", bin, nodePackage).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", nodePackage, err, out)
	}
	return bin, nil
}

// Environ is the test's environment without its RATEMESH_ variables, for
// a node process (or a command that starts nodes): what the test gives it
// alone configures it, whatever the shell exports (a RATEMESH_POLICY would
// change the limits under test).
func Environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RATEMESH_") {
			env = append(env, kv)
		}
	}
	return env
}
