// Package grpcguard keeps one gRPC request from taking a server down: a
// panic in a handler becomes an Internal status (logged at a bounded rate
// and counted), and a budget of bytes bounds the memory held by requests
// being read, decoded or decided at once.
package grpcguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ratemesh/ratemesh/internal/logevery"
)

// Config sets up a Guard.
type Config struct {
	// MaxRecvMsgSize is the server's bound on one received message
	// (grpc.MaxRecvMsgSize): the bytes reserved while a message of
	// unknown size is read. Must be > 0.
	MaxRecvMsgSize int
	// MaxInFlightBytes bounds the bytes of requests being read, decoded
	// or decided at once; at least ReadReserve. Requests past it wait
	// (until their deadline) for others to finish.
	MaxInFlightBytes int64
	// ReadReserve is what a request takes of the budget while it is read
	// and decoded, before its size is known: at least what Weigh can
	// return for a message of MaxRecvMsgSize. 0 means MaxRecvMsgSize.
	ReadReserve int64
	// ReadTimeout bounds the time a unary request may take to arrive once
	// its reserve is taken; 0 means DefaultReadTimeout.
	ReadTimeout time.Duration
	// Weigh returns what a unary request holds while it is decided, from
	// its wire form raw, before it is decoded into m, or an error (a
	// status) refusing it undecoded. Nil: its size, after decoding.
	Weigh func(raw []byte, m any) (int64, error)
	// Registerer receives the guard's metrics; nil: none.
	Registerer prometheus.Registerer
	// Logger receives recovered panics, at most one line per
	// logevery.DefaultInterval; nil: discarded.
	Logger *slog.Logger
}

// DefaultReadTimeout is Config.ReadTimeout's default.
const DefaultReadTimeout = 10 * time.Second

// ErrConfig is a Config the guard cannot work with.
var ErrConfig = errors.New("grpcguard: bad config")

// Guard holds a server's panic counter, log and byte budget. Its methods
// are safe for concurrent use.
type Guard struct {
	reserve     int64 // taken while a request is read
	readTimeout time.Duration
	total       int64
	weigh       func([]byte, any) (int64, error)
	budget      *budget
	logs        *logevery.Logger
	panics      atomic.Int64
}

// New returns a Guard for cfg, its metrics registered.
func New(cfg Config) (*Guard, error) {
	if cfg.ReadReserve <= 0 {
		cfg.ReadReserve = int64(cfg.MaxRecvMsgSize)
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.MaxRecvMsgSize <= 0 || cfg.ReadReserve < int64(cfg.MaxRecvMsgSize) || cfg.MaxInFlightBytes < cfg.ReadReserve {
		return nil, fmt.Errorf("%w: in-flight bytes %d must be at least the read reserve %d, at least the largest message %d",
			ErrConfig, cfg.MaxInFlightBytes, cfg.ReadReserve, cfg.MaxRecvMsgSize)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Guard{
		reserve: cfg.ReadReserve, readTimeout: cfg.ReadTimeout, total: cfg.MaxInFlightBytes, weigh: cfg.Weigh, budget: newBudget(cfg.MaxInFlightBytes),
		logs: logevery.New(cfg.Logger, logevery.DefaultInterval),
	}
	if cfg.Registerer != nil {
		inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ratemesh", Subsystem: "grpc", Name: "in_flight_bytes",
			Help: "Bytes of the in-flight budget held by gRPC requests being read, decoded or decided."},
			func() float64 { return float64(g.InFlight()) })
		panics := prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "ratemesh", Subsystem: "grpc", Name: "panics_total",
			Help: "gRPC handler panics recovered and answered with Internal."}, func() float64 { return float64(g.Panics()) })
		for _, c := range []prometheus.Collector{panics, inFlight} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return g, nil
}

// Acquire takes n bytes of the budget, or all of it if that is less, for
// a request the server does not read through gRPC (POST /json), waiting
// until they are free or ctx ends; it returns what it took. Give them
// back with Release.
func (g *Guard) Acquire(ctx context.Context, n int64) (int64, error) {
	n = min(n, g.total)
	if err := g.budget.acquire(ctx, n); err != nil {
		return 0, err
	}
	return n, nil
}

// Release gives back n bytes taken with Acquire.
func (g *Guard) Release(n int64) { g.budget.release(n) }

// InFlight is the bytes of the budget held now.
func (g *Guard) InFlight() int64 { return g.budget.taken(g.total) }

// Panics is the number of panics recovered so far.
func (g *Guard) Panics() int64 { return g.panics.Load() }

// ServerOptions are the guard's interceptors, to pass to grpc.NewServer.
func (g *Guard) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(g.unaryRecover), grpc.ChainStreamInterceptor(g.streamRecover)}
}

func (g *Guard) unaryRecover(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer g.recover(info.FullMethod, &err)
	return h(ctx, req)
}

func (g *Guard) streamRecover(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer g.recover(info.FullMethod, &err)
	return h(srv, ss)
}

// recover turns a panic of the handler of method into an Internal status
// in *err. The client learns nothing of the panic; the log has it with
// its stack, at most once per interval.
func (g *Guard) recover(method string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	g.panics.Add(1)
	g.logs.Error(time.Now(), "panic", "grpc: handler panicked; answered Internal", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	*err = status.Error(codes.Internal, "internal error")
}

// weight is what a request decoded without Weigh holds of the budget
// while it is decided: its size.
func (g *Guard) weight(m any) int64 {
	if pm, ok := m.(proto.Message); ok {
		return min(int64(proto.Size(pm)), g.reserve)
	}
	return g.reserve
}
