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

	"github.com/ratemesh/ratemesh/internal/textcut"
)

const (
	maxAsync    = 8    // merges, replicas, refunds and takes running at once per connection
	maxCalls    = 256  // checks and resets running on goroutines per connection
	maxErrorMsg = 1024 // longest handler error message sent back
)

// serverConn is one connection of a Server. Its reader goroutine decodes
// requests and answers the handler's fast checks inline; everything else
// runs on goroutines of its own, bounded per connection, so no handler can
// stall the connection. Responses are appended to wbuf, and writeLoop sends
// what has accumulated in one write.
type serverConn struct {
	s      *Server
	nc     net.Conn
	fr     *frameReader // used by the reader only
	ctx    context.Context
	cancel context.CancelFunc
	flush  chan struct{}  // capacity 1: wakes writeLoop
	quit   chan struct{}  // closed when the connection ends
	async  chan struct{}  // semaphore of running merges, replicas, refunds and takes
	calls  chan struct{}  // semaphore of checks and resets on goroutines
	wg     sync.WaitGroup // writeLoop and calls
	callWG sync.WaitGroup // calls running on goroutines of their own
	down   sync.Once
	stop   sync.Once // closes quit

	mu   sync.Mutex
	wbuf []byte
	werr error // writeLoop's failure, reported instead of the reader's
}

// reader is the state of the goroutine reading a connection.
type reader struct {
	sc      *serverConn
	fast    FastChecker // the handler's fast path, if it has one
	codec   *codec
	call    *serverCall // decoded into; handed to a goroutine when Check must run
	pending bool        // responses appended but writeLoop not yet woken
	expiry  expiry      // drops checks read after their callers gave up
}

// serverCall is the state of one check or reset served off the reader. Calls are
// pooled: the reader decodes into one and hands it over whole.
type serverCall struct {
	req     CheckRequest
	resp    CheckResponse
	key     string          // of a reset
	merge   *MergeRequest   // of a merge
	replica *ReplicaRequest // of a replica
	refund  *RefundRequest  // of a refund
	take    *TakeRequest    // of a take
}

func (sc *serverConn) newReader() *reader {
	r := &reader{sc: sc, codec: newCodec(), call: sc.s.getCall()}
	r.fast, _ = sc.s.h.(FastChecker)
	return r
}

// serve runs on the goroutine Serve counted for the connection.
func (sc *serverConn) serve() {
	sc.nc.SetDeadline(time.Now().Add(sc.s.cfg.HandshakeTimeout))
	if err := serverHandshake(sc.nc, sc.fr.r, sc.s.cfg.Secret, sc.s.cfg.version); err != nil {
		sc.shutdown(fmt.Errorf("handshake: %w", err))
		sc.s.wg.Done()
		return
	}
	sc.nc.SetDeadline(time.Time{})
	sc.readDeadline(time.Time{}) // a Shutdown during the handshake
	sc.wg.Add(1)
	go sc.writeLoop()
	defer sc.s.wg.Done()
	sc.shutdown(sc.newReader().loop())
}

