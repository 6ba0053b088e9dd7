package rpc

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Server answers the RPCs of peers with a Handler. Create it with NewServer.
type Server struct {
	made    time.Time    // the zero of its clock for expiry
	expired atomic.Int64 // checks dropped as read after their callers gave up
	h       Handler
	cfg     ServerConfig
	log     *logLimiter

	ctx    context.Context // parent of every connection's context; cancelled by Close
	cancel context.CancelFunc

	// draining is set by Shutdown: connections stop reading requests and
	// close once every request they read is answered.
	draining atomic.Bool

	mu     sync.Mutex
	lns    map[net.Listener]struct{}
	conns  map[*serverConn]struct{}
	closed bool
	wg     sync.WaitGroup // connection goroutines
	codecs sync.Pool      // *codec, for responses written off the reader
	calls  sync.Pool      // *serverCall, for checks and resets served off the reader

	callWaits atomic.Int64 // times a reader waited for a free call slot
}

// NewServer returns a server for h; call Serve to accept connections.
func NewServer(h Handler, cfg ServerConfig) *Server {
	cfg.MaxFrame = maxFrame(cfg.MaxFrame)
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.IOTimeout <= 0 {
		cfg.IOTimeout = DefaultIOTimeout
	}
	if cfg.version == 0 {
		cfg.version = protoVersion
	}
	s := &Server{made: time.Now(), h: h, cfg: cfg, log: newLogLimiter(cfg.Logger),
		lns: make(map[net.Listener]struct{}), conns: make(map[*serverConn]struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Serve accepts connections on ln and serves each on its own goroutines
// until Close. It closes ln on return and returns nil after Close, or the
// listener's error when it fails for good. Transient accept errors (out of
// file descriptors) are logged and retried with a backoff.
func (s *Server) Serve(ln net.Listener) error {
	defer ln.Close()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.logAt(slog.LevelError, "rpc: accept failed", "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				return nil
			}
			continue
		}
		delay = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return nil
		}
		sc := s.newConn(nc)
		s.conns[sc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go sc.serve()
	}
}

// ExpiredChecks returns how many checks the server dropped unapplied as
// read after their callers gave up on them (ErrExpired).
func (s *Server) ExpiredChecks() int64 { return s.expired.Load() }

// Close stops every Serve, closes all connections (cancelling the contexts
// of running handlers) and waits until their goroutines have returned.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.lns {
		ln.Close()
	}
	for sc := range s.conns {
		sc.nc.Close()
	}
	s.mu.Unlock()
	// Cancel handlers only now that no answer of theirs can leave: a peer
	// must see a closed connection (ErrUnavailable), not a RemoteError.
	s.cancel()
	s.wg.Wait()
	return nil
}

// Shutdown closes the server gracefully: it stops accepting connections and
// reading requests, lets every request already read run to its answer and
// sends the answers, then closes each connection. A peer therefore sees each
// request it sent either answered or never read (the connection closed
// before it): never applied with its answer lost, which the peer would
// retry elsewhere and count twice. When ctx ends first the rest is closed
// as Close does, and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.draining.Store(true)
	for ln := range s.lns {
		ln.Close()
	}
	for sc := range s.conns {
		sc.stopReading()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.Close()
	<-done
	return ctx.Err()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) newConn(nc net.Conn) *serverConn {
	sc := &serverConn{
		s:     s,
		nc:    nc,
		fr:    newFrameReader(bufio.NewReaderSize(nc, readBuf), s.cfg.MaxFrame),
		flush: make(chan struct{}, 1),
		quit:  make(chan struct{}),
		async: make(chan struct{}, maxAsync),
		calls: make(chan struct{}, maxCalls),
	}
	sc.fr.deadline, sc.fr.timeout = sc.readDeadline, s.cfg.IOTimeout
	sc.ctx, sc.cancel = context.WithCancel(s.ctx)
	return sc
}

func (s *Server) forget(sc *serverConn) {
	s.mu.Lock()
	delete(s.conns, sc)
	s.mu.Unlock()
}

func (s *Server) getCodec() *codec {
	if c, _ := s.codecs.Get().(*codec); c != nil {
		return c
	}
	return newCodec()
}

func (s *Server) putCodec(c *codec) {
	if cap(c.w.b) > writeCap {
		c.w.b = nil
	}
	c.src = nil
	s.codecs.Put(c)
}

func (s *Server) getCall() *serverCall {
	if cl, _ := s.calls.Get().(*serverCall); cl != nil {
		return cl
	}
	return new(serverCall)
}

// putCall keeps a call's slices for reuse, but not slices grown by a huge
// request. Its key stays, so that decoding the same key again reuses the
// string.
func (s *Server) putCall(cl *serverCall) {
	cl.merge, cl.replica, cl.refund, cl.take = nil, nil, nil, nil
	if cap(cl.req.Counters) > 64 || cap(cl.resp.Statuses) > 64 {
		*cl = serverCall{}
	}
	s.calls.Put(cl)
}
