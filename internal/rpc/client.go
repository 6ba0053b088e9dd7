package rpc

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Redial backoff after a failed dial: calls in the meantime fail at once
// with the dial's error rather than each waiting for a dial of their own.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

var errTimeout = errors.New("call timed out")

// Client calls one peer over a single connection, dialled on first use and
// redialled after it fails. Calls from many goroutines share the connection
// and are batched onto it (see the package documentation). Its methods are
// safe for concurrent use.
type Client struct {
	// made is when the client was made: the zero of its checks' Sent.
	made  time.Time
	addr  string
	cfg   ClientConfig
	log   *logLimiter
	calls sync.Pool // *call

	ctx    context.Context // cancelled by Close: interrupts a dial
	cancel context.CancelFunc

	cur atomic.Pointer[clientConn] // the live connection, read without locking

	mu      sync.Mutex
	dialing chan struct{} // closed when the dial in flight ends; nil if none
	dialErr error         // the last dial's failure, returned until retryAt
	retryAt time.Time
	backoff time.Duration
	closed  bool
	wg      sync.WaitGroup // dial and connection goroutines

	active   atomic.Int64 // round trips under way
	retiring atomic.Bool  // set by Retire: new calls fail unsent
}

// call is one request in flight. Calls are pooled with their buffers.
type call struct {
	codec  *codec // encodes the request frame into codec.w.b, decodes the response
	timer  *time.Timer
	done   chan struct{} // receives once the call has its outcome
	id     uint64
	reads  uint64 // responses the connection had read when this call was sent
	status byte
	resp   []byte // response payload, copied by the reader
	err    error  // set instead of status/resp when the connection failed
}

