package bucket

import (
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"
)

// Store-wide bounds: a Store's memory is bounded whatever its clients ask
// for. A check that would create a routing key, a counter or moving-window
// slots beyond them fails with a *FullError; what the store already holds
// keeps working, and it recovers as Sweep reclaims expired counters.
const (
	// DefaultMaxKeys bounds the routing keys of a Store whose config names
	// no bound.
	DefaultMaxKeys = 1 << 20
	// DefaultMaxCounters bounds the counters of all keys together.
	DefaultMaxCounters = 2 << 20
	// DefaultMaxMovingWindowSlots bounds the timestamps all moving-window
	// logs together have room for: 32 Mi slots are 256 MiB.
	DefaultMaxMovingWindowSlots = 32 << 20
	// DefaultMaxScopeBytes bounds the memory of a Store's table of interned
	// scopes (spread evenly over its shards). Scopes beyond it are still
	// accepted, each counter then keeps its own copy.
	DefaultMaxScopeBytes = 4 << 20
)

// MovedHeadroom sets how far counts moving in may take a Store beyond its
// bounds: Merge (a handoff received, a replica continued from, a data file
// loaded) admits new keys, counters and slots up to each bound plus
// 1/MovedHeadroom of it (MaxKeys 1 Mi: 16,384 keys more), so that a
// node's keys moving to a full node are not forgotten, which would admit
// their hits again. Beyond that a moved key is refused and Merge reports
// it. Checks never create beyond the bound itself, and Replace (a replica
// kept for another owner, a copy) not either: a Store holds at most MaxKeys
// keys created by checks and replicas, and at most MaxKeys + MaxKeys/64 in
// all.
const MovedHeadroom = 64

// MaxMovingWindowHitsPerCheck bounds the hits one check may log in
// moving-window counters: cost times the moving-window counters it names.
// Each hit is an 8-byte timestamp kept for the whole period, so without it
// one check of 32 counters at cost 4096 would pin a megabyte.
const MaxMovingWindowHitsPerCheck = 16384

// scopeOverhead is what one interned scope costs beyond its bytes (map
// slot, string header, reference count), charged against MaxScopeBytes.
const scopeOverhead = 64

// ErrStoreFull is matched (errors.Is) by every *FullError.
var ErrStoreFull = errors.New("bucket: store full")

// ErrTooManyHits is wrapped by the error of a check that would log more than
// MaxMovingWindowHitsPerCheck moving-window hits.
var ErrTooManyHits = errors.New("bucket: too many moving-window hits in one check")

// FullError reports a check refused because it would take the Store beyond
// one of its bounds. errors.Is(err, ErrStoreFull) matches it.
type FullError struct {
	Bound string // "MaxKeys", "MaxCounters" or "MaxMovingWindowSlots"
	Max   int    // the bound's value
}

// Error names the bound and its value.
func (e *FullError) Error() string {
	return "bucket: store full: the check would exceed " + e.Bound + " (" + strconv.Itoa(e.Max) + ")"
}

// Is matches ErrStoreFull.
func (e *FullError) Is(target error) bool { return target == ErrStoreFull }

// Usage is what a Store holds, for metrics: the quantities its bounds limit.
// Merge may take it beyond them.
type Usage struct {
	Keys              int // routing keys, including expired ones not swept yet
	Counters          int // counters of all keys
	MovingWindowSlots int // timestamps the moving-window logs have room for (8 bytes each)
	ScopeBytes        int // interned scopes, their bytes plus a fixed overhead each
}

// Usage returns what the Store holds. Each figure is exact when no call is
// under way; concurrent checks may be counted or not.
func (s *Store) Usage() Usage {
	a := &s.table().acct
	return Usage{
		Keys:              int(a.keys.Load()),
		Counters:          int(a.counters.Load()),
		MovingWindowSlots: int(a.slots.Load()),
		ScopeBytes:        int(a.scopeBytes.Load()),
	}
}

// account is a Store's usage and bounds. Checks reserve before they create,
// so the bounds hold under concurrency without a store-wide lock; an
// existing key's check touches it only when a moving-window log must grow.
type account struct {
	keys, counters, slots, scopeBytes atomic.Int64
	maxKeys, maxCounters, maxSlots    int64
	shardScopeBytes                   int // each shard's interning budget
}

func (a *account) init(cfg *StoreConfig, shards int) {
	def := func(v, d int) int64 {
		if v <= 0 {
			return int64(d)
		}
		return int64(v)
	}
	a.maxKeys = def(cfg.MaxKeys, DefaultMaxKeys)
	a.maxCounters = def(cfg.MaxCounters, DefaultMaxCounters)
	a.maxSlots = def(cfg.MaxMovingWindowSlots, DefaultMaxMovingWindowSlots)
	a.shardScopeBytes = max(int(def(cfg.MaxScopeBytes, DefaultMaxScopeBytes))/shards, MaxScopeLen+scopeOverhead)
}

