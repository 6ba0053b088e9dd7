package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"
)

const (
	maxAsync    = 8    // merges and takes running at once per connection
	maxErrorMsg = 1024 // longest handler error message sent back
)

// errDetached ends a reader loop whose reading moved to another goroutine.
var errDetached = errors.New("rpc: reading moved to another goroutine")

type readerKey struct{}

// Blocking tells the server that the Check (or Reset) handler running with
// ctx is about to block, to call a peer or wait for a transfer: reading the
// connection moves to a new goroutine at once, so the connection's other
// requests do not wait for this one. Call it from the handler's goroutine,
// before blocking. Further calls, and calls with any other context, do
// nothing. The handler's req and resp stay valid until it returns, as
// always.
func Blocking(ctx context.Context) {
	if r, _ := ctx.Value(readerKey{}).(*reader); r != nil && !r.detached {
		r.detach()
	}
}

// serverConn is one connection of a Server. One goroutine at a time reads
// it (see reader), decoding requests and running checks inline; responses
// are appended to wbuf, and writeLoop sends what has accumulated in one
// write.
type serverConn struct {
	s      *Server
	nc     net.Conn
	fr     *frameReader // used by the current reader only
	ctx    context.Context
	cancel context.CancelFunc
	flush  chan struct{} // capacity 1: wakes writeLoop
	quit   chan struct{} // closed when the connection ends
	async  chan struct{} // semaphore of running merges and takes
	wg     sync.WaitGroup
	down   sync.Once

	mu   sync.Mutex
	wbuf []byte
	werr error // writeLoop's failure, reported instead of the reader's
}

// reader is the state of the goroutine reading a connection. Blocking
// leaves it to the handler that called it and starts a fresh one.
type reader struct {
	sc       *serverConn
	ctx      context.Context // given to inline handlers; carries r for Blocking
	codec    *codec
	req      CheckRequest
	resp     CheckResponse
	pending  bool // responses appended but writeLoop not yet woken
	detached bool // Blocking was called: this goroutine no longer reads
}

func (sc *serverConn) newReader(c *codec) *reader {
	r := &reader{sc: sc, codec: c}
	r.ctx = context.WithValue(sc.ctx, readerKey{}, r)
	return r
}

// serve runs on the goroutine Serve counted for the connection.
func (sc *serverConn) serve() {
	sc.nc.SetDeadline(time.Now().Add(sc.s.cfg.HandshakeTimeout))
	if err := serverHandshake(sc.nc, sc.fr.r, sc.s.cfg.Secret); err != nil {
		sc.shutdown(fmt.Errorf("handshake: %w", err))
		sc.s.wg.Done()
		return
	}
	sc.nc.SetDeadline(time.Time{})
	sc.wg.Add(1)
	go sc.writeLoop()
	sc.read(sc.newReader(newCodec()))
}

// read runs r on this goroutine, which Server.wg counts, and ends the
// connection when reading fails, unless reading moved on.
func (sc *serverConn) read(r *reader) {
	defer sc.s.wg.Done()
	if err := r.loop(); err != errDetached {
		sc.shutdown(err)
	}
}

// shutdown ends the connection once, logging why unless the peer hung up
// between frames or the server is closing.
func (sc *serverConn) shutdown(err error) {
	sc.down.Do(func() {
		sc.cancel()
		sc.nc.Close()
		close(sc.quit)
		sc.wg.Wait()
		sc.s.forget(sc)
		sc.mu.Lock()
		if sc.werr != nil {
			err = sc.werr
		}
		sc.mu.Unlock()
		if err == nil || err == io.EOF || sc.s.isClosed() {
			return
		}
		sc.s.log.logAt(slog.LevelWarn, "rpc: connection closed", "remote", sc.nc.RemoteAddr().String(), "reason", err.Error())
	})
}

