package rpc

import (
	"bytes"
	"io"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/ratemesh/ratemesh/bucket"
)

// Payload layouts (msgpack arrays, fixed positions, no field names):
//
//	CheckRequest  [key str, cost int, [[scope str, amount int, period ns, strategy uint]...], hops int]
//	CheckResponse [allowed bool, node str, [[amount, period ns, remaining, reset unix ns|nil, retry-after ns]...]]
//	reset         key str
//	MergeRequest   [3, from str, [base-incarnation uint, [base entry...], fill-in bool, to-incarnation uint, from-incarnation uint], [entry...]]
//	ReplicaRequest [6, from str, incarnation uint, [entry...]]
//	RefundRequest  [7, from str, hops int, [entry...]]
//	TakeRequest   [key str, to str, to-addr str, incarnation uint]
//	take response [found bool, entry|nil, supersedes bool]
//	entry         [key str, [state...]]
//	state         [scope str, amount int, period ns, strategy uint, start int, count int, prev int, tat int, tat-frac int, [hit int...]]
//	ping, and every other ok response: empty
//
// A merge, replica or refund payload opens with its op: the three have the
// same shape, and a payload under another op (a refund's hops read as a
// replica's incarnation, say) would otherwise decode and be applied as
// the wrong job. The decoder refuses it by name instead.
//
// Every type is written field by field with the Encoder/Decoder
// primitives: no reflection, no field names on the wire, and strings are
// read in place. Counter states travel at every handoff and, with
// replicas, after every allowed check, so they are as lean as checks.

const (
	counterFields = 4
	checkFields   = 6 // key, cost, counters, hops, sent, wait
	statusFields  = 5
	minCounter    = 1 + counterFields // fixarray + one byte per field
	minStatus     = 1 + statusFields
	minEntry      = 3  // fixarray, fixstr, fixarray
	countsFields  = 4  // op, from, the op's own field, entries
	stateFields   = 10 // scope, amount, period, strategy, start, count, prev, tat, tat-frac, hits
	minState      = 11 // fixarray, fixstr, eight fixints, fixarray
	maxInterned   = 256
)

// bufWriter is the msgpack Encoder's destination: it appends to b, which the
// caller points at its frame buffer.
type bufWriter struct{ b []byte }

func (w *bufWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *bufWriter) WriteByte(c byte) error      { w.b = append(w.b, c); return nil }

// codec holds one reusable msgpack Encoder and Decoder and their buffers.
// It is used by one goroutine at a time. Encoder methods cannot fail on a
// bufWriter, so their errors are not checked.
type codec struct {
	w   bufWriter
	enc *msgpack.Encoder
	src []byte // the payload being decoded
	r   bytes.Reader
	dec *msgpack.Decoder
	// strs interns the few strings that repeat on a connection (scopes,
	// node names) so that decoding them does not allocate.
	strs map[string]string
}

func newCodec() *codec {
	c := &codec{strs: make(map[string]string)}
	c.enc = msgpack.NewEncoder(&c.w)
	c.dec = msgpack.NewDecoder(&c.r)
	return c
}

// ---- encoding: append the payload to c.w.b ----

func (c *codec) encodeCheckRequest(req *CheckRequest) {
	e := c.enc
	e.EncodeArrayLen(checkFields)
	e.EncodeString(req.Key)
	e.EncodeInt(req.Cost)
	e.EncodeArrayLen(len(req.Counters))
	for i := range req.Counters {
		ctr := &req.Counters[i]
		e.EncodeArrayLen(counterFields)
		e.EncodeString(ctr.Scope)
		e.EncodeInt(ctr.Limit.Amount)
		e.EncodeInt(int64(ctr.Limit.Period))
		e.EncodeUint(uint64(ctr.Strategy))
	}
	e.EncodeInt(int64(req.Hops))
	e.EncodeInt(int64(req.Sent))
	e.EncodeInt(int64(req.Wait))
}

func (c *codec) encodeCheckResponse(resp *CheckResponse) {
	e := c.enc
	e.EncodeArrayLen(3)
	e.EncodeBool(resp.Allowed)
	e.EncodeString(resp.Node)
	e.EncodeArrayLen(len(resp.Statuses))
	for i := range resp.Statuses {
		st := &resp.Statuses[i]
		e.EncodeArrayLen(statusFields)
		e.EncodeInt(st.Limit.Amount)
		e.EncodeInt(int64(st.Limit.Period))
		e.EncodeInt(st.Remaining)
		if st.Reset.IsZero() {
			e.EncodeNil()
		} else {
			e.EncodeInt(st.Reset.UnixNano())
		}
		e.EncodeInt(int64(st.RetryAfter))
	}
}

func (c *codec) encodeKey(key string) { c.enc.EncodeString(key) }

func (c *codec) encodeMergeRequest(req *MergeRequest) error {
	c.encodeCountsHead(opMerge, req.From)
	c.enc.EncodeArrayLen(6)
	c.enc.EncodeUint(req.BaseIncarnation)
	if err := c.encodeEntries(req.Bases); err != nil {
		return err
	}
	c.enc.EncodeBool(req.FillIn)
	c.enc.EncodeBool(req.Beside)
	c.enc.EncodeUint(req.ToIncarnation)
	c.enc.EncodeUint(req.FromIncarnation)
	return c.encodeEntries(req.Entries)
}