// reserve takes keys, counters and slots from the bounds, or nothing and a
// *FullError naming the first bound they would exceed.
func (a *account) reserve(keys, counters, slots int64) error {
	return a.reserveWithin(keys, counters, slots, 0)
}

// reserveMoved is reserve for counts moving in (Merge): they may take the
// store beyond its bounds by a headroom of 1/MovedHeadroom of each, and
// no further.
func (a *account) reserveMoved(keys, counters, slots int64) error {
	return a.reserveWithin(keys, counters, slots, MovedHeadroom)
}

// reserveWithin is reserve with each bound raised by 1/headroom of itself
// (at least 1) when headroom is not 0.
func (a *account) reserveWithin(keys, counters, slots int64, headroom int64) error {
	if keys|counters|slots == 0 {
		return nil // an existing key's check with several counters
	}
	if err := take(&a.keys, keys, over(a.maxKeys, headroom), "MaxKeys"); err != nil {
		return err
	}
	if err := take(&a.counters, counters, over(a.maxCounters, headroom), "MaxCounters"); err != nil {
		a.keys.Add(-keys)
		return err
	}
	if err := take(&a.slots, slots, over(a.maxSlots, headroom), "MaxMovingWindowSlots"); err != nil {
		a.keys.Add(-keys)
		a.counters.Add(-counters)
		return err
	}
	return nil
}

// over is bound raised by 1/headroom of itself, at least 1; bound itself
// when headroom is 0.
func over(bound, headroom int64) int64 {
	if headroom == 0 {
		return bound
	}
	return bound + max(bound/headroom, 1)
}

// take adds n to v unless that exceeds max.
func take(v *atomic.Int64, n, max int64, bound string) error {
	if n <= 0 || v.Add(n) <= max {
		return nil
	}
	v.Add(-n)
	return &FullError{Bound: bound, Max: int(max)}
}

// force adds to the usage without bounds or gives back (negative
// arguments). Merge forces only the growth of a moving-window log it
// merges into, which the counter's limit bounds.
func (a *account) force(keys, counters, slots int64) {
	if keys != 0 {
		a.keys.Add(keys)
	}
	if counters != 0 {
		a.counters.Add(counters)
	}
	if slots != 0 {
		a.slots.Add(slots)
	}
}

// scopeRef is an interned scope and the number of counters sharing it.
type scopeRef struct {
	s    string
	refs int
}

// intern returns the shard's shared copy of scope, taking a reference, or a
// private copy when the shard's interning budget is spent. A million keys
// under one scope then share its bytes, and a flood of distinct scopes
// costs no more than the counters holding them.
func (sh *shard) intern(scope string) string {
	if scope == "" {
		return scope
	}
	if r := sh.scopes[scope]; r != nil {
		r.refs++
		return r.s
	}
	s := strings.Clone(scope)
	if cost := len(s) + scopeOverhead; sh.scopeBytes+cost <= sh.acct.shardScopeBytes {
		if sh.scopes == nil {
			sh.scopes = make(map[string]*scopeRef)
		}
		sh.scopes[s] = &scopeRef{s: s, refs: 1}
		sh.scopeBytes += cost
		sh.acct.scopeBytes.Add(int64(cost))
	}
	return s
}

// unref drops a counter's reference to its scope; the last one removes the
// scope from the table, so no scope outlives its counters there.
func (sh *shard) unref(scope string) {
	r := sh.scopes[scope]
	if r == nil || unsafe.StringData(r.s) != unsafe.StringData(scope) {
		return // a private copy, or the empty scope
	}
	if r.refs--; r.refs > 0 {
		return
	}
	delete(sh.scopes, scope)
	cost := len(scope) + scopeOverhead
	sh.scopeBytes -= cost
	sh.acct.scopeBytes.Add(-int64(cost))
	if len(sh.scopes) == 0 {
		sh.scopes = nil // Go maps never shrink: let a past flood's buckets go
	}
}

// forget gives back what the counters of an entry being removed hold.
func (sh *shard) forget(e *entry) {
	slots := 0
	for i := 0; i < e.len(); i++ {
		c := e.at(i)
		slots += c.st.log.capacity()
		sh.unref(c.id.Scope)
	}
	sh.acct.force(-1, -int64(e.len()), -int64(slots))
}

// forgetCounter gives back what one counter being dropped holds.
func (sh *shard) forgetCounter(c *counter) {
	sh.unref(c.id.Scope)
	sh.acct.force(0, -1, -int64(c.st.log.capacity()))
}
