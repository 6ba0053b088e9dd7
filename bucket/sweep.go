package bucket

import (
	"math"
	"runtime"
	"time"
)

// sweepStep bounds the entries Sweep examines under one hold of a shard's
// lock. At ten million keys a shard holds about 40,000 entries and a chunk
// of 4096 of them, half expired, held the lock for 0.8 ms (4 ms at worst):
// every check of that shard waited as long. 256 entries hold it for about
// 50 µs.
const sweepStep = 256

// Sweep removes expired counters and the routing keys left without any,
// examining at most max entries (max <= 0: one full pass), and returns the
// number of routing keys removed. It resumes where the previous call
// stopped, shard by shard, so an owner can call it from a ticker and reclaim
// memory without ever scanning the whole table on the hot path; whatever
// max is, it holds a shard's lock for at most sweepStep entries at a time
// and lets a check waiting for it go first. A shard that has mostly emptied
// out is reallocated smaller, so the memory of a past burst of keys is given
// back.
func (s *Store) Sweep(now time.Time, max int) int {
	t := now.UnixNano()
	budget := max
	if budget <= 0 {
		budget = math.MaxInt
	}
	removed := 0
	tb := s.table()
	for visited := 0; visited <= len(tb.shards) && budget > 0; {
		at := s.sweepAt.Load()
		sh := &tb.shards[at&tb.mask]
		sh.mu.Lock()
		n, examined, done := sh.sweep(t, min(budget, sweepStep))
		sh.mu.Unlock()
		removed += n
		budget -= examined
		if !done {
			// Unlock readied a check that waited, if any, on this
			// goroutine's P; let it take the lock before sweeping on.
			runtime.Gosched()
			continue
		}
		s.sweepAt.CompareAndSwap(at, at+1) // lost race: another Sweep moved on
		visited++
	}
	return removed
}

// sweep examines up to budget entries from the shard's cursor.
func (sh *shard) sweep(t int64, budget int) (removed, examined int, done bool) {
	for sh.cursor < len(sh.entries) && examined < budget {
		examined++
		if sh.prune(&sh.entries[sh.cursor], t) {
			sh.removeAt(sh.cursor) // the last entry moved here: examine it next
			removed++
			continue
		}
		sh.cursor++
	}
	if sh.cursor < len(sh.entries) {
		return removed, examined, false
	}
	sh.cursor = 0
	sh.shrink()
	return removed, examined, true
}

// shrink gives back the memory of a shard that has mostly emptied out
// (Go slices and maps never shrink by themselves).
func (sh *shard) shrink() {
	n := len(sh.entries)
	if cap(sh.entries) > 64 && 4*n < cap(sh.entries) {
		entries := make([]entry, n, 2*n)
		copy(entries, sh.entries)
		sh.entries = entries
		sh.tags = append(make([]uint32, 0, 2*n), sh.tags...)
	}
	sh.index.shrink()
}

// prune drops e's expired counters and shrinks moving-window logs, giving
// back what they held; it reports whether no counter is left (the last one
// is then still in e, for removeAt to give back). Counter positions may
// change.
func (sh *shard) prune(e *entry, t int64) (empty bool) {
	if e.more != nil {
		m := *e.more
		k := 0
		for i := range m {
			if sh.expire(&m[i], t) {
				sh.forgetCounter(&m[i])
				continue
			}
			m[k] = m[i]
			k++
		}
		clear(m[k:])
		switch {
		case k == 0:
			e.more = nil
		case cap(m) > 8 && 4*k < cap(m):
			*e.more = append([]counter(nil), m[:k]...)
		default:
			*e.more = m[:k]
		}
	}
	if sh.expire(&e.first, t) {
		if e.more == nil {
			return true
		}
		sh.forgetCounter(&e.first)
		m := *e.more
		e.first = m[len(m)-1]
		m[len(m)-1] = counter{}
		if len(m) == 1 {
			e.more = nil
		} else {
			*e.more = m[:len(m)-1]
		}
	}
	return false
}

// expire reports whether c's state is back to fresh at t, after pruning and
// compacting its moving-window log (and accounting for the slots freed).
func (sh *shard) expire(c *counter, t int64) bool {
	if l := c.st.log; l != nil {
		before := len(l.buf)
		l.prune(t, int64(c.id.Limit.Period))
		if l.compact() {
			c.st.log = nil
		}
		if after := c.st.log.capacity(); after != before {
			sh.acct.force(0, 0, int64(after-before))
		}
	}
	return t >= c.st.deadline(&c.id)
}