func (c *codec) encodeReplicaRequest(req *ReplicaRequest) error {
	c.encodeCountsHead(opReplica, req.From)
	c.enc.EncodeUint(req.Incarnation)
	return c.encodeEntries(req.Entries)
}

func (c *codec) encodeRefundRequest(req *RefundRequest) error {
	c.encodeCountsHead(opRefund, req.From)
	c.enc.EncodeInt(int64(req.Hops))
	return c.encodeEntries(req.Entries)
}

// encodeCountsHead starts the payload of a merge, replica or refund: its
// op and sender; the op's own field and the entries follow.
func (c *codec) encodeCountsHead(o op, from string) {
	c.enc.EncodeArrayLen(countsFields)
	c.enc.EncodeUint(uint64(o))
	c.enc.EncodeString(from)
}

func (c *codec) encodeEntries(entries []bucket.Entry) error {
	c.enc.EncodeArrayLen(len(entries))
	for i := range entries {
		if err := c.encodeEntry(&entries[i]); err != nil {
			return err
		}
	}
	return nil
}

func (c *codec) encodeEntry(ent *bucket.Entry) error {
	e := c.enc
	e.EncodeArrayLen(2)
	e.EncodeString(ent.Key)
	e.EncodeArrayLen(len(ent.Counters))
	for j := range ent.Counters {
		c.encodeState(&ent.Counters[j])
	}
	return nil
}

func (c *codec) encodeState(cs *bucket.CounterState) {
	e := c.enc
	e.EncodeArrayLen(stateFields)
	e.EncodeString(cs.Counter.Scope)
	e.EncodeInt(cs.Counter.Limit.Amount)
	e.EncodeInt(int64(cs.Counter.Limit.Period))
	e.EncodeUint(uint64(cs.Counter.Strategy))
	e.EncodeInt(cs.Start)
	e.EncodeInt(cs.Count)
	e.EncodeInt(cs.Prev)
	e.EncodeInt(cs.TAT)
	e.EncodeInt(cs.TATFrac)
	e.EncodeArrayLen(len(cs.Hits))
	for _, h := range cs.Hits {
		e.EncodeInt(h)
	}
}

func (c *codec) encodeTakeRequest(req *TakeRequest) {
	c.enc.EncodeArrayLen(4)
	c.enc.EncodeString(req.Key)
	c.enc.EncodeString(req.To)
	c.enc.EncodeString(req.ToAddr)
	c.enc.EncodeUint(req.Incarnation)
}

func (c *codec) encodeTakeResponse(r *TakeResponse) error {
	c.enc.EncodeArrayLen(3)
	c.enc.EncodeBool(r.Found)
	if !r.Found {
		c.enc.EncodeNil()
	} else if err := c.encodeEntry(&r.Entry); err != nil {
		return err
	}
	return c.enc.EncodeBool(r.Supersedes)
}

// ---- decoding: from a payload read in place ----

func (c *codec) reset(payload []byte) {
	c.src = payload
	c.r.Reset(payload)
}

// done reports trailing bytes after a payload as malformed.
func (c *codec) done() error {
	if c.r.Len() != 0 {
		return protoErr("%d trailing bytes after payload", c.r.Len())
	}
	return nil
}

func malformed(what string, err error) error {
	if err == nil {
		return protoErr("malformed %s", what)
	}
	return protoErr("malformed %s: %v", what, err)
}

// fields reads an array header that must have exactly n elements.
func (c *codec) fields(n int, what string) error {
	got, err := c.dec.DecodeArrayLen()
	if err != nil || got != n {
		return malformed(what, err)
	}
	return nil
}

// list reads an array header whose elements take at least minSize bytes
// each, so that a forged length cannot make the caller allocate more than
// the payload justifies. nil reads as an empty list.
func (c *codec) list(minSize int, what string) (int, error) {
	n, err := c.dec.DecodeArrayLen()
	if err != nil {
		return 0, malformed(what, err)
	}
	if n < 0 {
		return 0, nil
	}
	if n > c.r.Len()/minSize {
		return 0, protoErr("malformed %s: %d elements in %d bytes", what, n, c.r.Len())
	}
	return n, nil
}

// bytes reads a string (or binary) in place: the result aliases the payload.
func (c *codec) bytes(what string) ([]byte, error) {
	n, err := c.dec.DecodeBytesLen()
	if err != nil {
		return nil, malformed(what, err)
	}
	if n <= 0 {
		return nil, nil
	}
	if n > c.r.Len() {
		return nil, protoErr("malformed %s: %d bytes announced, %d left", what, n, c.r.Len())
	}
	at := len(c.src) - c.r.Len()
	c.r.Seek(int64(n), io.SeekCurrent)
	return c.src[at : at+n : at+n], nil
}

func (c *codec) str(what string) (string, error) {
	b, err := c.bytes(what)
	return string(b), err
}