// NewClient returns a client for the peer at addr (host:port). It does not
// dial until the first call.
func NewClient(addr string, cfg ClientConfig) *Client {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.MergeTimeout <= 0 {
		cfg.MergeTimeout = DefaultMergeTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.IOTimeout <= 0 {
		cfg.IOTimeout = DefaultIOTimeout
	}
	cfg.MaxFrame = maxFrame(cfg.MaxFrame)
	if cfg.version == 0 {
		cfg.version = protoVersion
	}
	c := &Client{made: time.Now(), addr: addr, cfg: cfg, log: newLogLimiter(cfg.Logger)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

func maxFrame(n int) int {
	if n <= 0 {
		return DefaultMaxFrame
	}
	return max(n, minFrame)
}

// Check asks the peer to decide req and fills resp, reusing resp.Statuses.
func (c *Client) Check(ctx context.Context, req *CheckRequest, resp *CheckResponse) error {
	cl := c.begin(opCheck)
	defer c.end(cl)
	now := time.Now() // one clock read for both: this is every forward's path
	req.Sent, req.Wait = now.Sub(c.made), c.cfg.CallTimeout
	if dl, ok := ctx.Deadline(); ok {
		req.Wait = min(req.Wait, max(dl.Sub(now), 0))
	}
	cl.codec.encodeCheckRequest(req)
	if err := c.roundTrip(ctx, cl, opCheck, c.cfg.CallTimeout); err != nil {
		return err
	}
	cl.codec.reset(cl.resp)
	if err := cl.codec.decodeCheckResponse(resp); err != nil {
		return c.unavailable(opCheck, err)
	}
	return nil
}

// Merge hands req.Entries over to the peer, their keys' new owner. Its
// deadline is ctx's, or MergeTimeout when ctx has none. A request larger
// than MaxFrame fails with ErrTooLarge before anything is sent.
func (c *Client) Merge(ctx context.Context, req *MergeRequest) error {
	cl := c.begin(opMerge)
	defer c.end(cl)
	return c.sendCounts(ctx, cl, opMerge, cl.codec.encodeMergeRequest(req))
}

// Replicate sends the peer replicas of this node's counters. Its deadline
// and size limit are Merge's.
func (c *Client) Replicate(ctx context.Context, req *ReplicaRequest) error {
	cl := c.begin(opReplica)
	defer c.end(cl)
	return c.sendCounts(ctx, cl, opReplica, cl.codec.encodeReplicaRequest(req))
}

// Refund gives the peer unused lease units back. Its deadline and size
// limit are Merge's.
func (c *Client) Refund(ctx context.Context, req *RefundRequest) error {
	cl := c.begin(opRefund)
	defer c.end(cl)
	return c.sendCounts(ctx, cl, opRefund, cl.codec.encodeRefundRequest(req))
}

// sendCounts sends the merge, replica or refund that cl holds, unless
// encoding it failed (encErr), under the deadline of Merge.
func (c *Client) sendCounts(ctx context.Context, cl *call, o op, encErr error) error {
	if encErr != nil {
		return fmt.Errorf("rpc: %s: %w", o, encErr)
	}
	timeout := c.cfg.MergeTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return c.roundTrip(ctx, cl, o, timeout)
}

// Reset asks the peer to forget every counter of key.
func (c *Client) Reset(ctx context.Context, key string) error {
	cl := c.begin(opReset)
	defer c.end(cl)
	cl.codec.encodeKey(key)
	return c.roundTrip(ctx, cl, opReset, c.cfg.CallTimeout)
}

// Take asks the peer to remove and return the entry of req.Key; found is
// false when it has none. Its deadline is that of Check.
func (c *Client) Take(ctx context.Context, req *TakeRequest) (TakeResponse, error) {
	cl := c.begin(opTake)
	defer c.end(cl)
	cl.codec.encodeTakeRequest(req)
	if err := c.roundTrip(ctx, cl, opTake, c.cfg.CallTimeout); err != nil {
		return TakeResponse{}, err
	}
	cl.codec.reset(cl.resp)
	var r TakeResponse
	if err := cl.codec.decodeTakeResponse(&r); err != nil {
		return TakeResponse{}, c.unavailable(opTake, err)
	}
	return r, nil
}

// Ping checks that the peer answers, dialling it if needed.
func (c *Client) Ping(ctx context.Context) error {
	cl := c.begin(opPing)
	defer c.end(cl)
	return c.roundTrip(ctx, cl, opPing, c.cfg.CallTimeout)
}

// Close fails the calls in flight with ErrClosed, closes the connection and
// waits for the client's goroutines. Later calls fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cn := c.cur.Swap(nil)
	c.mu.Unlock()
	c.cancel()
	if cn != nil {
		cn.fail(ErrClosed)
	}
	c.wg.Wait()
	return nil
}

// Retire closes the client once the calls in flight have their outcome
// (an answer, or their own timeout): a call that was sent is never cut
// off, so a peer never applies a request whose answer is then thrown
// away. Calls begun after Retire fail with ErrClosed, unsent.
func (c *Client) Retire() error {
	c.retiring.Store(true)
	if c.active.Load() > 0 {
		t := time.NewTicker(time.Millisecond)
		for c.active.Load() > 0 {
			<-t.C
		}
		t.Stop()
	}
	return c.Close()
}

// begin takes a call from the pool and starts its request frame.
func (c *Client) begin(o op) *call {
	cl, _ := c.calls.Get().(*call)
	if cl == nil {
		cl = &call{codec: newCodec(), done: make(chan struct{}, 1), timer: time.NewTimer(time.Hour)}
		cl.timer.Stop()
	}
	cl.codec.w.b, _ = appendHead(cl.codec.w.b[:0], 0, byte(o))
	return cl
}

// end returns cl to the pool, unless its buffers grew large.
func (c *Client) end(cl *call) {
	if cap(cl.codec.w.b) > writeCap {
		cl.codec.w.b = nil
	}
	if cap(cl.resp) > keepBig {
		cl.resp = nil
	}
	cl.err, cl.codec.src = nil, nil
	c.calls.Put(cl)
}

func (c *Client) unavailable(o op, cause error) error {
	return fmt.Errorf("rpc: %s %s: %w: %w", o, c.addr, ErrUnavailable, cause)
}

// roundTrip sends cl's frame and waits for its response, at most timeout.
func (c *Client) roundTrip(ctx context.Context, cl *call, o op, timeout time.Duration) error {
	finishFrame(cl.codec.w.b, 0)
	if len(cl.codec.w.b)-lenSize > c.cfg.MaxFrame {
		return fmt.Errorf("rpc: %s %s: %w (%d bytes, cap %d)", o, c.addr, ErrTooLarge, len(cl.codec.w.b)-lenSize, c.cfg.MaxFrame)
	}
	if err := ctx.Err(); err != nil {
		return c.unavailable(o, err)
	}
	// Counted before retiring is read, as Retire sets retiring before it
	// reads active: a call either fails here or is waited for.
	c.active.Add(1)
	defer c.active.Add(-1)
	if c.retiring.Load() {
		return c.unavailable(o, fmt.Errorf("%w: %w", ErrNotSent, ErrClosed))
	}
	cl.timer.Reset(timeout)
	defer cl.timer.Stop()
	var cn *clientConn
	for attempt := 0; ; attempt++ {
		var err error
		if cn, err = c.conn(ctx, cl); err != nil {
			return c.unavailable(o, fmt.Errorf("%w: %w", ErrNotSent, err))
		}
		if err = cn.send(cl); err == nil {
			break
		}
		// The connection died since we looked it up: one fresh try.
		c.forget(cn)
		if attempt > 0 {
			return c.unavailable(o, err)
		}
	}
	select {
	case <-cl.done:
	case <-ctx.Done():
		cn.abandon(cl, ctx.Err())
	case <-cl.timer.C:
		cn.abandon(cl, errTimeout)
	}
	switch {
	case cl.err != nil:
		return c.unavailable(o, cl.err)
	case cl.status == statusError:
		return &RemoteError{Msg: string(cl.resp)}
	case cl.status == statusNotServing:
		return c.unavailable(o, fmt.Errorf("%w: %w: %s", ErrNotSent, ErrNotServing, cl.resp))
	case cl.status == statusOtherRun:
		return fmt.Errorf("%w (%s)", ErrOtherRun, cl.resp)
	}
	return nil
}

// conn returns the live connection, dialling if there is none. A failed
// dial is not retried before its backoff passes.
func (c *Client) conn(ctx context.Context, cl *call) (*clientConn, error) {
	if cn := c.cur.Load(); cn != nil {
		return cn, nil
	}
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		if cn := c.cur.Load(); cn != nil {
			c.mu.Unlock()
			return cn, nil
		}
		if c.dialing == nil {
			if time.Now().Before(c.retryAt) {
				err := c.dialErr
				c.mu.Unlock()
				return nil, err
			}
			c.dialing = make(chan struct{})
			c.wg.Add(1)
			go c.dial(c.dialing)
		}
		ch := c.dialing
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-cl.timer.C:
			return nil, fmt.Errorf("%w waiting for a connection", errTimeout)
		}
	}
}

