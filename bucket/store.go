package bucket

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultShards is the number of shards of a Store whose config names none.
const DefaultShards = 256

// DefaultMaxCountersPerKey bounds the counters of one routing key when the
// config names no bound.
const DefaultMaxCountersPerKey = 256

// StoreConfig configures a Store. The zero value selects the defaults.
type StoreConfig struct {
	// Shards is the number of independently locked parts of the table,
	// rounded up to a power of two (at most 65536); 0 means DefaultShards.
	Shards int
	// MaxCountersPerKey bounds the counters one routing key may hold (scopes
	// × limits, including counters of limits the config no longer names that
	// have not expired yet). A check that would add more drops expired
	// counters first and fails with ErrTooManyCounters if that is not enough.
	// 0 means DefaultMaxCountersPerKey; values below MaxCountersPerCheck are
	// raised to it.
	MaxCountersPerKey int
	// MaxKeys bounds the routing keys of the whole store; 0 means
	// DefaultMaxKeys.
	MaxKeys int
	// MaxCounters bounds the counters of all keys together; 0 means
	// DefaultMaxCounters.
	MaxCounters int
	// MaxMovingWindowSlots bounds the timestamps (8 bytes each) all
	// moving-window logs together have room for; 0 means
	// DefaultMaxMovingWindowSlots.
	MaxMovingWindowSlots int
	// MaxScopeBytes bounds the table of interned scopes; 0 means
	// DefaultMaxScopeBytes.
	MaxScopeBytes int
}

// Store is the owner's counter table: routing key → the key's counters, in
// shards with a lock each. All counters of one routing key live in one entry
// under one lock, so a check over several of them is decided atomically and
// an existing key costs one hash, one probe of the shard's index and a short
// scan of its counters. A Store is safe for
// concurrent use; it never starts goroutines. Expired counters are dropped
// lazily by Check and reclaimed by Sweep, which the owner calls periodically.
//
// The Store keeps its own copy of every routing key and interns scopes (up
// to MaxScopeBytes, each for as long as a counter uses it), so callers may
// pass strings that alias larger buffers. Its size is bounded by
// StoreConfig's MaxKeys, MaxCounters and MaxMovingWindowSlots; Usage reports
// what it holds.
//
// The zero value is an empty Store with the default configuration. A Store
// must not be copied after first use.
type Store struct {
	tab       atomic.Pointer[table] // set once, by NewStore or on first use
	initMu    sync.Mutex            // serializes the first use of a zero Store
	sweepAt   atomic.Uint64         // shard Sweep resumes in
	extractAt atomic.Uint64         // shard Extract starts in
}

// table is a Store's fixed configuration and its shards.
type table struct {
	seed      maphash.Seed
	mask      uint64
	shards    []shard
	maxPerKey int
	acct      account
}

// shard is one locked part of the table. Entries live in a dense slice, not
// behind pointers: no per-key allocation header, and Sweep walks it with a
// cursor. index maps a routing key to its position in entries.
type shard struct {
	mu      sync.Mutex
	index   keyIndex
	entries []entry
	// tags[i] is entries[i]'s tag in index. Removing an entry moves the last
	// one into its place, and both must be found in index: re-hashing their
	// keys read each key's bytes, a cache miss apiece, and was 72 % of a
	// sweep's time at ten million keys. 4 bytes a key.
	tags       []uint32
	scopes     map[string]*scopeRef // interned Counter.Scope values
	scopeBytes int                  // what scopes costs, against acct.shardScopeBytes
	cursor     int                  // next entry Sweep examines
	acct       *account             // the table's
	_          [8]byte              // 128-byte stride: keep neighbouring shards' locks off one cache line
}

// entry holds one routing key's counters: the first inline (the common case
// of one limit per identity costs no extra allocation), any others behind
// more.
type entry struct {
	key   string
	first counter
	more  *[]counter
}

type counter struct {
	id Counter
	st state
}

