package bucket

import (
	"hash/maphash"
	"math"
	"slices"
	"time"
)

// Entry is the transferable form of one routing key's counters, for handing
// keys to another owner. It has only exported plain fields so it encodes as
// is (msgpack, gob, JSON).
type Entry struct {
	Key      string         // the routing key
	Counters []CounterState // its live counters
}

// CounterState is the transferable state of one counter. Which fields are
// used depends on Counter.Strategy; the others are zero. Instants are unix
// nanoseconds.
type CounterState struct {
	Counter Counter // identity: scope, limit, strategy
	// Start is the FixedWindow window start, or the start of the
	// SlidingWindowCounter's current clock-aligned bucket.
	Start int64 `msgpack:",omitempty"`
	// Count is the FixedWindow count, or the hits in the sliding window's
	// current bucket.
	Count int64 `msgpack:",omitempty"`
	// Prev is the hits in the sliding window's previous bucket.
	Prev int64 `msgpack:",omitempty"`
	// TAT is the TokenBucket's theoretical arrival time (whole ns); TATFrac
	// its fraction of a nanosecond in units of 1/Amount ns (0 <= TATFrac < Amount).
	TAT     int64 `msgpack:",omitempty"`
	TATFrac int64 `msgpack:",omitempty"`
	// Hits is the MovingWindow log, oldest first, one time per unit of cost.
	Hits []int64 `msgpack:",omitempty"`
}

// Snapshot copies, without removing them, the live entries whose routing
// key matches (nil matches all). match runs under a shard lock: it must be
// quick and must not call the Store.
//
// Each shard's entries are copied under its lock into a buffer allocated
// beforehand and turned into Entry values after the lock is released: at
// ten million keys, allocating the Entry values under the lock made a
// check wait up to 641 ms for the collector the allocations woke.
func (s *Store) Snapshot(now time.Time, match func(key string) bool) []Entry {
	t := now.UnixNano()
	var out []Entry
	if match == nil {
		out = make([]Entry, 0, s.Len())
	}
	var buf []entry
	shards := s.table().shards
	for i := range shards {
		buf, out = shards[i].snapshot(t, match, buf[:0], out)
		// One allocation for the shard's counters, not one per key.
		states := make([]CounterState, len(buf))
		k := 0
		for j := range buf {
			if cs, ok := buf[j].first.transfer(t); ok {
				states[k] = cs
				out = append(out, Entry{Key: buf[j].key, Counters: states[k : k+1 : k+1]})
				k++
			}
		}
		clear(buf) // let the collector have what the copies point to
	}
	return out
}

// snapshot appends copies of the shard's matching entries to buf, under
// the lock but without allocating. An entry with more than one counter or
// a moving-window log shares memory with its copy that later checks
// change, so it is exported under the lock, straight into out; the common
// entry, one plain counter, is copied whole.
func (sh *shard) snapshot(t int64, match func(key string) bool, buf []entry, out []Entry) ([]entry, []Entry) {
	sh.mu.Lock()
	for cap(buf) < len(sh.entries) {
		n := len(sh.entries)
		sh.mu.Unlock()
		buf = make([]entry, 0, n+n/8)
		sh.mu.Lock()
	}
	defer sh.mu.Unlock()
	for j := range sh.entries {
		e := &sh.entries[j]
		switch {
		case match != nil && !match(e.key):
		case e.more != nil || e.first.st.log != nil:
			if x, ok := e.export(t); ok {
				out = append(out, x)
			}
		default:
			buf = append(buf, *e)
		}
	}
	return buf, out
}

// Extract removes and returns up to max (max <= 0: all) live entries whose
// routing key matches (nil matches all), for handing them to a new owner; if
// sending fails, the caller merges them back or sends them elsewhere.
// Expired matching entries are removed and not returned. An empty result
// means no matching entry is left. Successive calls resume near where the
// previous one stopped, so draining in chunks does not rescan the table.
// match runs under a shard lock: it must be quick and must not call the Store.
func (s *Store) Extract(now time.Time, match func(key string) bool, max int) []Entry {
	t := now.UnixNano()
	if max <= 0 {
		max = math.MaxInt
	}
	var out []Entry
	start := s.extractAt.Load()
	tb := s.table()
	for v := uint64(0); v < uint64(len(tb.shards)) && len(out) < max; v++ {
		i := start + v
		sh := &tb.shards[i&tb.mask]
		sh.mu.Lock()
		j := 0
		for j < len(sh.entries) && len(out) < max {
			e := &sh.entries[j]
			if match != nil && !match(e.key) {
				j++
				continue
			}
			x, ok := e.export(t)
			sh.removeAt(j) // the last entry moved to j: examine it next
			if ok {
				out = append(out, x)
			}
		}
		drained := j >= len(sh.entries)
		sh.mu.Unlock()
		if drained {
			i++
		}
		s.extractAt.Store(i) // only a hint: every call visits all shards
	}
	return out
}

