// Package bucket is the pure, network-free core of ratemesh: the limit
// grammar, the four rate-limiting algorithms and the owner's counter table.
// Time is always passed in (as golang.org/x/time/rate's AllowN does), so
// every answer is a function of its inputs and tests pin exact instants.
//
// # Limits
//
// Parse reads Flask-Limiter's notation ("10 per minute; 200 per day",
// "100/day, 500/7days") into Limits; Limit.String writes it back
// ("10 per 1 minute").
//
// # Counters and strategies
//
// A check names a routing key (the client identity, e.g. "ip:203.0.113.7")
// and one or more Counters. A Counter is a scope ("GET /products"), a Limit
// and a Strategy, and that whole triple is its identity: when the user
// changes a limit in the config, checks reach a fresh counter and the old
// one simply expires (the reference does the same, its storage key holds
// the amount and period).
//
// The strategies are FixedWindow (the window opens at the key's first hit),
// SlidingWindowCounter (clock-aligned buckets, the previous bucket weighted
// by how much of it is still inside the window), MovingWindow (an exact log
// of hits, at most MaxMovingWindowAmount per counter) and TokenBucket (GCRA:
// Amount is the burst, refilled evenly over the period). Two more serve
// storages of the reference's kind rather than limits: Tally and
// ElasticTally, a plain count with an expiry (pushed by every hit of an
// elastic one), named by scope alone.
//
// For each counter a check reports a Status: the quota remaining after the
// check, when the quota is whole again (Reset), and how long until the
// check's cost would be allowed (RetryAfter: 0 when allowed, RetryNever
// when the cost exceeds the limit's amount and can never be allowed).
//
// Unlike the reference, a denied check consumes nothing, and a check over
// several counters is all-or-nothing: it consumes from none unless every one
// allows it.
//
// # Store
//
// Store is the table an owner node keeps: sharded by routing key, one lock
// per shard, all counters of a key in one entry so they are decided under
// one lock. Checking an existing key allocates nothing. Expired counters are
// dropped lazily by Check and reclaimed incrementally by Sweep, which the
// owner calls from a ticker. Snapshot, Extract and Merge move counters
// between owners when the ring changes: Entry and CounterState are plain
// exported structs ready for any encoder.
//
// # Hostile input
//
// Whatever its clients send, a Store's memory is bounded: StoreConfig's
// MaxKeys, MaxCounters and MaxMovingWindowSlots bound the whole table (a
// check that would go beyond fails with a *FullError, ErrStoreFull; Merge
// alone may exceed them, rather than forget hits), MaxCountersPerKey one key,
// MaxScopeLen a scope, MaxMovingWindowHitsPerCheck the timestamps one check
// logs, and MaxScopeBytes the table of interned scopes. Usage reports the
// figures. Errors quote at most MaxQuoted bytes of any input, and
// Limit.ValidatePeriod bounds the windows a node lets its API clients choose.
package bucket
