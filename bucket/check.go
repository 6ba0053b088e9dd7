package bucket

// The decision of one check under its shard's lock: every counter of a
// routing key at once (check), or the common single counter (check1).

import (
	"fmt"
	"time"
)

// validateCheck explains what is wrong with a check's input, if anything.
func validateCheck(counters []Counter, cost int64) error {
	switch {
	case cost < 0:
		return fmt.Errorf("%w: cost %d is negative (use 0 to peek)", ErrInvalidCost, cost)
	case len(counters) == 0:
		return fmt.Errorf("%w: a check needs at least one counter", ErrNoCounters)
	case len(counters) > MaxCountersPerCheck:
		return fmt.Errorf("%w: %d counters in one check, at most %d", ErrTooManyCounters, len(counters), MaxCountersPerCheck)
	}
	hits := 0 // moving-window hits the check would log
	for i := range counters {
		if !counters[i].valid() {
			return counters[i].Validate()
		}
		if counters[i].Strategy >= Tally && len(counters) > 1 {
			return fmt.Errorf("%w: a %s counter must be its check's only counter, got %d counters",
				ErrInvalidCounter, counters[i].Strategy, len(counters))
		}
		if counters[i].Strategy == MovingWindow {
			hits++
		}
	}
	if hits > 0 && cost > MaxMovingWindowHitsPerCheck/int64(hits) {
		return fmt.Errorf("%w: cost %d on %d moving-window counters would log more than %d hits (MaxMovingWindowHitsPerCheck)",
			ErrTooManyHits, cost, hits, MaxMovingWindowHitsPerCheck)
	}
	return nil
}

// check runs under sh.mu. Phase one normalizes the counters (harmless) and
// decides; phase two consumes, creating missing counters, and reports.
func (sh *shard) check(now time.Time, tag uint32, key string, cs []Counter, cost int64, dst []Status, maxPerKey int) ([]Status, bool, error) {
	t := now.UnixNano()
	var slot [MaxCountersPerCheck]int16 // position in the entry, -1 = missing
	e, pos := sh.lookup(tag, key)
	allowed := true
	var fresh, slots int64 // counters and moving-window slots the check would create
	for pass := 0; ; pass++ {
		allowed = true
		missing := 0
		fresh, slots = 0, 0
		for i := range cs {
			c := &cs[i]
			j := -1
			if e != nil {
				j = e.find(c)
			}
			slot[i] = int16(j)
			var st *state
			var zero state
			if j >= 0 {
				st = &e.at(j).st
			} else {
				st = &zero
				missing++
			}
			st.normalize(c, t)
			if !fits(c.Limit.Amount, st.used(c, t), cost) {
				allowed = false
			}
			if j < 0 || c.Strategy == MovingWindow {
				fresh, slots = countNew(cs, i, j, st, cost, fresh, slots)
			}
		}
		if e == nil || !allowed || cost == 0 || e.len()+missing <= maxPerKey {
			break
		}
		if pass > 0 {
			return dst, false, fmt.Errorf("%w: routing key %s would hold more than %d live counters",
				ErrTooManyCounters, quote(key), maxPerKey)
		}
		// Make room: drop this key's expired counters, then decide again.
		if sh.prune(e, t) {
			sh.removeAt(pos)
			e = nil
		}
	}
	consume := allowed && cost > 0
	if consume {
		if err := sh.acct.reserve(b2i(e == nil), fresh, slots); err != nil {
			return dst, false, err
		}
	}
	if consume && e == nil {
		e = sh.insert(tag, key, &cs[0])
		slot[0] = 0
	}
	base := len(dst)
	for i := range cs {
		c := &cs[i]
		if d := dupOf(cs, i); d >= 0 {
			dst = append(dst, dst[base+d])
			continue
		}
		var st *state
		var zero state
		switch {
		case slot[i] >= 0:
			st = &e.at(int(slot[i])).st
		case consume:
			st = &e.add(sh.internCounter(c)).st
		default:
			st = &zero
		}
		st.normalize(c, t)
		used := st.used(c, t)
		if consume {
			st.consume(c, t, cost)
		}
		dst = st.report(dst, c, now, t, cost, used, consume, !allowed)
	}
	return dst, allowed, nil
}