// Take removes routing key key and returns its live counters, as Extract
// does for one key; ok is false when the key was absent or had expired.
func (s *Store) Take(now time.Time, key string) (e Entry, ok bool) {
	sh, tag := s.table().shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	en, pos := sh.lookup(tag, key)
	if en == nil {
		return Entry{}, false
	}
	e, ok = en.export(now.UnixNano())
	sh.removeAt(pos)
	return e, ok
}

// Export copies routing key key's live counters without removing them;
// ok is false when the key is absent or has expired.
func (s *Store) Export(now time.Time, key string) (e Entry, ok bool) {
	sh, tag := s.table().shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	en, _ := sh.lookup(tag, key)
	if en == nil {
		return Entry{}, false
	}
	return en.export(now.UnixNano())
}

// AppendExport is Export with the counters appended to buf, which it
// returns extended; the entry's Counters are the appended part (capacity
// capped, so appending to them cannot overwrite what follows). A caller
// exporting many keys at once (a replication batch) allocates once per
// batch instead of once per key.
func (s *Store) AppendExport(now time.Time, key string, buf []CounterState) (e Entry, out []CounterState, ok bool) {
	sh, tag := s.table().shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	en, _ := sh.lookup(tag, key)
	if en == nil {
		return Entry{}, buf, false
	}
	from := len(buf)
	out = en.appendExport(now.UnixNano(), buf)
	if len(out) == from {
		return Entry{}, out, false
	}
	return Entry{Key: en.key, Counters: out[from:len(out):len(out)]}, out, true
}

// Replace sets each entry's key to exactly the entry's counters, dropping
// what the store held for it: a copy kept for another node (a replica)
// takes the newest state it is sent, never a sum. The store's bounds hold
// exactly: it returns how many counter states it refused for want of room
// (a replica missing costs a failover its precision, not a count).
func (s *Store) Replace(now time.Time, entries []Entry) (refused int) {
	return s.mergeAll(now, entries, true)
}

// export copies e's live counters; it reports false when none is live.
func (e *entry) export(t int64) (Entry, bool) {
	x := Entry{Key: e.key}
	for i := 0; i < e.len(); i++ {
		if cs, ok := e.at(i).transfer(t); ok {
			x.Counters = append(x.Counters, cs)
		}
	}
	return x, len(x.Counters) > 0
}

// appendExport appends e's live counters to buf.
func (e *entry) appendExport(t int64, buf []CounterState) []CounterState {
	for i := 0; i < e.len(); i++ {
		if cs, ok := e.at(i).transfer(t); ok {
			buf = append(buf, cs)
		}
	}
	return buf
}

// transfer returns c's transferable state at t; false when it has expired.
func (c *counter) transfer(t int64) (CounterState, bool) {
	c.st.normalize(&c.id, t)
	if t >= c.st.deadline(&c.id) {
		return CounterState{}, false
	}
	cs := CounterState{Counter: c.id}
	switch c.id.Strategy {
	case FixedWindow, SlidingWindowCounter:
		cs.Start, cs.Count, cs.Prev = c.st.t, c.st.n, c.st.p
	case Tally, ElasticTally:
		cs.Start, cs.Count = c.st.t, c.st.n
	case TokenBucket:
		cs.TAT, cs.TATFrac = c.st.t, c.st.n
	case MovingWindow:
		cs.Hits = c.st.log.slice()
	}
	return cs, true
}

// Merge adds entries into the store at instant now, as the new owner of
// their keys: counts of the same window add (fixed windows of one counter
// that both run keep the earlier start, where the key's first hit opened
// it; sliding-window buckets add bucket by bucket; tallies add and keep the
// later expiry), a token bucket keeps the
// emptier state (the later TAT), moving-window logs merge keeping the newest
// Amount hits. Expired counters are dropped, and so are invalid ones
// (Counter.Validate fails) and those beyond the key's MaxCountersPerKey.
//
// Counts into a counter the store holds always merge. A new key or counter
// takes room from the store-wide bounds with MovedHeadroom: the hits were
// admitted by another owner, and forgetting them would admit them again.
// One that would take the store beyond the headroom too is refused; Merge
// returns how many counter states it refused, for the caller to report.
// Checks then create nothing until Sweep has reclaimed room below the
// bounds themselves.
func (s *Store) Merge(now time.Time, entries []Entry) (refused int) {
	return s.mergeAll(now, entries, false)
}

func (s *Store) mergeAll(now time.Time, entries []Entry, replace bool) (refused int) {
	t := now.UnixNano()
	tb := s.table()
	if len(entries) >= reserveAt {
		tb.reserve(entries)
	}
	for i := range entries {
		en := &entries[i]
		sh, tag := tb.shard(en.Key)
		sh.mu.Lock()
		refused += sh.merge(t, tag, en, tb.maxPerKey, replace)
		sh.mu.Unlock()
	}
	return refused
}

// reserveAt is the number of entries from which Merge makes room in every
// shard before merging: a node loading its file at start, or taking a
// departed node's keys. Smaller merges (a replica's few keys) skip it.
const reserveAt = 1 << 14