// NewStore returns an empty Store configured by cfg.
func NewStore(cfg StoreConfig) *Store {
	s := &Store{}
	s.tab.Store(newTable(cfg))
	return s
}

func newTable(cfg StoreConfig) *table {
	n := cfg.Shards
	if n <= 0 {
		n = DefaultShards
	}
	n = min(n, 1<<16)
	p := 1
	for p < n {
		p <<= 1
	}
	tb := &table{
		seed:      maphash.MakeSeed(),
		mask:      uint64(p - 1),
		shards:    make([]shard, p),
		maxPerKey: cfg.MaxCountersPerKey,
	}
	if tb.maxPerKey <= 0 {
		tb.maxPerKey = DefaultMaxCountersPerKey
	}
	tb.maxPerKey = max(tb.maxPerKey, MaxCountersPerCheck)
	tb.acct.init(&cfg, p)
	for i := range tb.shards {
		tb.shards[i].acct = &tb.acct
	}
	return tb
}

// table returns the Store's table, setting up a zero Store on first use.
func (s *Store) table() *table {
	if tb := s.tab.Load(); tb != nil {
		return tb
	}
	s.initMu.Lock()
	defer s.initMu.Unlock()
	if tb := s.tab.Load(); tb == nil {
		s.tab.Store(newTable(StoreConfig{}))
	}
	return s.tab.Load()
}

// shard returns key's shard and its tag in the shard's index: the low bits
// of one hash pick the shard, the high half is the tag.
func (tb *table) shard(key string) (*shard, uint32) {
	h := maphash.String(tb.seed, key)
	return &tb.shards[h&tb.mask], uint32(h >> 32)
}

// Check decides all counters of routing key key atomically at instant now
// and, if every one allows cost, consumes cost from each. A denied check
// consumes nothing. A counter named twice in one check is charged once.
// Cost 0 peeks: it reports the counters and is denied only where a counter is
// already over its limit (as after a merge).
//
// Check appends one Status per counter to dst, in order, and returns it; pass
// a reused dst to avoid allocating. Invalid input (negative cost, no
// counters, more than MaxCountersPerCheck, an invalid counter) returns an
// error wrapping ErrInvalidCost, ErrNoCounters, ErrTooManyCounters or
// ErrInvalidCounter, and dst unchanged.
func (s *Store) Check(now time.Time, key string, counters []Counter, cost int64, dst []Status) ([]Status, bool, error) {
	// The common single valid counter is checked inline; anything else
	// takes the loop that also explains what is wrong.
	if len(counters) != 1 || cost < 0 || cost > MaxMovingWindowHitsPerCheck || !counters[0].valid() {
		if err := validateCheck(counters, cost); err != nil {
			return dst, false, err
		}
	}
	tb := s.table()
	sh, tag := tb.shard(key)
	if len(counters) == 1 {
		// The common case, kept short: the lock is held for the decision
		// only, and the Status is built after it.
		c := &counters[0]
		sh.mu.Lock()
		out, err := sh.check1(now.UnixNano(), tag, key, c, cost, tb.maxPerKey)
		sh.mu.Unlock()
		if err != nil {
			return dst, false, err
		}
		return out.append(dst, c.Limit, now.Location()), out.allowed, nil
	}
	sh.mu.Lock()
	dst, ok, err := sh.check(now, tag, key, counters, cost, dst, tb.maxPerKey)
	sh.mu.Unlock()
	return dst, ok, err
}

