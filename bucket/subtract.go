package bucket

import "slices"

// Subtract returns e less base, counter by counter: what e's holder
// counted beyond a copy of the same counters it started from (base). It
// is how a node that continued a failed owner's counters from their
// replica sends the owner only the hits it added, when the owner comes
// back still holding its own.
//
// Fixed and sliding windows subtract counts of the same window or
// buckets (a window that moved on since base shares nothing with it);
// a moving window removes base's hit times from e's log, each once. A
// token bucket's state cannot be split, so e is kept whole: the owner
// then counts the replicated part twice, which denies more, never admits
// more. Counters of e absent from base are kept whole.
func Subtract(e, base Entry) Entry {
	out := Entry{Key: e.Key, Counters: make([]CounterState, 0, len(e.Counters))}
	for _, cs := range e.Counters {
		if b := findState(base.Counters, &cs.Counter); b != nil {
			cs = subtractState(cs, b)
		}
		if !emptyState(&cs) {
			out.Counters = append(out.Counters, cs)
		}
	}
	return out
}

func findState(states []CounterState, c *Counter) *CounterState {
	for i := range states {
		if states[i].Counter.same(c) {
			return &states[i]
		}
	}
	return nil
}

func subtractState(cs CounterState, b *CounterState) CounterState {
	switch cs.Counter.Strategy {
	case FixedWindow, Tally, ElasticTally:
		// A tally's Start is its expiry: the same expiry is the same count.
		// An elastic tally that moved its expiry since base is kept whole
		// (counted twice: more denials, never more admissions).
		if cs.Start == b.Start {
			cs.Count = max(0, cs.Count-b.Count)
		}
	case SlidingWindowCounter:
		P := int64(cs.Counter.Limit.Period)
		switch {
		case cs.Start == b.Start:
			cs.Count, cs.Prev = max(0, cs.Count-b.Count), max(0, cs.Prev-b.Prev)
		case P > 0 && cs.Start == b.Start+P: // base's current bucket is e's previous
			cs.Prev = max(0, cs.Prev-b.Count)
		}
	case MovingWindow:
		cs.Hits = withoutHits(cs.Hits, b.Hits)
	}
	return cs
}

// withoutHits removes each time of drop from hits once; both are sorted.
func withoutHits(hits, drop []int64) []int64 {
	out := make([]int64, 0, len(hits))
	j := 0
	for _, h := range hits {
		for j < len(drop) && drop[j] < h {
			j++
		}
		if j < len(drop) && drop[j] == h {
			j++
			continue
		}
		out = append(out, h)
	}
	return slices.Clip(out)
}

// emptyState reports whether cs counts nothing (a token bucket always
// counts: its state is a time).
func emptyState(cs *CounterState) bool {
	switch cs.Counter.Strategy {
	case FixedWindow, SlidingWindowCounter, Tally, ElasticTally:
		return cs.Count == 0 && cs.Prev == 0
	case MovingWindow:
		return len(cs.Hits) == 0
	}
	return false
}

// Deficit returns what base holds beyond e in fixed windows of the same
// start: units given back to e's holder (a lease slice's unused units)
// after it continued from base, so that e counts fewer than base. Subtract
// cuts those at zero; a receiver that still holds base's hits takes them
// off its own count (Store.Refund) instead of losing them. ok is false
// when there are none.
func Deficit(e, base Entry) (d Entry, ok bool) {
	for _, cs := range e.Counters {
		if cs.Counter.Strategy != FixedWindow {
			continue
		}
		b := findState(base.Counters, &cs.Counter)
		if b == nil || b.Start != cs.Start || b.Count <= cs.Count {
			continue
		}
		cs.Count = b.Count - cs.Count
		d.Counters = append(d.Counters, cs)
	}
	d.Key = e.Key
	return d, len(d.Counters) > 0
}
