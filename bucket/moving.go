package bucket

// hitLog is a moving window's log of hit times, oldest first, in a ring that
// grows on demand up to the limit's Amount (at most MaxMovingWindowAmount),
// so a lightly used moving-window counter stays small. Times never decrease:
// a hit earlier than the newest one (a clock step back) is logged at the
// newest time, which can only make the window stricter.
type hitLog struct {
	buf  []int64 // ring storage
	head int     // index of the oldest hit
	n    int     // hits held
}

// len is nil-safe: a counter without a log has no hits.
func (l *hitLog) len() int {
	if l == nil {
		return 0
	}
	return l.n
}

// capacity is the hits the ring has room for: the slots it costs. Nil-safe.
func (l *hitLog) capacity() int {
	if l == nil {
		return 0
	}
	return len(l.buf)
}

// fits reports whether k more hits fit the ring as it is (nil-safe): the
// common case, in which logging them needs no new slots.
func (l *hitLog) fits(k int64) bool {
	return l != nil && int64(l.n)+k <= int64(len(l.buf))
}

// grown returns the ring's capacity once k more hits are pushed (push grows
// it to exactly this); nil-safe, a nil log being empty.
func (l *hitLog) grown(k, limit int) int {
	if l == nil {
		return min(limit, max(k, 4))
	}
	if need := l.n + k; need > len(l.buf) {
		return min(limit, max(need, 2*len(l.buf), 4))
	}
	return len(l.buf)
}

// at returns the i-th oldest hit.
func (l *hitLog) at(i int) int64 {
	j := l.head + i
	if j >= len(l.buf) {
		j -= len(l.buf)
	}
	return l.buf[j]
}

// prune drops hits that left the window (t, now]: those at or before now-P,
// as the reference counts a hit while it is newer than now - period. The
// common case, nothing to drop, is one comparison and inlined.
func (l *hitLog) prune(now, P int64) {
	if l.n > 0 && now-l.buf[l.head] >= P {
		l.drop(now, P)
	}
}

// drop is prune's loop, for when at least the oldest hit has left.
func (l *hitLog) drop(now, P int64) {
	for l.n > 0 && now-l.buf[l.head] >= P {
		l.head++
		if l.head == len(l.buf) {
			l.head = 0
		}
		l.n--
	}
	if l.n == 0 {
		l.head = 0
	}
}

// push logs k hits at now, growing the ring up to limit entries (to
// grown(k, limit), which the caller has accounted for); callers ensure
// n+k <= limit.
func (l *hitLog) push(now int64, k, limit int) {
	if k == 1 && l.n > 0 && l.n < len(l.buf) {
		// One hit with room for it: the common case, without the
		// general loop.
		j := l.head + l.n
		if j >= len(l.buf) {
			j -= len(l.buf)
		}
		l.buf[j] = max(now, l.at(l.n-1))
		l.n++
		return
	}
	l.pushSlow(now, k, limit)
}

// pushSlow is push for several hits, an empty log or a full ring.
func (l *hitLog) pushSlow(now int64, k, limit int) {
	if l.n > 0 {
		now = max(now, l.at(l.n-1))
	}
	if c := l.grown(k, limit); c > len(l.buf) {
		l.resize(c)
	}
	for ; k > 0; k-- {
		j := l.head + l.n
		if j >= len(l.buf) {
			j -= len(l.buf)
		}
		l.buf[j] = now
		l.n++
	}
}

// resize moves the hits into a fresh ring of the given capacity (>= n).
func (l *hitLog) resize(capacity int) {
	buf := make([]int64, capacity)
	for i := 0; i < l.n; i++ {
		buf[i] = l.at(i)
	}
	l.buf, l.head = buf, 0
}

// compact gives memory back after the window emptied out; it reports
// whether the log is empty and can be dropped.
func (l *hitLog) compact() bool {
	if l.n == 0 {
		return true
	}
	if len(l.buf) > 8 && 4*l.n < len(l.buf) {
		l.resize(2 * l.n)
	}
	return false
}

// slice copies the hits, oldest first.
func (l *hitLog) slice() []int64 {
	out := make([]int64, l.n)
	for i := range out {
		out[i] = l.at(i)
	}
	return out
}
