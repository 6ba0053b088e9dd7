package bucket

import "time"

// Refund gives back units of fixed-window counters that were consumed
// ahead of use and not used (a lease's unused slice): for each counter
// state of each entry, Count units come off the key's counter of that
// identity if its window is still the one that was current at Start (it
// started at Start, or earlier within a period: a window merged from two
// nodes keeps the earlier start). A window that has ended since, a counter
// that is gone, or another strategy takes nothing back: the units expired
// with their window. Counts never go
// below zero. It returns how many of the entries' units it took off.
func (s *Store) Refund(now time.Time, entries []Entry) (taken int64) {
	t := now.UnixNano()
	tb := s.table()
	for i := range entries {
		en := &entries[i]
		sh, tag := tb.shard(en.Key)
		sh.mu.Lock()
		if e, _ := sh.lookup(tag, en.Key); e != nil {
			for k := range en.Counters {
				taken += refundOne(e, &en.Counters[k], t)
			}
		}
		sh.mu.Unlock()
	}
	return taken
}

func refundOne(e *entry, cs *CounterState, t int64) (taken int64) {
	if cs.Counter.Strategy != FixedWindow || cs.Count <= 0 {
		return 0
	}
	j := e.find(&cs.Counter)
	if j < 0 {
		return 0
	}
	st := &e.at(j).st
	st.normalize(&cs.Counter, t)
	// The slice's window is this one if it started within it: counts of
	// one window merged from two nodes keep the earlier start (see
	// state.merge), and a slice taken on either still belongs to it. A
	// window that ended started a period or more before this one.
	if st.n > 0 && cs.Start >= st.t && cs.Start-st.t < int64(cs.Counter.Limit.Period) {
		taken = min(st.n, cs.Count)
		st.n -= taken
	}
	return taken
}