// Redial says the peer answers again, or runs anew: the next call dials
// at once instead of failing with the last dial's error until its backoff
// passes. A peer that fails again backs off from where it was.
func (c *Client) Redial() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.retryAt, c.dialErr = time.Time{}, nil
}

// dial connects and handshakes, then installs the connection (or the error
// and the next backoff) and closes ch.
func (c *Client) dial(ch chan struct{}) {
	defer c.wg.Done()
	cn, err := c.connect()
	c.mu.Lock()
	c.dialing = nil
	switch {
	case c.closed:
		if cn != nil {
			cn.nc.Close()
		}
	case err != nil:
		c.backoff = min(max(2*c.backoff, minBackoff), maxBackoff)
		c.retryAt = time.Now().Add(c.backoff)
		c.dialErr = err
		c.log.logAt(slog.LevelWarn, "rpc: dial failed", "peer", c.addr, "err", err, "retry_in", c.backoff)
	default:
		c.backoff, c.dialErr = 0, nil
		c.cur.Store(cn)
		c.wg.Add(2)
		go cn.readLoop()
		go cn.writeLoop()
	}
	c.mu.Unlock()
	close(ch)
}

func (c *Client) connect() (*clientConn, error) {
	d := net.Dialer{Timeout: c.cfg.DialTimeout}
	nc, err := d.DialContext(c.ctx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	if c.cfg.TLS != nil {
		// The TLS handshake runs on the first write, under the
		// handshake's deadline below.
		nc = tls.Client(nc, c.cfg.TLS)
	}
	nc.SetDeadline(time.Now().Add(c.cfg.HandshakeTimeout))
	stop := context.AfterFunc(c.ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	br := bufio.NewReaderSize(nc, readBuf)
	err = clientHandshake(nc, br, c.cfg.Secret, c.cfg.version)
	if !stop() || err != nil {
		nc.Close()
		if err == nil {
			err = ErrClosed
		}
		return nil, fmt.Errorf("handshake: %w", err)
	}
	nc.SetDeadline(time.Time{})
	return &clientConn{
		c:       c,
		nc:      nc,
		fr:      newFrameReader(br, c.cfg.MaxFrame),
		flush:   make(chan struct{}, 1),
		quit:    make(chan struct{}),
		pending: make(map[uint64]*call),
	}, nil
}

// forget drops cn as the live connection, so the next call redials.
func (c *Client) forget(cn *clientConn) {
	c.cur.CompareAndSwap(cn, nil)
}