// loop reads and serves requests until the connection fails or Blocking
// moves reading elsewhere. A panic below (a handler's, or a decoding bug)
// ends only this connection.
func (r *reader) loop() (err error) {
	sc := r.sc
	defer func() {
		if p := recover(); p != nil {
			sc.s.log.log.Error("rpc: panic serving connection", "remote", sc.nc.RemoteAddr().String(), "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	for {
		if r.pending && !sc.fr.hasFrame() {
			r.pending = false
			sc.wake()
		}
		body, err := sc.fr.next()
		if err != nil {
			return err
		}
		if err := r.handle(body); err != nil {
			return err
		}
	}
}

// detach hands reading to a new goroutine; this one finishes its handler.
func (r *reader) detach() {
	r.detached = true
	if r.pending {
		r.pending = false
		r.sc.wake()
	}
	next := r.sc.newReader(r.codec)
	r.codec = nil
	r.sc.s.wg.Add(1)
	go r.sc.read(next)
}

func (r *reader) handle(body []byte) error {
	sc := r.sc
	id, kind, payload := parseHead(body)
	dec := r.codec
	dec.reset(payload)
	switch op(kind) {
	case opPing:
		return r.replied(sc.reply(id, nil, nil))
	case opCheck:
		if err := dec.decodeCheckRequest(&r.req); err != nil {
			return err
		}
		r.resp = CheckResponse{Statuses: r.resp.Statuses[:0]}
		herr := sc.s.h.Check(r.ctx, &r.req, &r.resp)
		return r.answer(id, herr, &r.resp)
	case opReset:
		key, err := dec.decodeKey()
		if err != nil {
			return err
		}
		return r.answer(id, sc.s.h.Reset(r.ctx, key), nil)
	case opMerge:
		req := new(MergeRequest)
		if err := dec.decodeMergeRequest(req); err != nil {
			return err
		}
		return sc.spawn(func() error { return sc.s.h.Merge(sc.ctx, req) }, id, nil)
	case opTake:
		req := new(TakeRequest)
		if err := dec.decodeTakeRequest(req); err != nil {
			return err
		}
		return sc.spawn(nil, id, req)
	}
	return protoErr("unknown op %d", kind)
}

// answer appends the response of an inline handler: a check's when resp is
// set, else an empty one. After Blocking, this goroutine no longer owns
// the reader's codec and stops reading.
func (r *reader) answer(id uint64, herr error, resp *CheckResponse) error {
	c := r.codec
	if r.detached {
		c = r.sc.s.getCodec()
		defer r.sc.s.putCodec(c)
	}
	c.w.b = c.w.b[:0]
	if herr == nil && resp != nil {
		c.encodeCheckResponse(resp)
	}
	backlog := r.sc.reply(id, herr, c.w.b)
	if r.detached {
		r.sc.wake()
		return errDetached
	}
	return r.replied(backlog)
}

// replied notes that a response awaits writing: writeLoop is woken once no
// further request is buffered, so the responses to one read leave together.
func (r *reader) replied(backlog int) error {
	r.pending = true
	if backlog > 2*r.sc.s.cfg.MaxFrame {
		return errors.New("response backlog over twice the frame cap: the peer is not reading")
	}
	return nil
}

// spawn runs a merge (fn) or a take (req) on a goroutine of its own, at
// most maxAsync at once; the reader waits for a free slot.
func (sc *serverConn) spawn(fn func() error, id uint64, req *TakeRequest) error {
	select {
	case sc.async <- struct{}{}:
	case <-sc.ctx.Done():
		return sc.ctx.Err()
	}
	sc.wg.Add(1)
	go func() {
		defer sc.wg.Done()
		defer func() { <-sc.async }()
		defer func() {
			if p := recover(); p != nil {
				sc.s.log.log.Error("rpc: panic in handler", "remote", sc.nc.RemoteAddr().String(), "panic", p, "stack", string(debug.Stack()))
				sc.nc.Close()
			}
		}()
		c := sc.s.getCodec()
		defer sc.s.putCodec(c)
		c.w.b = c.w.b[:0]
		var herr error
		if req == nil {
			herr = fn()
		} else {
			ent, found, err := sc.s.h.Take(sc.ctx, req)
			if herr = err; herr == nil {
				herr = c.encodeTakeResponse(&ent, found)
			}
		}
		sc.reply(id, herr, c.w.b)
		sc.wake()
	}()
	return nil
}

// reply appends a response carrying herr's message, or else payload. It
// returns the number of bytes waiting to be written.
func (sc *serverConn) reply(id uint64, herr error, payload []byte) int {
	if herr == nil && len(payload) > sc.s.cfg.MaxFrame-headSize {
		herr = fmt.Errorf("response of %d bytes exceeds the frame cap", len(payload)+headSize)
	}
	sc.mu.Lock()
	b, at := appendHead(sc.wbuf, id, statusOK)
	if herr != nil {
		msg := herr.Error()
		if len(msg) > maxErrorMsg {
			msg = msg[:maxErrorMsg]
		}
		b[at+preSize-1] = statusError
		b = append(b, msg...)
	} else {
		b = append(b, payload...)
	}
	finishFrame(b, at)
	sc.wbuf = b
	sc.mu.Unlock()
	return len(b)
}

// wake asks writeLoop to send what has accumulated.
func (sc *serverConn) wake() {
	select {
	case sc.flush <- struct{}{}:
	default:
	}
}

func (sc *serverConn) writeLoop() {
	defer sc.wg.Done()
	var out []byte
	for {
		select {
		case <-sc.flush:
		case <-sc.quit:
			return
		}
		sc.mu.Lock()
		out, sc.wbuf = sc.wbuf, out[:0]
		sc.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		sc.nc.SetWriteDeadline(time.Now().Add(sc.s.cfg.IOTimeout))
		if _, err := sc.nc.Write(out); err != nil {
			sc.mu.Lock()
			if sc.werr == nil && sc.ctx.Err() == nil {
				sc.werr = fmt.Errorf("writing responses: %w", err)
			}
			sc.mu.Unlock()
			sc.nc.Close()
			return
		}
		if cap(out) > writeCap {
			out = nil
		}
	}
}
