package cluster

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
)

// denyCache remembers checks the owner denied, until the owner said they
// could pass again. A denied check consumes nothing, and other checks can
// only consume more, so until then the answer cannot change: the asking
// node gives it again itself, and a client flooding far over its limit
// costs its owner and the network nothing. Only Reset reopens a key early,
// and Reset clears this cache on every member.
//
// Entries are per routing key and match only the same counters and a cost
// at least as large; the table is sharded and bounded.
type denyCache struct {
	n      atomic.Int64 // entries, read without a lock: most checks find none
	shards [denyShards]denyShard
}

const (
	denyShards   = 16
	denyPerShard = 4096 // bound: at most 64k denied keys remembered
)

type denyShard struct {
	mu sync.Mutex
	m  map[string]*denied
}

type denied struct {
	counters []bucket.Counter
	cost     int64
	statuses []bucket.Status // the owner's answer
	node     string          // the owner that decided
	at       time.Time       // when it decided
	until    time.Time       // when the check may pass again
}

func (d *denyCache) shard(key string) *denyShard {
	return &d.shards[xxhash.Sum64String(key)%denyShards]
}

// lookup answers req from the cache if the owner denied the same check
// (or a cheaper one) and it cannot pass yet.
func (d *denyCache) lookup(now time.Time, req *rpc.CheckRequest, resp *rpc.CheckResponse) bool {
	if d.n.Load() == 0 {
		return false
	}
	s := d.shard(req.Key)
	s.mu.Lock()
	e := s.m[req.Key]
	if e == nil {
		s.mu.Unlock()
		return false
	}
	if !now.Before(e.until) {
		delete(s.m, req.Key)
		d.n.Add(-1)
		s.mu.Unlock()
		return false
	}
	if req.Cost < e.cost || !slices.Equal(req.Counters, e.counters) {
		s.mu.Unlock()
		return false
	}
	elapsed := now.Sub(e.at)
	resp.Allowed = false
	resp.Node = e.node
	resp.Statuses = append(resp.Statuses[:0], e.statuses...)
	s.mu.Unlock()
	for i := range resp.Statuses {
		if ra := resp.Statuses[i].RetryAfter; ra != bucket.RetryNever {
			resp.Statuses[i].RetryAfter = max(0, ra-elapsed)
		}
	}
	return true
}

// store remembers a denial by the owner.
func (d *denyCache) store(now time.Time, req *rpc.CheckRequest, resp *rpc.CheckResponse) {
	var wait time.Duration
	for _, st := range resp.Statuses {
		wait = max(wait, st.RetryAfter)
	}
	if wait <= 0 || wait == bucket.RetryNever {
		return // nothing to gain, or never passes: ask again (config may change)
	}
	e := &denied{
		counters: slices.Clone(req.Counters),
		cost:     req.Cost,
		statuses: slices.Clone(resp.Statuses),
		node:     resp.Node,
		at:       now,
		until:    now.Add(wait),
	}
	s := d.shard(req.Key)
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[string]*denied)
	}
	before := len(s.m)
	if before >= denyPerShard {
		for k, old := range s.m { // drop the expired; failing that, any
			if !now.Before(old.until) || len(s.m) >= denyPerShard {
				delete(s.m, k)
			}
		}
	}
	s.m[req.Key] = e
	d.n.Add(int64(len(s.m) - before))
	s.mu.Unlock()
}

// forget drops key's denials (the key was reset).
func (d *denyCache) forget(key string) {
	s := d.shard(key)
	s.mu.Lock()
	if _, ok := s.m[key]; ok {
		delete(s.m, key)
		d.n.Add(-1)
	}
	s.mu.Unlock()
}