// check1 is check for the common single-counter case, without the
// bookkeeping several counters need; t is now in Unix nanoseconds.
func (sh *shard) check1(t int64, tag uint32, key string, c *Counter, cost int64, maxPerKey int) (outcome, error) {
	e, pos := sh.lookup(tag, key)
	if e != nil {
		if j := e.find(c); j >= 0 {
			return e.at(j).st.decide(c, t, cost, sh.acct)
		}
	}
	// No such counter yet: decide on a fresh state, and create the
	// counter only if the check consumes from it.
	var zero state
	out, err := zero.decide(c, t, cost, sh.acct)
	if err != nil || !out.allowed || cost == 0 {
		return out, err
	}
	if e != nil && e.len() >= maxPerKey && sh.prune(e, t) {
		sh.removeAt(pos)
		e = nil
	}
	if e != nil && e.len() >= maxPerKey {
		err = fmt.Errorf("%w: routing key %s would hold more than %d live counters",
			ErrTooManyCounters, quote(key), maxPerKey)
	} else {
		err = sh.acct.reserve(b2i(e == nil), 1, 0)
	}
	if err != nil {
		sh.acct.force(0, 0, -int64(zero.log.capacity())) // zero.decide reserved them
		return outcome{}, err
	}
	var st *state
	if e == nil {
		st = &sh.insert(tag, key, c).first.st
	} else {
		st = &e.add(sh.internCounter(c)).st
	}
	*st = zero // zero.decide consumed cost from the fresh state
	return out, nil
}

// countNew adds to fresh and slots what consuming cost would create for
// cs[i], whose state st is at position j of its entry (-1: missing): a
// counter if it is missing, and the slots its moving-window log would grow
// by. A counter named twice is created and charged once.
func countNew(cs []Counter, i, j int, st *state, cost, fresh, slots int64) (int64, int64) {
	c := &cs[i]
	grow := 0
	if c.Strategy == MovingWindow && cost > 0 {
		grow = st.log.grown(int(cost), int(c.Limit.Amount)) - st.log.capacity()
	}
	if (j >= 0 && grow == 0) || dupOf(cs, i) >= 0 {
		return fresh, slots
	}
	if j < 0 {
		fresh++
	}
	return fresh, slots + int64(grow)
}

// b2i is 1 for true.
func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// outcome is one counter's decision: whether it allowed the check, the
// quota remaining, and the reset instant (Unix nanoseconds) and the
// retry-after (nanoseconds) of its Status.
type outcome struct {
	allowed           bool
	remaining         int64
	reset, retryAfter int64
}

// decide checks cost against st at t and consumes it if it fits, reserving
// from a the slots a moving-window log grows by.
func (st *state) decide(c *Counter, t, cost int64, a *account) (outcome, error) {
	st.normalize(c, t)
	used := st.used(c, t)
	allowed := fits(c.Limit.Amount, used, cost)
	consume := allowed && cost > 0
	if consume {
		if c.Strategy == MovingWindow && !st.log.fits(cost) {
			if err := st.reserveHits(c, cost, a); err != nil {
				return outcome{}, err
			}
		}
		st.consume(c, t, cost)
	}
	rem, reset, retry := st.status(c, t, cost, used, consume, !allowed)
	return outcome{allowed: allowed, remaining: rem, reset: reset, retryAfter: retry}, nil
}

// reserveHits reserves the slots st's log grows by when cost hits are
// pushed.
func (st *state) reserveHits(c *Counter, cost int64, a *account) error {
	l := st.log
	return a.reserve(0, 0, int64(l.grown(int(cost), int(c.Limit.Amount))-l.capacity()))
}

// append appends o's Status for limit l, with Reset in loc. Reset is a
// wall-clock instant meant for clients: it carries no monotonic reading.
func (o *outcome) append(dst []Status, l Limit, loc *time.Location) []Status {
	return append(dst, Status{Limit: l, Remaining: o.remaining, Reset: time.Unix(0, o.reset).In(loc), RetryAfter: time.Duration(o.retryAfter)})
}

// report appends the Status of a normalized st (see status).
func (st *state) report(dst []Status, c *Counter, now time.Time, t, cost, used int64, consumed, denied bool) []Status {
	rem, reset, retry := st.status(c, t, cost, used, consumed, denied)
	o := outcome{remaining: rem, reset: reset, retryAfter: retry}
	return o.append(dst, c.Limit, now.Location())
}

// dupOf returns the index of an earlier counter equal to cs[i], or -1.
func dupOf(cs []Counter, i int) int {
	for j := 0; j < i; j++ {
		if cs[j] == cs[i] {
			return j
		}
	}
	return -1
}
