// Package certs loads a node's TLS certificate, key and CA from files and
// reloads them while connections are served: every handshake reads the
// files' latest good contents, so a certificate rotated on disk (or on
// Reload, e.g. at SIGHUP) takes effect without a restart and without
// dropping a connection.
package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Files names the PEM files of a node's TLS identity.
type Files struct {
	Cert, Key string // the node's certificate (chain) and private key
	// CA, when set, holds the certificates that sign peers: the node's
	// peers (and, when asked, its clients) must present a certificate
	// that chains to one of them.
	CA string
}

// loaded is one consistent reading of the files.
type loaded struct {
	cert *tls.Certificate
	pool *x509.CertPool // nil without Files.CA
	raw  [3][]byte      // the files' bytes, to notice a change
}

// Source serves the latest good reading of Files. Its methods are safe for
// concurrent use.
type Source struct {
	files Files
	cur   atomic.Pointer[loaded]
	mu    sync.Mutex // serializes Reload
}

// Load reads files, failing with an error that names the file and what is
// wrong with it.
func Load(files Files) (*Source, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("certs: a certificate and its key are both needed")
	}
	s := &Source{files: files}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again. It reports whether they changed; on an
// error (a file missing, unreadable, expired or not matching its key) it
// keeps serving what it had.
func (s *Source) Reload() (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var raw [3][]byte
	for i, name := range []string{s.files.Cert, s.files.Key, s.files.CA} {
		if name == "" {
			continue
		}
		if raw[i], err = os.ReadFile(name); err != nil {
			return false, fmt.Errorf("certs: %w", err)
		}
	}
	if old := s.cur.Load(); old != nil && bytes.Equal(old.raw[0], raw[0]) && bytes.Equal(old.raw[1], raw[1]) && bytes.Equal(old.raw[2], raw[2]) {
		return false, nil
	}
	l, err := parse(s.files, raw)
	if err != nil {
		return false, err
	}
	s.cur.Store(l)
	return true, nil
}

func parse(files Files, raw [3][]byte) (*loaded, error) {
	cert, err := tls.X509KeyPair(raw[0], raw[1])
	if err != nil {
		return nil, fmt.Errorf("certs: %s and %s: %w", files.Cert, files.Key, err)
	}
	if leaf := cert.Leaf; leaf != nil && time.Now().After(leaf.NotAfter) {
		return nil, fmt.Errorf("certs: %s expired at %s", files.Cert, leaf.NotAfter.Format(time.RFC3339))
	}
	l := &loaded{cert: &cert, raw: raw}
	if files.CA != "" {
		l.pool = x509.NewCertPool()
		if !l.pool.AppendCertsFromPEM(raw[2]) {
			return nil, fmt.Errorf("certs: %s holds no PEM certificate", files.CA)
		}
	}
	return l, nil
}

// HasCA reports whether Files.CA is set: peers are then verified.
func (s *Source) HasCA() bool { return s.files.CA != "" }

// ServerConfig is a TLS server configuration serving the current
// certificate. With requireClient (and a CA) clients must present a
// certificate the CA signed.
func (s *Source) ServerConfig(requireClient bool) *tls.Config {
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cur.Load().cert, nil },
	}
	if requireClient && s.HasCA() {
		// The pool may change at any handshake, so the chain is checked
		// here rather than through the static ClientCAs.
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { return s.verify(cs, x509.ExtKeyUsageClientAuth) }
	}
	return cfg
}

// PeerConfig is the configuration of node-to-node connections, usable
// both to serve and to dial: each side presents its certificate and
// verifies the other's against the CA. Peers are verified by the CA
// alone, not by name: every certificate the cluster's CA signed is a
// node of the cluster (nodes are dialled by IP, which certificates
// rarely name).
func (s *Source) PeerConfig() *tls.Config {
	verify := func(cs tls.ConnectionState) error { return s.verify(cs, x509.ExtKeyUsageAny) }
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetCertificate:       func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cur.Load().cert, nil },
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return s.cur.Load().cert, nil },
		ClientAuth:           tls.RequireAnyClientCert,
		InsecureSkipVerify:   true, // verified by VerifyConnection, against the current CA
		VerifyConnection:     verify,
	}
}

// verify checks that the peer's certificate chains to the current CA.
func (s *Source) verify(cs tls.ConnectionState, usage x509.ExtKeyUsage) error {
	pool := s.cur.Load().pool
	if pool == nil {
		return errors.New("certs: no CA to verify the peer with")
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("certs: the peer presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		return fmt.Errorf("certs: the peer's certificate: %w", err)
	}
	return nil
}
