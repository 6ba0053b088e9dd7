package rpc

import (
	"errors"
	"slices"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
)

// The decoding of counter entries and states: the payload of merges
// (handoffs), replicas and refunds, and of take responses.

func (c *codec) decodeMergeRequest(req *MergeRequest) (err error) {
	if req.From, err = c.countsHead(opMerge); err != nil {
		return err
	}
	if err = c.fields(6, "bases"); err != nil {
		return err
	}
	if req.BaseIncarnation, err = c.dec.DecodeUint64(); err != nil {
		return malformed("base incarnation", err)
	}
	if req.Bases, err = c.decodeEntryList(req.Bases); err != nil {
		return err
	}
	if req.FillIn, err = c.dec.DecodeBool(); err != nil {
		return malformed("fill-in", err)
	}
	if req.FillIn && len(req.Bases) > 0 {
		return protoErr("malformed merge request: a fill-in with %d bases", len(req.Bases))
	}
	if req.Beside, err = c.dec.DecodeBool(); err != nil {
		return malformed("beside", err)
	}
	if req.Beside && (req.FillIn || len(req.Bases) > 0) {
		return protoErr("malformed merge request: counts beside the owner with %d bases or as a fill-in", len(req.Bases))
	}
	if req.ToIncarnation, err = c.dec.DecodeUint64(); err != nil {
		return malformed("receiver's incarnation", err)
	}
	if req.FromIncarnation, err = c.dec.DecodeUint64(); err != nil {
		return malformed("sender's incarnation", err)
	}
	if req.Entries, err = c.decodeEntries(req.Entries); err != nil {
		return err
	}
	return checkBases(req.Bases, req.Entries)
}

// checkBases refuses bases that do not go one by one with the entries.
func checkBases(bases, entries []bucket.Entry) error {
	if len(bases) == 0 {
		return nil
	}
	if len(bases) != len(entries) {
		return protoErr("malformed merge request: %d bases for %d entries", len(bases), len(entries))
	}
	for i := range bases {
		if bases[i].Key != entries[i].Key {
			return protoErr("malformed merge request: base %d is of key %q, its entry of %q", i, bases[i].Key, entries[i].Key)
		}
	}
	return nil
}

func (c *codec) decodeReplicaRequest(req *ReplicaRequest) error {
	return c.decodeCounts(opReplica, &req.From, &req.Entries, "incarnation", func() (err error) {
		req.Incarnation, err = c.dec.DecodeUint64()
		return err
	})
}

func (c *codec) decodeRefundRequest(req *RefundRequest) error {
	return c.decodeCounts(opRefund, &req.From, &req.Entries, "hops", func() (err error) {
		if req.Hops, err = c.dec.DecodeInt(); err == nil && req.Hops < 0 {
			err = errNegative
		}
		return err
	})
}

// errNegative refuses a count that cannot be below zero.
var errNegative = errors.New("negative")

// decodeCounts decodes a payload of op o, one of the three that carry
// counts: its sender into from, the op's own field with own (what names
// it in an error), and its entries appended to entries.
func (c *codec) decodeCounts(o op, from *string, entries *[]bucket.Entry, what string, own func() error) error {
	var err error
	if *from, err = c.countsHead(o); err != nil {
		return err
	}
	if err := own(); err != nil {
		return malformed(what, err)
	}
	*entries, err = c.decodeEntries(*entries)
	return err
}

// countsHead reads the head of a merge, replica or refund payload that
// must be of op o, and returns its sender. A payload of another op is
// refused by name: the three have the same shape (see encodeCountsHead).
func (c *codec) countsHead(o op) (from string, err error) {
	// Not c.fields: the name of what is read is built on failure only.
	if n, err := c.dec.DecodeArrayLen(); err != nil || n != countsFields {
		return "", malformed(o.String()+" request", err)
	}
	got, err := c.dec.DecodeUint64()
	if err != nil {
		return "", malformed(o.String()+" request's op", err)
	}
	if got != uint64(o) {
		return "", wrongOp(o, got)
	}
	return c.str("from")
}

// wrongOp is the error of a payload of op got where one of want belongs,
// apart so that its values are boxed only on this path.
func wrongOp(want op, got uint64) error {
	if got > 255 || !op(got).known() {
		return protoErr("malformed %s request: it names op %d, which does not exist", want, got)
	}
	return protoErr("malformed %s request: it is a %s payload", want, op(got))
}

