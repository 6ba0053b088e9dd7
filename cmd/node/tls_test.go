package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ratemesh/ratemesh/internal/certs/certstest"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
)

// tlsClient trusts ca's certificates and presents cert, if not nil. Every
// request opens a connection of its own, so each sees the certificate the
// node serves now.
func tlsClient(t *testing.T, ca *certstest.CA, cert *tls.Certificate) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(ca.CAFile(t))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

// servedTLS runs a node with args, stopped (and checked for leaks) when
// the test ends.
func servedTLS(t *testing.T, args ...string) addrNode {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t, clustertest.LeakOptions()...) })
	n, stop := servedNode(t, &testlog.Buffer{}, args...)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return n
}

// serial is the serial number of the certificate the node at addr shows.
func serial(t *testing.T, c *http.Client, addr string) (string, error) {
	resp, err := c.Get("https://" + addr + "/healthz")
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", &url500{resp.StatusCode}
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
}

type url500 struct{ code int }

func (e *url500) Error() string { return http.StatusText(e.code) }

// With --tls-cert the HTTP API speaks only TLS; a certificate rotated on
// disk is served without a restart, and no request fails meanwhile.
func TestTLSServesHTTPSAndRotates(t *testing.T) {
	ca := certstest.NewCA(t, "cluster")
	cert, key := ca.Issue(t, "node", time.Time{})
	n := servedTLS(t, "--tls-cert", cert, "--tls-key", key, "--reload-interval", "20ms")
	c := tlsClient(t, ca, nil)
	before, err := serial(t, c, n.HTTP)
	if err != nil {
		t.Fatalf("HTTPS: %v", err)
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + n.HTTP + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("a plaintext client was answered 200 on the TLS port")
		}
	}

	var sent, failed atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			sent.Add(1)
			if _, err := serial(t, c, n.HTTP); err != nil {
				failed.Add(1)
			}
		}
	}()
	testkit.Eventually(t, 5*time.Second, "requests before the rotation", func() bool { return sent.Load() > 20 })
	ca.Issue(t, "node", time.Time{})
	testkit.Eventually(t, 10*time.Second, "the rotated certificate served", func() bool {
		s, err := serial(t, c, n.HTTP)
		return err == nil && s != before
	})
	close(stop)
	<-done
	t.Logf("%d requests through the rotation, %d failed", sent.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed through the rotation", failed.Load(), sent.Load())
	}
}

// With --tls-ca the RPC between nodes is mutual TLS (two nodes in one
// process forward checks to each other) and, with --tls-client-auth, HTTP
// clients must show a certificate of the CA.
func TestTLSMutual(t *testing.T) {
	ca := certstest.NewCA(t, "cluster")
	cert, key := ca.Issue(t, "node", time.Time{})
	// A forward that outlives the default 50 ms timeout on a loaded
	// machine fails over and may count a check twice (the crash bound);
	// exact figures need a timeout no scheduler delay reaches.
	n := servedTLS(t, "--tls-cert", cert, "--tls-key", key, "--tls-ca", ca.CAFile(t), "--tls-client-auth", "--nodes", "2", "--forward-timeout", "10s")
	if _, err := serial(t, tlsClient(t, ca, nil), n.HTTP); err == nil {
		t.Fatal("a client without a certificate was answered")
	}
	ccert, ckey := ca.Issue(t, "client", time.Time{})
	pair, err := tls.LoadX509KeyPair(ccert, ckey)
	if err != nil {
		t.Fatal(err)
	}
	c := tlsClient(t, ca, &pair)
	deciders := map[string]int{}
	for i := range 40 {
		body := `{"key":"k` + string(rune('a'+i%20)) + `","limits":"1 per minute"}`
		code, reply, _ := send(t, c, http.MethodPost, "https://"+n.HTTP+"/v1/check", body, "")
		var a struct {
			Allowed bool
			Node    string
		}
		json.Unmarshal([]byte(reply), &a)
		if want := i < 20; code/100 != 2 && code != http.StatusTooManyRequests || a.Allowed != want {
			t.Fatalf("check %d: %d %s, want allowed %v", i, code, reply, want)
		}
		deciders[a.Node]++
	}
	if len(deciders) != 2 {
		t.Fatalf("checks decided by %v, want both nodes (the RPC between them over mutual TLS)", deciders)
	}
}

// Bad TLS settings stop the command before a node starts, naming what is
// wrong.
func TestTLSFlagErrors(t *testing.T) {
	ca := certstest.NewCA(t, "cluster")
	cert, key := ca.Issue(t, "node", time.Time{})
	old, oldKey := ca.Issue(t, "old", time.Now().Add(-time.Minute))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", cert}, "go together"},
		{[]string{"--tls-cert", cert, "--tls-key", key, "--tls-client-auth"}, "--tls-client-auth needs --tls-ca"},
		{[]string{"--tls-cert", old, "--tls-key", oldKey}, "old.pem expired"},
		{[]string{"--tls-cert", cert, "--tls-key", key, "--tls-ca", filepath.Join(t.TempDir(), "none.pem")}, "none.pem"},
	} {
		var out strings.Builder
		code := run(append(c.args, "--gossip-port", "0", "--rpc-port", "0", "--http-port", "0"), func(string) string { return "" }, &out)
		if code != 1 || !strings.Contains(out.String(), c.want) {
			t.Errorf("%v: exit %d, %q; want 1 and %q", c.args, code, out.String(), c.want)
		}
	}
}
