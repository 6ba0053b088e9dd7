package main

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ratemesh/ratemesh/internal/certs"
)

// tlsOptions are the node's certificate files. With a certificate the
// HTTP API and the gRPC service speak only TLS; with a CA the RPC between
// nodes is mutual TLS, and with --tls-client-auth so are HTTP and gRPC
// clients.
type tlsOptions struct {
	cert, key, ca string
	clientAuth    bool
	src           *certs.Source // loaded by preflight; nil without --tls-cert
}

// register adds the TLS flags.
func (o *tlsOptions) register(e *envFlags) {
	e.String(&o.cert, "tls-cert", "RATEMESH_TLS_CERT", "", "PEM certificate (chain) of this node: HTTP and gRPC serve TLS only; reloaded on change and on SIGHUP")
	e.String(&o.key, "tls-key", "RATEMESH_TLS_KEY", "", "PEM private key of --tls-cert")
	e.String(&o.ca, "tls-ca", "RATEMESH_TLS_CA", "", "PEM CA certificates: the RPC between nodes becomes mutual TLS, every peer's certificate verified against them")
	e.Bool(&o.clientAuth, "tls-client-auth", "RATEMESH_TLS_CLIENT_AUTH", false, "HTTP and gRPC clients must present a certificate --tls-ca signed")
}

// preflight loads the files, refusing what cannot work.
func (o *tlsOptions) preflight() error {
	switch {
	case o.cert == "" && o.key == "" && o.ca == "" && !o.clientAuth:
		return nil
	case o.cert == "" || o.key == "":
		return errors.New("--tls-cert and --tls-key go together, and --tls-ca and --tls-client-auth need them")
	case o.clientAuth && o.ca == "":
		return errors.New("--tls-client-auth needs --tls-ca to verify clients with")
	}
	src, err := certs.Load(certs.Files{Cert: o.cert, Key: o.key, CA: o.ca})
	if err != nil {
		return err
	}
	o.src = src
	return nil
}

// peerConfig is the TLS of the RPC between nodes: nil (plain TCP) without
// --tls-ca.
func (o *tlsOptions) peerConfig() *tls.Config {
	if o.src == nil || !o.src.HasCA() {
		return nil
	}
	return o.src.PeerConfig()
}

// listener wraps an HTTP listener in TLS when a certificate is set.
func (o *tlsOptions) listener(ln net.Listener) net.Listener {
	if o.src == nil {
		return ln
	}
	return tls.NewListener(ln, o.src.ServerConfig(o.clientAuth))
}

// grpcOptions are the gRPC server's credentials: TLS when a certificate
// is set.
func (o *tlsOptions) grpcOptions() []grpc.ServerOption {
	if o.src == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(o.src.ServerConfig(o.clientAuth)))}
}

// watch has r reload the files when they change and on SIGHUP; a bad
// rotation keeps the last good certificate.
func (o *tlsOptions) watch(r *reloader) {
	if o.src == nil {
		return
	}
	paths := []string{o.cert, o.key}
	if o.ca != "" {
		paths = append(paths, o.ca)
	}
	r.watch("--tls-cert", func() error { _, err := o.src.Reload(); return err }, paths...)
}

// announce logs what TLS covers, once at start.
func (o *tlsOptions) announce(log *slog.Logger) {
	if o.src == nil {
		return
	}
	log.Info("TLS on", "http_grpc", true, "rpc_mutual", o.src.HasCA(), "client_certificates", o.clientAuth)
}
