package cluster

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/certs"
	"github.com/ratemesh/ratemesh/internal/certs/certstest"
	"github.com/ratemesh/ratemesh/internal/rpc"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// tlsNode is a node whose RPC runs over mutual TLS with a certificate of
// ca, and the source it reloads.
func tlsNode(t *testing.T, ca *certstest.CA, name string) (*Cluster, *certs.Source) {
	t.Helper()
	cert, key := ca.Issue(t, name, time.Time{})
	src, err := certs.Load(certs.Files{Cert: cert, Key: key, CA: ca.CAFile(t)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := realConfig(t, name)
	cfg.Secret = []byte("cluster secret")
	cfg.TLS = src.PeerConfig()
	return startReal(t, cfg), src
}

// tlsPair is two nodes of ca joined over mutual TLS, and a load checking
// from n0 a key n1 owns.
type tlsPair struct {
	n0, n1     *Cluster
	src0, src1 *certs.Source
	load       *testkit.Load
}

func startTLSPair(t *testing.T, ca *certstest.CA, limits string) tlsPair {
	t.Helper()
	var p tlsPair
	p.n0, p.src0 = tlsNode(t, ca, "n0")
	p.n1, p.src1 = tlsNode(t, ca, "n1")
	join(t, p.n1, p.n0)
	waitRing(t, []*Cluster{p.n0, p.n1})
	key := testkit.KeyOwnedBy(t, []string{"n0", "n1"}, "n1")
	p.load = testkit.StartLoad(t, []testkit.CheckFunc{checker(p.n0, key, testkit.Counters(t, "r", limits))})
	return p
}

// ping dials addr's RPC with tlsCfg (nil: plain TCP) and the cluster's
// secret.
func ping(t *testing.T, addr string, tlsCfg *tls.Config) error {
	t.Helper()
	c := rpc.NewClient(addr, rpc.ClientConfig{Secret: rpcSecret([]byte("cluster secret")), TLS: tlsCfg,
		DialTimeout: time.Second, CallTimeout: time.Second, HandshakeTimeout: time.Second})
	defer c.Close()
	return c.Ping(context.Background())
}

// Nodes of one CA forward checks over mutual TLS, exactly; a client with
// the cluster secret but a certificate of another CA, or none, or plain
// TCP, cannot reach a node's RPC; and a node of another CA that joins the
// gossip gets no check through to the others.
func TestMutualTLSMesh(t *testing.T) {
	ca := certstest.NewCA(t, "cluster")
	p := startTLSPair(t, ca, "5 per minute")
	n0, n1, load := p.n0, p.n1, p.load
	load.WaitChecks(t, 50)
	load.Report(t)
	if load.Allowed.Load() != 5 || load.Fallbacks.Load() != 0 || load.Errs.Load() != 0 {
		t.Fatalf("over mutual TLS %d of %d admitted, %d fallbacks, %d errors; want exactly 5, none",
			load.Allowed.Load(), load.Checks.Load(), load.Fallbacks.Load(), load.Errs.Load())
	}

	stranger := certstest.NewCA(t, "stranger")
	sCert, sKey := stranger.Issue(t, "s", time.Time{})
	sSrc, err := certs.Load(certs.Files{Cert: sCert, Key: sKey, CA: stranger.CAFile(t)})
	if err != nil {
		t.Fatal(err)
	}
	cCert, cKey := ca.Issue(t, "member", time.Time{})
	cSrc, err := certs.Load(certs.Files{Cert: cCert, Key: cKey, CA: ca.CAFile(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := ping(t, n1.RPCAddr(), cSrc.PeerConfig()); err != nil {
		t.Fatalf("a client with a certificate of the cluster's CA: %v", err)
	}
	for name, cfg := range map[string]*tls.Config{
		"another CA":     sSrc.PeerConfig(),
		"no certificate": {InsecureSkipVerify: true},
		"plain TCP":      nil,
	} {
		if err := ping(t, n1.RPCAddr(), cfg); err == nil {
			t.Errorf("a client with %s reached the RPC", name)
		}
	}

	sNode, _ := tlsNode(t, stranger, "s")
	join(t, sNode, n0)
	// The stranger sees the others by gossip; they may route around it
	// at once (its RPC refuses them), so only its own view is awaited.
	testkit.Eventually(t, 15*time.Second, "the stranger's view of the cluster", func() bool {
		full := sNode.view.Load().full
		return full.Len() == 3 && full.Has("n1")
	})
	req := rpc.CheckRequest{Key: testkit.KeyOwnedBy(t, []string{"n0", "n1", "s"}, "n1"), Counters: testkit.Counters(t, "r", "5 per minute"), Cost: 1}
	var resp rpc.CheckResponse
	fallback, err := sNode.Check(context.Background(), &req, &resp)
	if err == nil && !fallback {
		t.Fatalf("a node of another CA got a check decided by %s", resp.Node)
	}
}

// Certificates rotated on every node while checks flow: the open
// connection goes on (no check fails or falls back, the count is exact),
// and a new connection after each rotation handshakes with the new
// certificates on both sides.
func TestRotationLosesNoCheck(t *testing.T) {
	ca := certstest.NewCA(t, "cluster")
	p := startTLSPair(t, ca, "1000000 per minute")
	n1, src0, src1, load := p.n1, p.src0, p.src1, p.load
	for round := range 3 {
		load.WaitChecks(t, int64(100*(round+1)))
		for name, src := range map[string]*certs.Source{"n0": src0, "n1": src1} {
			ca.Issue(t, name, time.Time{})
			if changed, err := src.Reload(); !changed || err != nil {
				t.Fatalf("rotating %s: changed %v, %v", name, changed, err)
			}
		}
		// A new connection, as n0's next dial would make, with n0's
		// new certificate, to n1 serving its new one.
		if err := ping(t, n1.RPCAddr(), src0.PeerConfig()); err != nil {
			t.Fatalf("a new connection after rotation %d: %v", round+1, err)
		}
	}
	load.WaitChecks(t, 400)
	load.Report(t)
	if load.Errs.Load() != 0 || load.Fallbacks.Load() != 0 || load.Allowed.Load() != load.Checks.Load() {
		t.Fatalf("through rotations: %d checks, %d admitted, %d fallbacks, %d errors; want every check admitted by its owner",
			load.Checks.Load(), load.Allowed.Load(), load.Fallbacks.Load(), load.Errs.Load())
	}
}
