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
	if took := time.Since(began); took > 15*time.Second {
		t.Fatalf("the node gave up after %v; its join timeout is 30s, it should not retry", took)
	}
	if l := logs.String(); strings.Contains(l, "retrying") || strings.Contains(l, `\n`) || strings.Contains(l, `\t`) {
		t.Fatalf("the log retries or escapes:\n%s", l)
	}
}

// Without --secret the node says so at start: a WARN on a loopback
// address, an ERROR on any other; with one, nothing.
func TestNoSecretSaysSo(t *testing.T) {
	for _, tc := range []struct {
		secret, bind, want string
	}{
		{"", "127.0.0.1", `level=WARN msg="` + noSecretLoopback + `" bind=127.0.0.1` + "\n"},
		{"", "::1", `level=WARN msg="` + noSecretLoopback + `" bind=::1` + "\n"},
		{"", "localhost", `level=WARN msg="` + noSecretLoopback + `" bind=localhost` + "\n"},
		{"", "0.0.0.0", `level=ERROR msg="` + noSecretExposed + `" bind=0.0.0.0` + "\n"},
		{"", "10.0.0.11", `level=ERROR msg="` + noSecretExposed + `" bind=10.0.0.11` + "\n"},
		{"s3cret-0123456789abcdef", "0.0.0.0", ""},
	} {
		var logs testlog.Buffer
		announceSecret(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: dropTime})), tc.secret, tc.bind)
		if got := logs.String(); got != tc.want {
			t.Errorf("secret %q, bind %s:\n got %q\nwant %q", tc.secret, tc.bind, got, tc.want)
		}
	}
	// The lines, word for word.
	if noSecretExposed != "no --secret on a non-loopback address: anyone who reaches the gossip and RPC ports can join this cluster, "+
		"read its gossip and change its counts; set --secret (RATEMESH_SECRET) to the same random string on every node, e.g. from openssl rand -hex 32" ||
		noSecretLoopback != "no --secret: gossip is not encrypted and RPC is not authenticated; fine while every node is on this host, "+
			"but before nodes share a network set --secret (RATEMESH_SECRET) to the same random string on each, e.g. from openssl rand -hex 32" {
		t.Fatalf("the lines changed: %q, %q", noSecretExposed, noSecretLoopback)
	}
}

// dropTime leaves the time out of a log line.
func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
