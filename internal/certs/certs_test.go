package certs_test

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/certs"
	"github.com/ratemesh/ratemesh/internal/certs/certstest"
)

func load(t *testing.T, f certs.Files) *certs.Source {
	t.Helper()
	s, err := certs.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// handshake serves one TLS connection with server and dials it with
// client, returning the client's error and the serial the client saw.
func handshake(t *testing.T, server, client *tls.Config) (string, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("x"))
		io.Copy(io.Discard, c)
	}()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), client)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// In TLS 1.3 the server's verdict on the client's certificate
	// arrives with the first read.
	if _, err := c.Read(make([]byte, 1)); err != nil {
		return "", err
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// Peers with certificates of one CA talk; a peer with none, or with one
// of another CA, is refused on both sides.
func TestPeerConfigVerifiesByCA(t *testing.T) {
	ca, other := certstest.NewCA(t, "cluster"), certstest.NewCA(t, "stranger")
	caFile := ca.CAFile(t)
	aCert, aKey := ca.Issue(t, "a", time.Time{})
	bCert, bKey := ca.Issue(t, "b", time.Time{})
	xCert, xKey := other.Issue(t, "x", time.Time{})
	a := load(t, certs.Files{Cert: aCert, Key: aKey, CA: caFile})
	b := load(t, certs.Files{Cert: bCert, Key: bKey, CA: caFile})
	x := load(t, certs.Files{Cert: xCert, Key: xKey, CA: other.CAFile(t)})
	if _, err := handshake(t, a.PeerConfig(), b.PeerConfig()); err != nil {
		t.Fatalf("two nodes of one CA: %v", err)
	}
	if _, err := handshake(t, a.PeerConfig(), x.PeerConfig()); err == nil {
		t.Fatal("a node of another CA was let in")
	}
	if _, err := handshake(t, x.PeerConfig(), b.PeerConfig()); err == nil {
		t.Fatal("a node dialled a server of another CA")
	}
	if _, err := handshake(t, a.PeerConfig(), &tls.Config{InsecureSkipVerify: true}); err == nil {
		t.Fatal("a client with no certificate was let in")
	}
}

// A certificate rotated on disk is served from the next handshake on,
// without a restart; a broken rotation keeps the old one.
func TestReloadRotates(t *testing.T) {
	ca := certstest.NewCA(t, "cluster")
	cert, key := ca.Issue(t, "node", time.Time{})
	s := load(t, certs.Files{Cert: cert, Key: key})
	client := &tls.Config{InsecureSkipVerify: true}
	before, err := handshake(t, s.ServerConfig(false), client)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Reload(); changed || err != nil {
		t.Fatalf("reload of unchanged files: changed %v, %v", changed, err)
	}
	ca.Issue(t, "node", time.Time{})
	if changed, err := s.Reload(); !changed || err != nil {
		t.Fatalf("reload after rotation: changed %v, %v", changed, err)
	}
	after, err := handshake(t, s.ServerConfig(false), client)
	if err != nil || after == before {
		t.Fatalf("after rotation the server shows serial %s (before %s), %v", after, before, err)
	}
	os.WriteFile(cert, []byte("not a certificate"), 0o600)
	if _, err := s.Reload(); err == nil {
		t.Fatal("a broken certificate file was accepted")
	}
	if still, err := handshake(t, s.ServerConfig(false), client); err != nil || still != after {
		t.Fatalf("after a broken rotation the server shows %s, want the last good %s (%v)", still, after, err)
	}
}

// Bad files are refused with an error that names the file.
func TestLoadErrorsNameTheFile(t *testing.T) {
	ca := certstest.NewCA(t, "cluster")
	cert, key := ca.Issue(t, "node", time.Time{})
	expired, expiredKey := ca.Issue(t, "old", time.Now().Add(-time.Hour))
	_, otherKey := ca.Issue(t, "other", time.Time{})
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("junk"), 0o600)
	for _, c := range []struct {
		name  string
		files certs.Files
		want  string
	}{
		{"no key", certs.Files{Cert: cert}, "both needed"},
		{"missing", certs.Files{Cert: cert + ".gone", Key: key}, ".gone"},
		{"key of another", certs.Files{Cert: cert, Key: otherKey}, "other-key.pem"},
		{"expired", certs.Files{Cert: expired, Key: expiredKey}, "old.pem expired"},
		{"CA not PEM", certs.Files{Cert: cert, Key: key, CA: junk}, "junk.pem holds no PEM"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := certs.Load(c.files)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load: %v, want an error naming %q", err, c.want)
			}
		})
	}
}