// same reads a string, reusing prev when equal: a key that floods one
// connection (a client far over its limit) costs no allocation.
func (c *codec) same(prev, what string) (string, error) {
	b, err := c.bytes(what)
	if err != nil || string(b) == prev {
		return prev, err
	}
	return string(b), nil
}

// interned reads a string, reusing prev or an earlier copy when equal.
func (c *codec) interned(prev, what string) (string, error) {
	b, err := c.bytes(what)
	if err != nil || string(b) == prev {
		return prev, err
	}
	if s, ok := c.strs[string(b)]; ok {
		return s, nil
	}
	s := string(b)
	if len(c.strs) < maxInterned {
		c.strs[s] = s
	}
	return s, nil
}

func (c *codec) int(what string) (int64, error) {
	n, err := c.dec.DecodeInt64()
	if err != nil {
		return 0, malformed(what, err)
	}
	return n, nil
}

func (c *codec) decodeCheckRequest(req *CheckRequest) error {
	if err := c.fields(checkFields, "check request"); err != nil {
		return err
	}
	var err error
	if req.Key, err = c.same(req.Key, "key"); err != nil {
		return err
	}
	if req.Cost, err = c.int("cost"); err != nil {
		return err
	}
	n, err := c.list(minCounter, "counters")
	if err != nil {
		return err
	}
	req.Counters = req.Counters[:0]
	for range n {
		var ctr bucket.Counter
		if err := c.fields(counterFields, "counter"); err != nil {
			return err
		}
		if ctr.Scope, err = c.interned("", "scope"); err != nil {
			return err
		}
		if ctr.Limit.Amount, err = c.int("amount"); err != nil {
			return err
		}
		p, err := c.int("period")
		if err != nil {
			return err
		}
		ctr.Limit.Period = time.Duration(p)
		s, err := c.dec.DecodeUint64()
		if err != nil || s > 255 {
			return malformed("strategy", err)
		}
		ctr.Strategy = bucket.Strategy(s)
		req.Counters = append(req.Counters, ctr)
	}
	hops, err := c.int("hops")
	if err != nil {
		return err
	}
	req.Hops = int(hops)
	sent, err := c.int("sent")
	if err != nil {
		return err
	}
	wait, err := c.int("wait")
	if err != nil {
		return err
	}
	if wait < 0 {
		return malformed("wait", errNegative)
	}
	req.Sent, req.Wait = time.Duration(sent), time.Duration(wait)
	return c.done()
}

func (c *codec) decodeCheckResponse(resp *CheckResponse) error {
	if err := c.fields(3, "check response"); err != nil {
		return err
	}
	var err error
	if resp.Allowed, err = c.dec.DecodeBool(); err != nil {
		return malformed("allowed", err)
	}
	if resp.Node, err = c.interned(resp.Node, "node"); err != nil {
		return err
	}
	n, err := c.list(minStatus, "statuses")
	if err != nil {
		return err
	}
	resp.Statuses = resp.Statuses[:0]
	for range n {
		var st bucket.Status
		var v [statusFields]int64
		if err := c.fields(statusFields, "status"); err != nil {
			return err
		}
		resetNil := false
		for i := range v {
			if i == 3 {
				if code, err := c.dec.PeekCode(); err == nil && code == 0xc0 {
					c.dec.DecodeNil()
					resetNil = true
					continue
				}
			}
			if v[i], err = c.int("status"); err != nil {
				return err
			}
		}
		st.Limit = bucket.Limit{Amount: v[0], Period: time.Duration(v[1])}
		st.Remaining = v[2]
		if !resetNil {
			st.Reset = time.Unix(0, v[3])
		}
		st.RetryAfter = time.Duration(v[4])
		resp.Statuses = append(resp.Statuses, st)
	}
	return c.done()
}

func (c *codec) decodeKey() (string, error) {
	k, err := c.str("key")
	if err != nil {
		return "", err
	}
	return k, c.done()
}

func (c *codec) decodeTakeRequest(req *TakeRequest) error {
	if err := c.fields(4, "take request"); err != nil {
		return err
	}
	var err error
	if req.Key, err = c.str("key"); err != nil {
		return err
	}
	if req.To, err = c.str("to"); err != nil {
		return err
	}
	if req.ToAddr, err = c.str("to-addr"); err != nil {
		return err
	}
	if req.Incarnation, err = c.dec.DecodeUint64(); err != nil {
		return malformed("incarnation", err)
	}
	return c.done()
}

func (c *codec) decodeTakeResponse(r *TakeResponse) error {
	if err := c.fields(3, "take response"); err != nil {
		return err
	}
	var err error
	if r.Found, err = c.dec.DecodeBool(); err != nil {
		return malformed("found", err)
	}
	if !r.Found {
		if err := c.dec.DecodeNil(); err != nil {
			return malformed("take response", err)
		}
	} else if err := c.decodeEntry(&r.Entry); err != nil {
		return err
	}
	if r.Supersedes, err = c.dec.DecodeBool(); err != nil {
		return malformed("supersedes flag", err)
	}
	return c.done()
}
