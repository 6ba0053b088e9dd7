package rpc

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// op names a request. The values are part of the wire protocol.
type op uint8

const (
	opPing  op = 1
	opCheck op = 2
	opMerge op = 3 // handed-over counts (MergeRequest)
	opReset op = 4
	opTake  op = 5
	// Replicas and refunds were merges with flags before protocol
	// version 3; each is an op of its own now, so that a frame says which
	// of the three it is and the handler need not tell them apart.
	opReplica op = 6 // copies of the sender's counters (ReplicaRequest)
	opRefund  op = 7 // unused lease units given back (RefundRequest)
)

// known reports whether o is an op of this protocol version: they are
// numbered from opPing to opRefund without gaps.
func (o op) known() bool { return o >= opPing && o <= opRefund }

func (o op) String() string {
	switch o {
	case opPing:
		return "ping"
	case opCheck:
		return "check"
	case opMerge:
		return "merge"
	case opReset:
		return "reset"
	case opTake:
		return "take"
	case opReplica:
		return "replica"
	case opRefund:
		return "refund"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Response statuses. The values are part of the wire protocol.
const (
	statusOK    = 0
	statusError = 1
	// statusNotServing: the handler refused the request unapplied
	// (ErrNotServing); the caller may send it elsewhere.
	statusNotServing = 2
	// statusOtherRun: the handler refused the request unapplied, as meant
	// for another run of its node (ErrOtherRun).
	statusOtherRun = 3
)

const (
	lenSize  = 4     // the frame's length prefix
	headSize = 8 + 1 // id and op (request) or id and status (response)
	preSize  = lenSize + headSize
	minFrame = 64        // smallest MaxFrame honoured
	readBuf  = 64 << 10  // per-connection read buffer
	bigChunk = 64 << 10  // growth step when reading a frame larger than readBuf
	keepBig  = 256 << 10 // a frame buffer above this is not kept for reuse
	writeCap = 256 << 10 // a write buffer above this is not kept for reuse
)

// frameError is a protocol violation by the peer: the connection is closed.
type frameError struct{ msg string }

func (e *frameError) Error() string { return e.msg }

func protoErr(format string, args ...any) error {
	return &frameError{fmt.Sprintf(format, args...)}
}

// frameReader reads frames from a buffered connection. A frame that fits the
// read buffer is returned in place (no copy); a larger one is read into a
// buffer grown only as its bytes arrive, so a peer that announces a large
// frame and stalls costs at most what it actually sent.
type frameReader struct {
	r    *bufio.Reader
	max  int
	big  []byte
	drop bool // big held a frame above keepBig: release it on the next read

	// deadline, when non-nil, is called with a time limit before a frame
	// body is read from the network and with the zero time after.
	deadline func(time.Time) error
	timeout  time.Duration
}

func newFrameReader(r *bufio.Reader, max int) *frameReader {
	return &frameReader{r: r, max: max}
}

// next returns the next frame's body, valid until the following call. It
// returns io.EOF when the peer closed cleanly between frames.
func (fr *frameReader) next() ([]byte, error) {
	if fr.drop {
		fr.big, fr.drop = nil, false
	}
	hdr, err := fr.r.Peek(lenSize)
	if err != nil {
		if err == io.EOF && len(hdr) > 0 {
			return nil, protoErr("truncated frame header (%d bytes)", len(hdr))
		}
		return nil, err
	}
	n64 := uint64(binary.BigEndian.Uint32(hdr))
	if n64 > uint64(fr.max) {
		return nil, protoErr("frame of %d bytes exceeds the cap of %d", n64, fr.max)
	}
	n := int(n64)
	if n < headSize {
		return nil, protoErr("frame of %d bytes is shorter than its header", n)
	}
	fr.r.Discard(lenSize)
	if fr.r.Buffered() < n && fr.deadline != nil {
		// The body is still on its way: a stalled peer must not hold
		// this connection forever.
		fr.deadline(time.Now().Add(fr.timeout))
		defer fr.deadline(time.Time{})
	}
	if n <= fr.r.Size() {
		body, err := fr.r.Peek(n)
		if err != nil {
			return nil, truncated(err, len(body), n)
		}
		fr.r.Discard(n)
		return body, nil
	}
	buf := fr.big[:0]
	for len(buf) < n {
		step := min(n-len(buf), max(len(buf), bigChunk))
		if cap(buf)-len(buf) < step {
			nb := make([]byte, len(buf), len(buf)+step)
			copy(nb, buf)
			buf = nb
		}
		m, err := io.ReadFull(fr.r, buf[len(buf):len(buf)+step])
		buf = buf[:len(buf)+m]
		if err != nil {
			return nil, truncated(err, len(buf), n)
		}
	}
	fr.big = buf
	fr.drop = cap(buf) > keepBig
	return buf, nil
}

// hasFrame reports whether a whole frame is already buffered, i.e. whether
// the next call to next will return without reading from the network.
func (fr *frameReader) hasFrame() bool {
	b := fr.r.Buffered()
	if b < lenSize {
		return false
	}
	hdr, _ := fr.r.Peek(lenSize)
	n := uint64(binary.BigEndian.Uint32(hdr))
	// A bad length fails next at once, which does not block either.
	return n > uint64(fr.max) || n < headSize || uint64(b) >= lenSize+n
}

func truncated(err error, got, want int) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return protoErr("truncated frame (%d of %d bytes)", got, want)
	}
	return err
}

// appendHead appends a frame's length placeholder, id and op/status byte and
// returns the buffer and the offset of the frame, for finishFrame.
func appendHead(b []byte, id uint64, kind byte) ([]byte, int) {
	at := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, kind)
	binary.BigEndian.PutUint64(b[at+lenSize:], id)
	return b, at
}

// finishFrame writes the length of the frame starting at offset at.
func finishFrame(b []byte, at int) {
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-lenSize))
}

// parseHead splits a frame body into id, op/status byte and payload.
func parseHead(body []byte) (id uint64, kind byte, payload []byte) {
	return binary.BigEndian.Uint64(body), body[8], body[headSize:]
}