// reserve grows each shard's entries and index at once for the keys of
// entries it does not hold yet, instead of again and again as they arrive:
// that regrowth was 28 % of merging 3,000,000 keys.
func (tb *table) reserve(entries []Entry) {
	counts := make([]int, len(tb.shards))
	for i := range entries {
		counts[maphash.String(tb.seed, entries[i].Key)&tb.mask]++
	}
	for i := range tb.shards {
		sh := &tb.shards[i]
		sh.mu.Lock()
		sh.entries = slices.Grow(sh.entries, counts[i])
		sh.tags = slices.Grow(sh.tags, counts[i])
		sh.index.reserve(sh.index.n + counts[i])
		sh.mu.Unlock()
	}
}

// merge folds en into the shard; with replace, a counter held already
// takes en's state instead of the sum of both. It returns how many of en's
// counters it refused for want of room.
func (sh *shard) merge(t int64, tag uint32, en *Entry, maxPerKey int, replace bool) (refused int) {
	e, pos := sh.lookup(tag, en.Key)
	reserve := sh.acct.reserveMoved
	if replace {
		reserve = sh.acct.reserve
	}
	for k := range en.Counters {
		cs := &en.Counters[k]
		c := cs.Counter
		if c.Validate() != nil {
			continue
		}
		in, live := importState(cs, t)
		if !live {
			continue
		}
		if e != nil {
			if j := e.find(&c); j >= 0 {
				own := &e.at(j).st
				before := own.log.capacity()
				if replace {
					*own = in
				} else {
					own.normalize(&c, t)
					own.merge(&c, &in)
				}
				sh.acct.force(0, 0, int64(own.log.capacity()-before))
				continue
			}
		}
		if e != nil && e.len() >= maxPerKey && sh.prune(e, t) {
			sh.removeAt(pos)
			e = nil
		}
		if e != nil && e.len() >= maxPerKey {
			continue
		}
		if reserve(b2i(e == nil), 1, int64(in.log.capacity())) != nil {
			refused++
			continue
		}
		if e == nil {
			e, pos = sh.insert(tag, en.Key, &c), len(sh.entries)-1
			e.first.st = in
		} else {
			e.add(sh.internCounter(&c)).st = in
		}
	}
	return refused
}

// importState turns a received CounterState into a normalized state,
// repairing what a peer cannot have meant (negative counts, an unaligned
// bucket, an out-of-range fraction, unsorted or surplus hits); live is false
// when the state is already expired.
func importState(cs *CounterState, t int64) (st state, live bool) {
	c := &cs.Counter
	A, P := c.Limit.Amount, int64(c.Limit.Period)
	switch c.Strategy {
	case FixedWindow:
		st.t, st.n = cs.Start, max(0, cs.Count)
	case Tally, ElasticTally:
		// No tally expires later than the longest period from now.
		st.t, st.n = min(cs.Start, t+int64(MaxPeriod)), max(0, cs.Count)
	case SlidingWindowCounter:
		st.t, st.n, st.p = bucketStart(cs.Start, P), max(0, cs.Count), max(0, cs.Prev)
	case TokenBucket:
		st.t = cs.TAT
		if cs.TATFrac > 0 && cs.TATFrac < A {
			st.n = cs.TATFrac
		}
	case MovingWindow:
		hits := slices.Clone(cs.Hits)
		slices.Sort(hits)
		st.log = newHitLog(hits, int(A))
	}
	st.normalize(c, t)
	return st, t < st.deadline(c)
}

// merge folds the normalized state o of the same counter into st.
func (st *state) merge(c *Counter, o *state) {
	switch c.Strategy {
	case FixedWindow:
		switch {
		case o.n <= 0:
		case st.n <= 0:
			st.t, st.n = o.t, o.n
		default:
			st.t, st.n = min(st.t, o.t), satAdd(st.n, o.n)
		}
	case Tally, ElasticTally:
		// Disjoint hits of one count: they add, and the count lasts as
		// long as either side's would.
		if o.n > 0 {
			st.t, st.n = max(st.t, o.t), satAdd(st.n, o.n)
		}
	case SlidingWindowCounter:
		st.n, st.p = satAdd(st.n, o.n), satAdd(st.p, o.p)
	case TokenBucket:
		if o.t > st.t || (o.t == st.t && o.n > st.n) {
			st.t, st.n = o.t, o.n
		}
	case MovingWindow:
		var a, b []int64
		if st.log != nil {
			a = st.log.slice()
		}
		if o.log != nil {
			b = o.log.slice()
		}
		hits := append(a, b...)
		slices.Sort(hits)
		st.log = newHitLog(hits, int(c.Limit.Amount))
	}
}

// newHitLog builds a log of the newest limit of the sorted hits; nil if none.
func newHitLog(sorted []int64, limit int) *hitLog {
	if len(sorted) > limit {
		sorted = sorted[len(sorted)-limit:]
	}
	if len(sorted) == 0 {
		return nil
	}
	buf := make([]int64, len(sorted)) // exactly: its length is the slots it is charged
	copy(buf, sorted)
	return &hitLog{buf: buf, n: len(buf)}
}
