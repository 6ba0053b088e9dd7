package bucket

import "math/bits"

// state is the compact state of one counter; the meaning of its fields
// depends on the strategy. Times are unix nanoseconds rather than time.Time
// (24 bytes with a pointer) to keep a live key small.
//
//	FixedWindow:          t = window start, n = hits in the window
//	SlidingWindowCounter: t = current bucket start, n = hits in it, p = hits in the previous bucket
//	TokenBucket:          t = TAT (theoretical arrival time), n = TAT's fraction of a ns in 1/Amount units
//	MovingWindow:         log = hit times
//	Tally, ElasticTally:  t = expiry instant, n = count
//
// The zero state is a fresh counter for every strategy.
type state struct {
	t, n, p int64
	log     *hitLog
}

// normalize brings st forward to now without changing what it means: it
// drops a finished window, rolls sliding buckets, lifts a past TAT to now and
// prunes hits older than the period. It may run on stored state while a check
// is still undecided.
func (st *state) normalize(c *Counter, now int64) {
	P := int64(c.Limit.Period)
	switch c.Strategy {
	case FixedWindow:
		if st.n <= 0 || now-st.t >= P {
			st.t, st.n = now, 0
		}
	case SlidingWindowCounter:
		// st.t is aligned, so the common cases need no division.
		var cs int64
		switch d := now - st.t; {
		case d >= 0 && d < P:
			cs = st.t
		case d >= P && d < 2*P:
			cs = st.t + P
		default:
			cs = bucketStart(now, P)
		}
		switch {
		case st.t == cs:
		case st.t == cs-P:
			st.t, st.p, st.n = cs, st.n, 0
		case st.t > cs:
			// Counts from a later bucket (a peer's clock ran ahead): count them
			// in the current bucket rather than forget them.
			st.t = cs
		default:
			st.t, st.p, st.n = cs, 0, 0
		}
	case TokenBucket:
		if st.t < now {
			st.t, st.n = now, 0
		}
	case MovingWindow:
		if st.log != nil {
			st.log.prune(now, P)
		}
	case Tally, ElasticTally:
		if st.n <= 0 || now >= st.t {
			st.t, st.n = 0, 0
		}
	}
}

// used is how much of the quota a normalized st uses at now: the count, the
// sliding window's floored weighted count, the moving window's hits, or the
// token bucket's missing tokens (Amount+1 when its TAT is beyond the burst,
// as after a merge). A cost fits when used + cost <= Amount; for the token
// bucket that is exactly GCRA's test, since the tokens are
// floor((now+P-TAT)×Amount/P) and cost is whole.
func (st *state) used(c *Counter, now int64) int64 {
	switch c.Strategy {
	case FixedWindow, Tally, ElasticTally:
		return st.n
	case SlidingWindowCounter:
		return st.weighted(c, now)
	case TokenBucket:
		if !tatFits(st.t, st.n, now, int64(c.Limit.Period)) {
			return satAdd(c.Limit.Amount, 1)
		}
		return c.Limit.Amount - st.tokens(c, now)
	case MovingWindow:
		return int64(st.log.len())
	}
	return 0
}

// fits reports whether cost fits a quota of amount of which used is used.
func fits(amount, used, cost int64) bool {
	return cost <= amount && used <= amount-cost
}

// consume takes cost from a normalized st; fits must have allowed it.
func (st *state) consume(c *Counter, now, cost int64) {
	if cost == 0 {
		return
	}
	switch c.Strategy {
	case FixedWindow, SlidingWindowCounter:
		st.n += cost
	case Tally, ElasticTally:
		// The hit that starts the count sets its expiry; an elastic hit
		// pushes it.
		if st.n == 0 || c.Strategy == ElasticTally {
			st.t = now + int64(c.Limit.Period)
		}
		st.n += cost
	case TokenBucket:
		st.t, st.n = st.tatAfter(c, cost)
	case MovingWindow:
		if st.log == nil {
			st.log = &hitLog{}
		}
		st.log.push(now, int(cost), int(c.Limit.Amount))
	}
}