// shutdown ends the connection once, logging why unless the peer hung up
// between frames or the server is closing.
func (sc *serverConn) shutdown(err error) {
	sc.down.Do(func() {
		if sc.s.draining.Load() {
			sc.finish()
		}
		sc.cancel()
		sc.nc.Close()
		sc.stopWriter()
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

// drained is the read deadline of a connection whose server shuts down: any
// time in the past, so that the reader stops at once between frames.
var drained = time.Unix(1, 0)

// readDeadline sets the connection's read deadline to t; between frames
// (t zero) of a draining server, to the past instead. It checks draining
// again after setting, so that a Shutdown between the check and the set
// is not undone.
func (sc *serverConn) readDeadline(t time.Time) error {
	if !t.IsZero() || !sc.s.draining.Load() {
		if err := sc.nc.SetReadDeadline(t); err != nil || !t.IsZero() || !sc.s.draining.Load() {
			return err
		}
	}
	return sc.nc.SetReadDeadline(drained)
}

// stopReading makes the reader stop at the next frame boundary: a frame
// whose body is on its way is still read and served.
func (sc *serverConn) stopReading() { sc.readDeadline(time.Time{}) }

// finish answers, on a draining server, every request the reader handed
// over, sends the answers, and half-closes the connection: the peer reads
// every answer, then EOF, and fails over what it sent after (unread here).
func (sc *serverConn) finish() {
	sc.callWG.Wait()
	sc.stopWriter()
	sc.wg.Wait()
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := sc.nc.(closeWriter); ok && cw.CloseWrite() == nil {
		// Read what the peer still sends until it closes, briefly: a
		// close with unread data would reset the connection, and the
		// peer could lose answers it has not read yet.
		sc.nc.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, sc.nc)
	}
}

// stopWriter ends writeLoop after it has sent what is waiting.
func (sc *serverConn) stopWriter() { sc.stop.Do(func() { close(sc.quit) }) }

// loop reads and serves requests until the connection fails. A panic below (a handler's, or a decoding bug)
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

func (r *reader) handle(body []byte) error {
	sc := r.sc
	id, kind, payload := parseHead(body)
	dec := r.codec
	dec.reset(payload)
	switch op(kind) {
	case opPing:
		var herr error
		if sv, ok := sc.s.h.(ServerReadiness); ok {
			if err := sv.Serving(); err != nil {
				herr = fmt.Errorf("%w: %w", ErrNotServing, err)
			}
		}
		return r.replied(sc.reply(id, herr, nil))
	case opCheck:
		cl := r.call
		if err := dec.decodeCheckRequest(&cl.req); err != nil {
			return err
		}
		if late, gone := r.expiry.late(time.Since(sc.s.made), &cl.req); gone {
			sc.s.expired.Add(1)
			sc.s.log.logAt(slog.LevelWarn, "rpc: checks dropped, read after their callers gave up: was this node paused?",
				"remote", sc.nc.RemoteAddr().String(), "late", late.Round(time.Millisecond))
			return r.answer(id, fmt.Errorf("%w (%v later than the fastest)", ErrExpired, late.Round(time.Millisecond)), nil)
		}
		if r.fast != nil {
			cl.resp = CheckResponse{Statuses: cl.resp.Statuses[:0]}
			if done, herr := r.fast.TryCheck(&cl.req, &cl.resp); done {
				return r.answer(id, herr, &cl.resp)
			}
		}
		return r.handOff(sc.calls, id, (*serverConn).check)
	case opReset:
		key, err := dec.decodeKey()
		if err != nil {
			return err
		}
		r.call.key = key
		return r.handOff(sc.calls, id, (*serverConn).reset)
	case opMerge, opReplica, opRefund, opTake:
		serve, err := r.call.decodeAsync(dec, op(kind))
		if err != nil {
			return err
		}
		return r.handOff(sc.async, id, serve)
	}
	return protoErr("unknown op %d", kind)
}

// decodeAsync decodes a request of op o, a merge, replica, refund or take,
// into a fresh request of cl (the handler owns it) and returns the method
// that serves it.
func (cl *serverCall) decodeAsync(dec *codec, o op) (func(*serverConn, *serverCall, *codec) error, error) {
	switch o {
	case opMerge:
		cl.merge = new(MergeRequest)
		return (*serverConn).merge, dec.decodeMergeRequest(cl.merge)
	case opReplica:
		cl.replica = new(ReplicaRequest)
		return (*serverConn).replica, dec.decodeReplicaRequest(cl.replica)
	case opRefund:
		cl.refund = new(RefundRequest)
		return (*serverConn).refund, dec.decodeRefundRequest(cl.refund)
	}
	cl.take = new(TakeRequest)
	return (*serverConn).take, dec.decodeTakeRequest(cl.take)
}

// answer appends the response of a fast check.
func (r *reader) answer(id uint64, herr error, resp *CheckResponse) error {
	c := r.codec
	c.w.b = c.w.b[:0]
	if herr == nil {
		c.encodeCheckResponse(resp)
	}
	return r.replied(r.sc.reply(id, herr, c.w.b))
}

// handOff runs serve with the reader's call on a goroutine of its own,
// holding a slot of sem (maxCalls for checks and resets, maxAsync for
// merges, replicas, refunds and takes); when every slot is taken, the
// reader waits, which pushes back on the peer through TCP. The reader
// takes a fresh call for the next request.
func (r *reader) handOff(sem chan struct{}, id uint64, serve func(*serverConn, *serverCall, *codec) error) error {
	sc := r.sc
	select {
	case sem <- struct{}{}:
	default:
		// Full: send what is answered before waiting, not after.
		sc.s.callWaits.Add(1)
		if r.pending {
			r.pending = false
			sc.wake()
		}
		select {
		case sem <- struct{}{}:
		case <-sc.ctx.Done():
			return sc.ctx.Err()
		}
	}
	cl := r.call
	r.call = sc.s.getCall()
	sc.wg.Add(1)
	sc.callWG.Add(1)
	go sc.serveCall(sem, id, cl, serve)
	return nil
}

// serveCall runs on the goroutine handOff started.
func (sc *serverConn) serveCall(sem chan struct{}, id uint64, cl *serverCall, serve func(*serverConn, *serverCall, *codec) error) {
	defer sc.wg.Done()
	defer sc.callWG.Done()
	defer func() { <-sem }()
	defer sc.recoverHandler()
	c := sc.s.getCodec()
	defer sc.s.putCodec(c)
	c.w.b = c.w.b[:0]
	herr := serve(sc, cl, c)
	sc.s.putCall(cl)
	sc.reply(id, herr, c.w.b)
	sc.wake()
}

// check runs the handler's Check and encodes its answer into c.
func (sc *serverConn) check(cl *serverCall, c *codec) error {
	cl.resp = CheckResponse{Statuses: cl.resp.Statuses[:0]}
	if err := sc.s.h.Check(sc.ctx, &cl.req, &cl.resp); err != nil {
		return err
	}
	c.encodeCheckResponse(&cl.resp)
	return nil
}

// reset runs the handler's Reset; its answer is empty.
func (sc *serverConn) reset(cl *serverCall, _ *codec) error {
	return sc.s.h.Reset(sc.ctx, cl.key)
}

// merge runs the handler's Merge, which owns the request.
func (sc *serverConn) merge(cl *serverCall, _ *codec) error {
	return sc.s.h.Merge(sc.ctx, cl.merge)
}

// replica runs the handler's Replicate, which owns the request.
func (sc *serverConn) replica(cl *serverCall, _ *codec) error {
	return sc.s.h.Replicate(sc.ctx, cl.replica)
}

// refund runs the handler's Refund, which owns the request.
func (sc *serverConn) refund(cl *serverCall, _ *codec) error {
	return sc.s.h.Refund(sc.ctx, cl.refund)
}

// take runs the handler's Take and encodes its answer into c.
func (sc *serverConn) take(cl *serverCall, c *codec) error {
	r, err := sc.s.h.Take(sc.ctx, cl.take)
	if err != nil {
		return err
	}
	return c.encodeTakeResponse(&r)
}

// recoverHandler ends the connection on a handler's panic: the caller sees
// ErrUnavailable and fails over, and the node keeps running.
func (sc *serverConn) recoverHandler() {
	if p := recover(); p != nil {
		sc.s.log.log.Error("rpc: panic in handler", "remote", sc.nc.RemoteAddr().String(), "panic", p, "stack", string(debug.Stack()))
		sc.nc.Close()
	}
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
			msg = textcut.Prefix(msg, maxErrorMsg)
		}
		b[at+preSize-1] = statusError
		switch {
		case errors.Is(herr, ErrNotServing), errors.Is(herr, ErrExpired):
			b[at+preSize-1] = statusNotServing
		case errors.Is(herr, ErrOtherRun):
			b[at+preSize-1] = statusOtherRun
		}
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
	for quit := false; !quit; {
		select {
		case <-sc.flush:
		case <-sc.quit:
			quit = true // after sending what waits: see finish
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
