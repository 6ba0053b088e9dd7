package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/ratemesh/ratemesh/internal/rpc"
)

// Peer is another node as this one calls it: the operations of the RPC
// protocol. Every error that means "the peer did not answer" wraps
// rpc.ErrUnavailable; the cluster fails over on those and on nothing else.
type Peer interface {
	Check(ctx context.Context, req *rpc.CheckRequest, resp *rpc.CheckResponse) error
	Merge(ctx context.Context, req *rpc.MergeRequest) error
	Replicate(ctx context.Context, req *rpc.ReplicaRequest) error
	Refund(ctx context.Context, req *rpc.RefundRequest) error
	Take(ctx context.Context, req *rpc.TakeRequest) (rpc.TakeResponse, error)
	Reset(ctx context.Context, key string) error
	Ping(ctx context.Context) error
	// Close ends the peer's connection and waits for its goroutines.
	Close() error
	// Retire closes the peer once the calls in flight have their outcome;
	// calls begun after fail unsent, wrapping rpc.ErrUnavailable. A call
	// that was sent is never cut off: the peer may have applied it.
	Retire() error
}

// Transport is the seam between a cluster and its peers: it serves this
// node's handler and reaches the others. The real one is TCP with the
// msgpack RPC (NewTCPTransport); tests use an in-memory one.
type Transport interface {
	// Listen starts serving h and returns the address peers dial.
	Listen(h rpc.Handler) (addr string, err error)
	// Dial returns the peer at addr. It may connect lazily, on first use.
	Dial(addr string) Peer
	// Shutdown stops serving gracefully: every request already read is
	// answered, none is read after; past ctx it closes as Close does.
	Shutdown(ctx context.Context) error
	// Close stops serving at once and waits until no handler runs.
	Close() error
}

// TCPConfig configures the TCP transport.
type TCPConfig struct {
	BindAddr    string
	Port        int // 0: any free port
	Secret      []byte
	TLS         *tls.Config // nil: plain TCP
	DialTimeout time.Duration
	CallTimeout time.Duration
	Logger      *slog.Logger
}

// tcpTransport is the msgpack RPC over TCP.
type tcpTransport struct {
	cfg    TCPConfig
	mu     sync.Mutex
	server *rpc.Server
	done   chan struct{} // closed when Serve returned
}

// NewTCPTransport returns the real transport: an RPC server on
// cfg.BindAddr:cfg.Port and one multiplexed connection per peer.
func NewTCPTransport(cfg TCPConfig) Transport { return &tcpTransport{cfg: cfg} }

func (t *tcpTransport) Listen(h rpc.Handler) (string, error) {
	addr := net.JoinHostPort(t.cfg.BindAddr, strconv.Itoa(t.cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("cluster: listen for RPC on %s: %w", addr, err)
	}
	if t.cfg.TLS != nil {
		ln = tls.NewListener(ln, t.cfg.TLS)
	}
	srv := rpc.NewServer(h, rpc.ServerConfig{Secret: t.cfg.Secret, Logger: t.cfg.Logger})
	done := make(chan struct{})
	t.mu.Lock()
	t.server, t.done = srv, done
	t.mu.Unlock()
	go func() { defer close(done); srv.Serve(ln) }()
	return ln.Addr().String(), nil
}

func (t *tcpTransport) Dial(addr string) Peer {
	return rpc.NewClient(addr, rpc.ClientConfig{
		Secret:      t.cfg.Secret,
		TLS:         t.cfg.TLS,
		DialTimeout: t.cfg.DialTimeout,
		CallTimeout: t.cfg.CallTimeout,
		Logger:      t.cfg.Logger,
	})
}

func (t *tcpTransport) Close() error {
	return t.stop(func(srv *rpc.Server) error { return srv.Close() })
}

func (t *tcpTransport) Shutdown(ctx context.Context) error {
	return t.stop(func(srv *rpc.Server) error { return srv.Shutdown(ctx) })
}

func (t *tcpTransport) stop(how func(*rpc.Server) error) error {
	t.mu.Lock()
	srv, done := t.server, t.done
	t.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := how(srv)
	<-done
	return err
}
