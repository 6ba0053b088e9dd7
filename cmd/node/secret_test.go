package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/testlog"
)

// A node started with another secret than its seed's stops at once, well
// within its 30 s join timeout, with one line that names the seed and the
// cause, without retrying and without escaped tabs or newlines.
func TestWrongSecretFailsFast(t *testing.T) {
	var seedLogs testlog.Buffer
	n, _ := servedClient(t, &seedLogs, "--name", "seed", "--demo=false", "--secret", "seed-secret-0123456789")
	seed := n.Gossip

	o, err := parseOptions([]string{"--name", "other", "--gossip-port", "0", "--rpc-port", "0", "--http-port", "0",
		"--gossip-profile", "local", "--demo=false", "--secret", "another-secret-0123456789", "--join", seed, "--join-timeout", "30s"},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var logs testlog.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	err = serve(ctx, o, slog.New(slog.NewTextHandler(&logs, nil)))
	want := "ratemesh: node has not joined its cluster yet: cluster: join " + seed +
		": the cluster secret differs from the seed's (or only one of them has a secret): give every node the same secret" +
		" (failed to join " + seed + ": no installed keys could decrypt the message)"
	if err == nil || err.Error() != want {
		t.Fatalf("serve: %v\nwant %s", err, want)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("the node gave up after %v; its join timeout is 30s, it should not retry", took)
	}
	if l := logs.String(); strings.Contains(l, "retrying") || strings.Contains(l, `\n`) || strings.Contains(l, `\t`) {
		t.Fatalf("the log retries or escapes:\n%s", l)
	}
}