// CheckHeld is Check for a key this store already holds: when it holds no
// entry for key, it creates nothing and reports held false. A node handing
// its keys off uses it, so that a check racing with the handoff can never
// start a second count of a key here.
func (s *Store) CheckHeld(now time.Time, key string, counters []Counter, cost int64, dst []Status) (_ []Status, allowed, held bool, _ error) {
	if err := validateCheck(counters, cost); err != nil {
		return dst, false, false, err
	}
	tb := s.table()
	sh, tag := tb.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, _ := sh.lookup(tag, key); e == nil {
		return dst, false, false, nil
	}
	if len(counters) == 1 {
		out, err := sh.check1(now.UnixNano(), tag, key, &counters[0], cost, tb.maxPerKey)
		if err != nil {
			return dst, false, true, err
		}
		return out.append(dst, counters[0].Limit, now.Location()), out.allowed, true, nil
	}
	var err error
	dst, allowed, err = sh.check(now, tag, key, counters, cost, dst, tb.maxPerKey)
	return dst, allowed, true, err
}

// lookup returns key's entry and its position, or nil, -1.
func (sh *shard) lookup(tag uint32, key string) (*entry, int) {
	_, pos := sh.index.find(tag, key, sh.entries)
	if pos < 0 {
		return nil, -1
	}
	return &sh.entries[pos], pos
}

// insert adds an entry for key holding a fresh counter c and returns it. The
// caller accounts for the key and the counter.
func (sh *shard) insert(tag uint32, key string, c *Counter) *entry {
	key = strings.Clone(key)
	sh.entries = append(sh.entries, entry{key: key, first: counter{id: sh.internCounter(c)}})
	sh.tags = append(sh.tags, tag)
	i := len(sh.entries) - 1
	sh.index.add(tag, i)
	return &sh.entries[i]
}

// removeAt deletes the i-th entry, moving the last entry into its place, and
// gives back what it held.
func (sh *shard) removeAt(i int) {
	sh.forget(&sh.entries[i])
	sh.index.remove(sh.index.slotOf(sh.tags[i], i))
	last := len(sh.entries) - 1
	if i != last {
		sh.index.move(sh.tags[last], last, i)
		sh.entries[i], sh.tags[i] = sh.entries[last], sh.tags[last]
	}
	sh.entries[last] = entry{} // let the collector have the key and logs
	sh.entries, sh.tags = sh.entries[:last], sh.tags[:last]
}

// internCounter returns c with its scope replaced by the shard's shared copy
// (see intern).
func (sh *shard) internCounter(c *Counter) Counter {
	out := *c
	out.Scope = sh.intern(out.Scope)
	return out
}

func (e *entry) len() int {
	if e.more == nil {
		return 1
	}
	return 1 + len(*e.more)
}

// at returns the i-th counter: 0 is first, then more.
func (e *entry) at(i int) *counter {
	if i == 0 {
		return &e.first
	}
	return &(*e.more)[i-1]
}

// find returns the position of the counter with identity c, or -1.
func (e *entry) find(c *Counter) int {
	if e.first.id.same(c) {
		return 0
	}
	if e.more != nil {
		for i := range *e.more {
			if (*e.more)[i].id.same(c) {
				return i + 1
			}
		}
	}
	return -1
}

// add appends a fresh counter; the pointer is valid until the next add. The
// caller accounts for it.
func (e *entry) add(c Counter) *counter {
	if e.more == nil {
		e.more = new([]counter)
	}
	*e.more = append(*e.more, counter{id: c})
	return &(*e.more)[len(*e.more)-1]
}

// Reset forgets routing key key and all its counters; it reports whether the
// key was held.
func (s *Store) Reset(key string) bool {
	sh, tag := s.table().shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, pos := sh.lookup(tag, key)
	if pos >= 0 {
		sh.removeAt(pos)
	}
	return pos >= 0
}

// Has reports whether routing key key is held, possibly with counters that
// expired but were not swept yet. It allocates nothing.
func (s *Store) Has(key string) bool {
	sh, tag := s.table().shard(key)
	sh.mu.Lock()
	_, pos := sh.lookup(tag, key)
	sh.mu.Unlock()
	return pos >= 0
}

// Len returns the number of routing keys held, including keys whose counters
// expired but were not swept yet.
func (s *Store) Len() int {
	n := 0
	shards := s.table().shards
	for i := range shards {
		sh := &shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}