// status fills out the remaining quota and the reset instant of a normalized
// st whose usage before the check was used and, when the check was denied,
// the retry-after for cost. consumed says whether cost was taken.
func (st *state) status(c *Counter, now, cost, used int64, consumed, denied bool) (remaining, reset, retry int64) {
	A, P := c.Limit.Amount, int64(c.Limit.Period)
	if consumed {
		used += cost
	}
	remaining = max(0, min(A, A-used))
	reset = now
	switch c.Strategy {
	case FixedWindow:
		if st.n > 0 {
			reset = st.t + P
		}
	case Tally, ElasticTally:
		if st.n > 0 {
			reset = st.t
		}
	case SlidingWindowCounter:
		// Whole again once floor(weighted) is 0: in the next bucket if the
		// current one has hits, else when the previous bucket has slid out.
		if st.n > 0 {
			reset = st.t + 2*P - slideRoom(0, st.n, P)
		} else if st.p > 0 {
			reset = max(now, st.t+P-slideRoom(0, st.p, P))
		}
	case TokenBucket:
		reset = max(now, ceilTAT(st.t, st.n))
	case MovingWindow:
		if n := st.log.len(); n > 0 {
			reset = st.log.at(n-1) + P
		}
	}
	if !denied || fits(A, used, cost) {
		return remaining, reset, 0
	}
	if cost > A {
		return remaining, reset, int64(RetryNever)
	}
	switch c.Strategy {
	case FixedWindow:
		retry = st.t + P - now
	case Tally, ElasticTally:
		retry = st.t - now
	case SlidingWindowCounter:
		if k := A - cost - st.n; k >= 0 {
			// Allowed later in this bucket, once enough of the previous one
			// has slid out of the window.
			retry = st.t + P - slideRoom(k, st.p, P) - now
		} else {
			// Only in the next bucket, where this bucket's hits are the
			// previous count.
			retry = st.t + 2*P - slideRoom(A-cost, st.n, P) - now
		}
	case TokenBucket:
		t, f := st.tatAfter(c, cost)
		retry = ceilTAT(t, f) - P - now
	case MovingWindow:
		// The hit that must leave the window first for cost to fit.
		retry = st.log.at(int(int64(st.log.len())-A+cost-1)) + P - now
	}
	return remaining, reset, max(retry, 1)
}

// deadline is the instant from which st means the same as the zero state, so
// the counter can be dropped.
func (st *state) deadline(c *Counter) int64 {
	P := int64(c.Limit.Period)
	switch c.Strategy {
	case FixedWindow:
		if st.n > 0 {
			return st.t + P
		}
	case Tally, ElasticTally:
		if st.n > 0 {
			return st.t
		}
	case SlidingWindowCounter:
		if st.n > 0 || st.p > 0 {
			return st.t + 2*P
		}
	case TokenBucket:
		return ceilTAT(st.t, st.n)
	case MovingWindow:
		if n := st.log.len(); n > 0 {
			return st.log.at(n-1) + P
		}
	}
	return -1 << 63
}

// bucketStart is the start of the clock-aligned bucket holding now.
func bucketStart(now, P int64) int64 {
	m := now % P
	if m < 0 {
		m += P
	}
	return now - m
}

// weighted is the sliding window's floored count at now (st normalized):
// floor(p × (time left in the current bucket) / P) + n.
func (st *state) weighted(c *Counter, now int64) int64 {
	P := int64(c.Limit.Period)
	w := st.n
	if st.p > 0 {
		q, _ := mulDiv(st.p, st.t+P-now, P)
		w = satAdd(w, q)
	}
	return w
}

// slideRoom is the largest time left in a bucket r (0 <= r <= P) for which a
// previous count of c weighs at most k: floor(c×r/P) <= k  ⇔  r <= ceil((k+1)P/c) - 1.
func slideRoom(k, c, P int64) int64 {
	if c <= 0 || k >= c {
		return P
	}
	q, rem := mulDiv(k+1, P, c)
	if rem != 0 {
		q++
	}
	return q - 1
}

// tatAfter returns the token bucket's TAT after consuming cost (<= Amount):
// TAT + cost×Period/Amount, exact, as nanoseconds plus a fraction in
// 1/Amount ns.
func (st *state) tatAfter(c *Counter, cost int64) (t, frac int64) {
	A := c.Limit.Amount
	q, r := mulDiv(cost, int64(c.Limit.Period), A)
	t, frac = st.t+q, st.n+r
	if frac >= A {
		t, frac = t+1, frac-A
	}
	return t, frac
}

// tatFits is GCRA's test: a TAT at most one period (the burst) ahead of now.
func tatFits(t, frac, now, P int64) bool {
	d := t - now
	return d < P || (d == P && frac == 0)
}

// ceilTAT rounds a TAT up to whole nanoseconds.
func ceilTAT(t, frac int64) int64 {
	if frac > 0 {
		return t + 1
	}
	return t
}

// tokens is how many cost-1 hits a normalized token bucket admits now:
// floor((now + P - TAT) × Amount / P).
func (st *state) tokens(c *Counter, now int64) int64 {
	A, P := c.Limit.Amount, int64(c.Limit.Period)
	if A == 0 || !tatFits(st.t, st.n, now, P) {
		return 0
	}
	x := P - (st.t - now)
	hi, lo := bits.Mul64(uint64(x), uint64(A))
	lo, borrow := bits.Sub64(lo, uint64(st.n), 0)
	q, _ := bits.Div64(hi-borrow, lo, uint64(P))
	return int64(q)
}

// mulDiv returns a×b/c and the remainder, computed in 128 bits; a, b >= 0,
// c > 0 and the quotient must fit in int64.
func mulDiv(a, b, c int64) (q, r int64) {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi >= uint64(c) {
		return 1<<63 - 1, 0 // cannot happen for callers' ranges; saturate rather than panic
	}
	uq, ur := bits.Div64(hi, lo, uint64(c))
	if uq > 1<<63-1 {
		return 1<<63 - 1, 0
	}
	return int64(uq), int64(ur)
}

// satAdd adds non-negative counts without wrapping (merged counts may be large).
func satAdd(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return 1<<63 - 1
}
