package rpc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// clientConn is one connection of a Client: callers append frames to wbuf
// and register in pending under mu; writeLoop sends wbuf whole, so the
// frames of calls made while a write is in progress leave together in the
// next one; readLoop hands each response to its call by id.
type clientConn struct {
	c     *Client
	nc    net.Conn
	fr    *frameReader
	reads atomic.Uint64 // responses read so far
	flush chan struct{} // capacity 1: wakes writeLoop
	quit  chan struct{} // closed by fail

	mu      sync.Mutex
	wbuf    []byte
	pending map[uint64]*call
	nextID  uint64
	err     error // why the connection failed; nil while it works
}

// send queues cl's frame under a fresh id.
func (cn *clientConn) send(cl *call) error {
	frame := cl.codec.w.b
	cn.mu.Lock()
	if cn.err != nil {
		err := cn.err
		cn.mu.Unlock()
		return err
	}
	if len(cn.wbuf) > 0 && len(cn.wbuf)+len(frame) > 2*cn.c.cfg.MaxFrame {
		cn.mu.Unlock()
		err := errors.New("send queue full: the peer is not reading")
		cn.fail(err)
		return err
	}
	cn.nextID++
	cl.id = cn.nextID
	cl.reads = cn.reads.Load()
	at := len(cn.wbuf)
	cn.wbuf = append(cn.wbuf, frame...)
	binary.BigEndian.PutUint64(cn.wbuf[at+lenSize:], cl.id)
	cn.pending[cl.id] = cl
	cn.mu.Unlock()
	if at == 0 {
		// The buffer was empty, so writeLoop may be idle: wake it. Frames
		// appended after this one ride along without a wake-up of their own.
		select {
		case cn.flush <- struct{}{}:
		default:
		}
	}
	return nil
}

// abandon gives up on cl (its deadline or context ended). If the reader or
// fail has already taken cl it is about to complete it, so wait for that and
// keep the outcome.
func (cn *clientConn) abandon(cl *call, cause error) {
	cn.mu.Lock()
	mine := cn.pending[cl.id] == cl
	if mine {
		delete(cn.pending, cl.id)
	}
	cn.mu.Unlock()
	if !mine {
		<-cl.done
		return
	}
	cl.err = fmt.Errorf("%w: %w", ErrNoAnswer, cause)
	if cause == errTimeout && cn.reads.Load() == cl.reads {
		// Not a single response since this call was sent: the peer or the
		// path to it is stuck. Start over on a fresh connection rather
		// than queue more calls behind this one. The calls pending on it
		// may still be applied by the peer, too.
		cn.abort(fmt.Errorf("%w: no response within the call timeout", ErrNoAnswer))
	}
}

// abort is fail for a connection whose peer may never have received what
// was written to it (a partition, a stuck peer): the connection is reset,
// not closed. A closed socket goes on retransmitting its unacknowledged
// requests after the caller gave up on them and decided elsewhere, and a
// partition that heals delivers them: the owner would count checks the
// node they failed over to counted already. A reset discards them.
func (cn *clientConn) abort(cause error) {
	nc := cn.nc
	if u, ok := nc.(interface{ NetConn() net.Conn }); ok {
		nc = u.NetConn() // TLS: reset the TCP connection under it
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	cn.fail(cause)
}

func (cn *clientConn) readLoop() {
	defer cn.c.wg.Done()
	for {
		body, err := cn.fr.next()
		if err != nil {
			cn.fail(err)
			return
		}
		id, status, payload := parseHead(body)
		if status > statusOtherRun {
			cn.fail(protoErr("unknown response status %d", status))
			return
		}
		cn.reads.Add(1)
		cn.mu.Lock()
		cl := cn.pending[id]
		if cl != nil {
			delete(cn.pending, id)
		}
		cn.mu.Unlock()
		if cl == nil {
			continue // its caller gave up
		}
		cl.status = status
		cl.resp = append(cl.resp[:0], payload...)
		cl.done <- struct{}{}
	}
}

func (cn *clientConn) writeLoop() {
	defer cn.c.wg.Done()
	var out []byte
	for {
		select {
		case <-cn.flush:
		case <-cn.quit:
			return
		}
		// Let callers that are already runnable (woken by responses)
		// append their next requests first, so they share this write.
		runtime.Gosched()
		cn.mu.Lock()
		out, cn.wbuf = cn.wbuf, out[:0]
		cn.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		cn.nc.SetWriteDeadline(time.Now().Add(cn.c.cfg.IOTimeout))
		if _, err := cn.nc.Write(out); err != nil {
			cn.fail(err)
			return
		}
		if cap(out) > writeCap {
			out = nil
		}
	}
}

// fail closes the connection once and completes every pending call with
// an error wrapping cause.
func (cn *clientConn) fail(cause error) {
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return
	}
	cn.err = fmt.Errorf("connection lost: %w", cause)
	if cause == ErrClosed {
		cn.err = ErrClosed
	}
	pending := cn.pending
	cn.pending = nil
	cn.mu.Unlock()
	cn.c.forget(cn)
	close(cn.quit)
	cn.nc.Close()
	for _, cl := range pending {
		cl.err = cn.err
		cl.done <- struct{}{}
	}
	if cause != ErrClosed {
		lvl := slog.LevelWarn
		if errors.Is(cause, io.EOF) {
			lvl = slog.LevelInfo // the peer closed: restarting or leaving
		}
		cn.c.log.logAt(lvl, "rpc: connection to peer lost", "peer", cn.c.addr, "err", cause, "failed_calls", len(pending))
	}
}
