package rpc

import (
	"slices"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
)

// The decoding of counter entries and states: the payload of merges
// (handoffs and replication batches) and of take responses.

// decodeMergeRequest fills a fresh request. Lists grow as elements are read
// rather than by their announced lengths, and each CounterState's bytes
// are checked by valueSize before msgpack's reflection decodes them, so a
// payload of n bytes allocates O(n) memory at most (about 8n: an int64 per
// byte of a minimal list).
func (c *codec) decodeMergeRequest(req *MergeRequest) error {
	if err := c.fields(7, "merge request"); err != nil {
		return err
	}
	var err error
	if req.From, err = c.str("from"); err != nil {
		return err
	}
	if req.Replica, err = c.dec.DecodeBool(); err != nil {
		return malformed("replica flag", err)
	}
	if req.Refund, err = c.dec.DecodeBool(); err != nil {
		return malformed("refund flag", err)
	}
	if req.Supersedes, err = c.dec.DecodeBool(); err != nil {
		return malformed("supersedes flag", err)
	}
	if req.Incarnation, err = c.dec.DecodeUint64(); err != nil {
		return malformed("incarnation", err)
	}
	if req.Hops, err = c.dec.DecodeInt(); err != nil || req.Hops < 0 {
		return malformed("hops", err)
	}
	if req.Replica && req.Refund {
		return protoErr("malformed merge request: both a replica and a refund")
	}
	n, err := c.list(minEntry, "merge request entries")
	if err != nil {
		return err
	}
	// The entries and their counter states each come out of one
	// allocation for the request (list bounds n by the bytes left, so a
	// peer cannot make these larger than its frame), not one per entry:
	// a replication batch of a thousand keys was two thousand.
	req.Entries = slices.Grow(req.Entries, n)
	states := make([]bucket.CounterState, 0, n)
	for range n {
		var ent bucket.Entry
		var err error
		if states, err = c.decodeEntryInto(&ent, states); err != nil {
			return err
		}
		req.Entries = append(req.Entries, ent)
	}
	return c.done()
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