// decodeEntries decodes the entries ending a merge, replica or refund
// payload, appended to entries. No list is sized beyond what the bytes
// left can hold (see list), so a payload of n bytes allocates O(n) memory
// at most (about 8n: an int64 per byte of a minimal list).
func (c *codec) decodeEntries(entries []bucket.Entry) ([]bucket.Entry, error) {
	entries, err := c.decodeEntryList(entries)
	if err != nil {
		return entries, err
	}
	return entries, c.done()
}

// decodeEntryList decodes a list of entries appended to entries; more of
// the payload may follow.
func (c *codec) decodeEntryList(entries []bucket.Entry) ([]bucket.Entry, error) {
	n, err := c.list(minEntry, "entries")
	if err != nil {
		return entries, err
	}
	// The entries and their counter states each come out of one
	// allocation for the request (list bounds n by the bytes left, so a
	// peer cannot make these larger than its frame), not one per entry:
	// a replication batch of a thousand keys was two thousand.
	entries = slices.Grow(entries, n)
	states := make([]bucket.CounterState, 0, n)
	for range n {
		var ent bucket.Entry
		var err error
		if states, err = c.decodeEntryInto(&ent, states); err != nil {
			return entries, err
		}
		entries = append(entries, ent)
	}
	return entries, nil
}

// decodeEntryInto decodes an entry whose counter states are appended to
// states (returned extended); ent.Counters is the appended part, its
// capacity capped so that appending to it cannot touch the next entry's.
func (c *codec) decodeEntryInto(ent *bucket.Entry, states []bucket.CounterState) ([]bucket.CounterState, error) {
	if err := c.fields(2, "entry"); err != nil {
		return states, err
	}
	var err error
	if ent.Key, err = c.str("key"); err != nil {
		return states, err
	}
	m, err := c.list(minState, "counter states")
	if err != nil {
		return states, err
	}
	from := len(states)
	for range m {
		states = append(states, bucket.CounterState{})
		if err := c.decodeState(&states[len(states)-1]); err != nil {
			return states, err
		}
	}
	ent.Counters = states[from:len(states):len(states)]
	return states, nil
}

func (c *codec) decodeEntry(ent *bucket.Entry) error {
	if err := c.fields(2, "entry"); err != nil {
		return err
	}
	var err error
	if ent.Key, err = c.str("key"); err != nil {
		return err
	}
	m, err := c.list(minState, "counter states")
	if err != nil {
		return err
	}
	ent.Counters = make([]bucket.CounterState, 0, min(m, 4))
	for range m {
		ent.Counters = append(ent.Counters, bucket.CounterState{})
		if err := c.decodeState(&ent.Counters[len(ent.Counters)-1]); err != nil {
			return err
		}
	}
	return nil
}

// decodeState reads one counter state. Its values are checked by the
// store that merges it (bucket's importState), not here.
func (c *codec) decodeState(cs *bucket.CounterState) error {
	if err := c.fields(stateFields, "counter state"); err != nil {
		return err
	}
	var err error
	if cs.Counter.Scope, err = c.interned("", "scope"); err != nil {
		return err
	}
	// Field by field into cs, with no pointers to locals: a table of
	// (pointer, name) pairs moved two locals to the heap, two allocations
	// for every counter state of every replication batch.
	var period, strategy int64
	if cs.Counter.Limit.Amount, err = c.int("amount"); err != nil {
		return err
	}
	if period, err = c.int("period"); err != nil {
		return err
	}
	if strategy, err = c.int("strategy"); err != nil {
		return err
	}
	if cs.Start, err = c.int("start"); err != nil {
		return err
	}
	if cs.Count, err = c.int("count"); err != nil {
		return err
	}
	if cs.Prev, err = c.int("prev"); err != nil {
		return err
	}
	if cs.TAT, err = c.int("tat"); err != nil {
		return err
	}
	if cs.TATFrac, err = c.int("tat fraction"); err != nil {
		return err
	}
	if strategy < 0 || strategy > 255 {
		return badStrategy(strategy)
	}
	cs.Counter.Limit.Period, cs.Counter.Strategy = time.Duration(period), bucket.Strategy(strategy)
	n, err := c.list(1, "hits")
	if err != nil {
		return err
	}
	if n > 0 {
		cs.Hits = make([]int64, n)
		for i := range cs.Hits {
			if cs.Hits[i], err = c.int("hit"); err != nil {
				return err
			}
		}
	}
	return nil
}

// badStrategy is the error of a strategy out of range, apart so that the
// value is boxed only on this path.
func badStrategy(v int64) error {
	return protoErr("malformed counter state: strategy %d", v)
}
