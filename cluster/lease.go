package cluster

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
	"github.com/ratemesh/ratemesh/ring"
)

// Leases let a node decide checks of a hot key itself, from a slice of the
// key's quota its owner has already counted, instead of forwarding each.
//
//   - A node that forwards more than leaseHeat allowed checks of one key
//     within leaseHeatWindow asks the key's owner for a slice: a check of
//     cost N, all-or-nothing, so the owner counts the slice as spent and
//     never grants more than remains. N is what the node forwarded in the
//     last window (its rate over leaseTTL), at most the smallest remaining
//     quota divided by leaseShare times the members (every member may hold
//     a slice), and no slice is asked for below leaseMin: near the limit
//     checks go to the owner again, and the last of the quota is decided
//     exactly. So a small limit (under leaseMin × leaseShare × members,
//     384 on 3 nodes) is never leased, and its remaining counts stay
//     exact; a leased key's remaining count is the owner's, less the
//     slices other nodes hold.
//   - The node then answers checks of exactly those counters from the
//     slice until it is spent, leaseTTL has passed, the window of a
//     counter ends, or the key's owner changes. What is left goes back to
//     the owner (a refund, bucket.Store.Refund), which takes it off the
//     window it came from.
//   - Admitted checks never exceed the limit: each was counted by the
//     owner before it was admitted. A refund that does not arrive (the
//     node or the owner crashed) leaves the slice counted: fewer
//     admissions, never more.
//
// Only fixed-window counters are leased: a sliding window weighs hits by
// when they happened and a moving window records each hit's time, which a
// slice taken ahead cannot know; a token bucket's refund cannot restore
// the refill it prevented. Checks with any other counter are never leased.
const (
	leaseHeat       = 20 // allowed forwards of a key per window that make it hot
	leaseHeatWindow = 100 * time.Millisecond
	leaseTTL        = 200 * time.Millisecond
	leaseMin        = 16   // smallest slice worth asking for
	leaseShare      = 8    // a slice is at most 1/(leaseShare × members) of what remains
	leaseMaxKeys    = 1024 // leases held at once
)

// leaser is one node's leases and the heat of keys it forwards.
type leaser struct {
	c  *Cluster
	n  atomic.Int64 // len(held), read on the check path
	mu sync.RWMutex // held (read by checks); heat and asking (written)
	// held are the slices this node decides from, by routing key.
	held map[string]*lease
	// heat counts allowed forwards per key in the current window.
	heat      map[string]int
	heatSince time.Time
	asking    map[string]bool // grants in flight
	closing   bool            // set by settle: no more grants are asked for
	asks      sync.WaitGroup  // grants in flight, for settle
}

// lease is a slice of one key's quota for exactly its counters.
type lease struct {
	owner    ring.Member
	counters []bucket.Counter
	starts   []int64      // window start of each counter, for the refund
	left     atomic.Int64 // units not used yet; 0 once given back
	size     int64        // units granted
	granted  time.Time
	until    time.Time
	base     []bucket.Status // the owner's answer to the grant
	renewing atomic.Bool     // a next slice has been asked for
}

func newLeaser(c *Cluster) *leaser {
	return &leaser{c: c, held: map[string]*lease{}, heat: map[string]int{}, asking: map[string]bool{}}
}

// decide answers req from a lease of its key, if this node holds one that
// covers it; it reports whether it did.
func (l *leaser) decide(now time.Time, owner ring.Member, req *rpc.CheckRequest, resp *rpc.CheckResponse) bool {
	if l.n.Load() == 0 || req.Cost <= 0 {
		return false
	}
	l.mu.RLock()
	ls := l.held[req.Key]
	l.mu.RUnlock()
	if ls == nil || ls.owner != owner || !now.Before(ls.until) || !slices.Equal(ls.counters, req.Counters) {
		return false
	}
	left := ls.left.Load()
	for {
		if req.Cost > left {
			return false
		}
		if ls.left.CompareAndSwap(left, left-req.Cost) {
			break
		}
		left = ls.left.Load()
	}
	left -= req.Cost
	// Renewed ahead, before the slice runs low or out of time, so that
	// a hot key is never without one.
	if (left < ls.size/4 || now.Sub(ls.granted) > leaseTTL*3/4) && !ls.renewing.Swap(true) {
		l.renew(now, ls, req)
	}
	resp.Allowed, resp.Node = true, l.c.name
	resp.Statuses = resp.Statuses[:0]
	for _, st := range ls.base {
		st.Remaining += left
		st.RetryAfter = 0
		resp.Statuses = append(resp.Statuses, st)
	}
	return true
}

// observe notes an allowed forward of req and, when its key turns hot,
// asks its owner for a slice in the background. resp is the owner's
// answer to req.
func (l *leaser) observe(now time.Time, v *view, owner ring.Member, req *rpc.CheckRequest, resp *rpc.CheckResponse) {
	if !resp.Allowed || req.Cost <= 0 || !fixedWindowsOnly(req.Counters) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.heatSince) >= leaseHeatWindow {
		clear(l.heat)
		l.heatSince = now
	}
	l.heat[req.Key]++
	heat := l.heat[req.Key]
	if held := l.held[req.Key]; heat < leaseHeat || l.asking[req.Key] || (held != nil && held.left.Load() > 0) || len(l.held) >= leaseMaxKeys {
		return
	}
	// The rate since the window began, over a slice's lifetime.
	elapsed := max(now.Sub(l.heatSince), time.Millisecond)
	n := int64(heat) * int64(leaseTTL) / int64(elapsed)
	l.askLocked(owner, req, n, minRemaining(resp.Statuses), v.full.Len())
}

// renew asks for the next slice of a lease running low or old: sized by
// the rate it was spent at, over a slice's lifetime.
func (l *leaser) renew(now time.Time, ls *lease, req *rpc.CheckRequest) {
	used := ls.size - ls.left.Load()
	n := used * int64(leaseTTL) / int64(max(now.Sub(ls.granted), time.Millisecond))
	l.mu.Lock()
	defer l.mu.Unlock()
	l.askLocked(ls.owner, req, n, minRemaining(ls.base), l.c.view.Load().full.Len())
}

// askLocked asks owner for a slice of n units of req's counters, at most
// remaining (the owner's last word on what is left) over twice the
// members, and none below leaseMin. l.mu is held.
func (l *leaser) askLocked(owner ring.Member, req *rpc.CheckRequest, n, remaining int64, members int) {
	n = min(n, remaining/int64(leaseShare*max(1, members)))
	if n < leaseMin || l.asking[req.Key] || l.closing {
		return
	}
	l.asking[req.Key] = true
	grant := rpc.CheckRequest{Key: req.Key, Counters: slices.Clone(req.Counters), Cost: n}
	l.asks.Add(1)
	go func() {
		defer l.asks.Done()
		l.ask(owner, &grant)
	}()
}

// settle ends this node's part in leases as it leaves: no grant is asked
// for any more, the grants in flight get their answers (each within
// ForwardTimeout: one cut off could have been counted by its owner, a
// slice lost), and every slice held goes back to its key's count.
func (l *leaser) settle(ctx context.Context) {
	l.mu.Lock()
	l.closing = true
	l.mu.Unlock()
	l.asks.Wait()
	l.expire(ctx, l.c.now(), l.c.view.Load(), true)
}

func minRemaining(sts []bucket.Status) int64 {
	r := sts[0].Remaining
	for _, st := range sts[1:] {
		r = min(r, st.Remaining)
	}
	return r
}

// ask takes a slice of grant.Cost from owner and holds it.
func (l *leaser) ask(owner ring.Member, grant *rpc.CheckRequest) {
	// Not l.c.ctx: a grant is never cut off (see settle).
	ctx, cancel := context.WithTimeout(context.Background(), l.c.cfg.ForwardTimeout)
	defer cancel()
	var resp rpc.CheckResponse
	err := l.c.peers.get(owner.Name, owner.Addr).Check(ctx, grant, &resp)
	now := l.c.now()
	if stale := l.hold(now, owner, grant, &resp, err); stale != nil {
		// The slice it replaces could not join it: what it has left
		// goes back to the key's count, as when a lease expires.
		// A fresh context: the grant's may be nearly spent, and a refund
		// that times out is not sent again.
		l.giveBack(context.Background(), byOwner(l.c.view.Load(), []bucket.Entry{*stale}))
	}
}

// hold keeps the slice the owner granted, if it did. A slice of the key
// held already joins it when both are of the same windows and owner;
// otherwise hold returns the old slice's unused units as a refund.
func (l *leaser) hold(now time.Time, owner ring.Member, grant *rpc.CheckRequest, resp *rpc.CheckResponse, err error) (stale *bucket.Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.asking, grant.Key)
	if err != nil || !resp.Allowed || len(resp.Statuses) != len(grant.Counters) {
		return nil // nothing was counted unless allowed; an error may have: see refunds
	}
	ls := &lease{owner: owner, counters: grant.Counters, size: grant.Cost, granted: now, until: now.Add(leaseTTL), base: resp.Statuses}
	ls.left.Store(grant.Cost)
	for i, st := range resp.Statuses {
		// A fixed window's reset is its start plus the period.
		ls.starts = append(ls.starts, st.Reset.Add(-grant.Counters[i].Limit.Period).UnixNano())
		if st.Reset.Before(ls.until) {
			ls.until = st.Reset
		}
	}
	if old := l.held[grant.Key]; old != nil {
		if left := old.left.Swap(0); left > 0 {
			if old.owner == owner && slices.Equal(old.starts, ls.starts) && slices.Equal(old.counters, ls.counters) {
				ls.left.Add(left)
			} else {
				stale = old.refund(grant.Key, left)
			}
		}
	}
	l.held[grant.Key] = ls
	l.n.Store(int64(len(l.held)))
	l.c.metrics.leases.WithLabelValues("granted").Inc()
	return stale
}

// refund is the entry that gives left unused units of ls back.
func (ls *lease) refund(key string, left int64) *bucket.Entry {
	e := &bucket.Entry{Key: key}
	for i, c := range ls.counters {
		e.Counters = append(e.Counters, bucket.CounterState{Counter: c, Start: ls.starts[i], Count: left})
	}
	return e
}

// expire ends the leases that ran out, or whose key has another owner in
// v, and gives their unused units back to the key's owner now. With all
// (the node is leaving) every lease ends.
func (l *leaser) expire(ctx context.Context, now time.Time, v *view, all bool) {
	if l.n.Load() == 0 {
		return
	}
	refunds := map[ring.Member][]bucket.Entry{}
	l.mu.Lock()
	for key, ls := range l.held {
		owner, ok := v.routing.Owner(key)
		if !all && now.Before(ls.until) && ls.left.Load() > 0 && ok && owner == ls.owner {
			continue
		}
		delete(l.held, key)
		// Claimed at once: a check that found the lease a moment ago
		// can no longer spend what is given back.
		left := ls.left.Swap(0)
		if left <= 0 || !ok {
			continue
		}
		// To whoever owns the key now: a handoff took its count there.
		refunds[owner] = append(refunds[owner], *ls.refund(key, left))
	}
	l.n.Store(int64(len(l.held)))
	l.mu.Unlock()
	l.giveBack(ctx, refunds)
}

// giveBack sends refunds to the owners they are keyed by. A refund that
// surely did not reach its owner (rpc.ErrNotSent: the owner left or
// crashed) goes, once this node routes around that owner, to whoever owns
// the key then — where a handoff took its count; one that may have arrived
// (a timeout) is not sent again: twice would admit more than the limit.
func (l *leaser) giveBack(ctx context.Context, refunds map[ring.Member][]bucket.Entry) {
	for try := 0; len(refunds) > 0; try++ {
		var unsent []bucket.Entry
		for owner, es := range refunds {
			if owner.Name == l.c.name {
				l.c.refundHere(ctx, l.c.name, 0, es)
				continue
			}
			err := l.c.peers.get(owner.Name, owner.Addr).Refund(ctx, &rpc.RefundRequest{From: l.c.name, Entries: es})
			switch {
			case err == nil:
				l.c.metrics.leases.WithLabelValues("refunded").Add(float64(len(es)))
			case errors.Is(err, rpc.ErrNotSent) && try < maxRefundRoutes:
				l.c.peers.suspect(owner.Name, err)
				unsent = append(unsent, es...)
			default:
				l.c.metrics.leases.WithLabelValues("refund_failed").Add(float64(len(es)))
				l.c.log.Warn("giving back lease slices failed; they stay spent", "owner", owner.Name, "keys", len(es), "err", err)
			}
		}
		refunds = byOwner(l.c.view.Load(), unsent)
	}
}

// maxRefundRoutes bounds how often one refund is routed anew.
const maxRefundRoutes = 2

// byOwner groups entries by their keys' owners in v's routing ring.
func byOwner(v *view, entries []bucket.Entry) map[ring.Member][]bucket.Entry {
	out := map[ring.Member][]bucket.Entry{}
	for _, e := range entries {
		if o, ok := v.routing.Owner(e.Key); ok {
			out[o] = append(out[o], e)
		}
	}
	return out
}

// loop ends leases as they run out, until ctx ends; then it gives back
// what is left.
func (l *leaser) loop(ctx context.Context) {
	t := time.NewTicker(leaseTTL / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.expire(ctx, l.c.now(), l.c.view.Load(), false)
		}
	}
}

// refundUnits is what a refund entry gives back: each counter of a slice
// gives back the same units.
func refundUnits(e bucket.Entry) int64 {
	var n int64
	for _, cs := range e.Counters {
		n += cs.Count
	}
	return n
}

func fixedWindowsOnly(cs []bucket.Counter) bool {
	for _, c := range cs {
		if c.Strategy != bucket.FixedWindow {
			return false
		}
	}
	return len(cs) > 0
}

// refundHere applies refunds of slices to the keys' counts wherever they
// are: here, or where a key went (a handoff, a pull), or — when this node
// owns a key since it joined and its previous owner would not give the
// count up yet — on that previous owner. A refund with no count to land on
// (the window ended, the key was reset) is dropped: it would take nothing
// off.
//
// from names the node that gave the refund back: it goes on in its name,
// so that a node that does not know this one yet (a joiner whose pull it
// refused) still takes it. hops is how often leaving nodes passed it on.
func (c *Cluster) refundHere(ctx context.Context, from string, hops int, entries []bucket.Entry) {
	for _, e := range entries {
		c.refundOne(ctx, from, hops, e)
	}
}

func (c *Cluster) refundOne(ctx context.Context, from string, hops int, e bucket.Entry) {
	for pulled := false; ; pulled = true {
		now := c.now()
		if c.repl != nil {
			// Its owner gone, the key's count may be a replica here.
			c.repl.promote(now, c.view.Load(), e.Key)
		}
		// Under movingMu, as a handoff takes entries out and marks them
		// moved: the key is either still here or marked as gone.
		c.movingMu.Lock()
		mv := c.moved.get(e.Key, now)
		if mv == nil && c.store.Has(e.Key) {
			if taken := c.store.Refund(now, []bucket.Entry{e}); taken < refundUnits(e) {
				// Its window ended, or the count here is of a later one
				// or smaller than the slice: those units stay spent.
				c.metrics.leases.WithLabelValues("refund_expired").Inc()
			}
			c.movingMu.Unlock()
			c.replicate([]bucket.Entry{e})
			return
		}
		c.movingMu.Unlock()
		v := c.view.Load()
		prev, inbound := v.inboundFrom(e.Key, now)
		var to ring.Member
		switch {
		case mv != nil:
			mv.wait(ctx)
			to = mv.to
		case inbound && !pulled && !c.leaving.Load():
			if c.pull(ctx, e.Key, prev) {
				continue // the count is here now, or was nowhere
			}
			to = prev // it would not give the count up: it still has it
		case c.leaving.Load() && hops < maxLeavingHops:
			// Sent here as the owner a moment before this node left,
			// for a key it never held: on to the key's next owner.
			var ok bool
			if to, ok = v.routing.Owner(e.Key); !ok || to.Name == c.name {
				return
			}
			hops++
		default:
			c.metrics.leases.WithLabelValues("refund_dropped").Inc()
			return
		}
		if err := c.peers.get(to.Name, to.Addr).Refund(ctx, &rpc.RefundRequest{From: from, Hops: hops, Entries: []bucket.Entry{e}}); err != nil {
			c.metrics.leases.WithLabelValues("refund_failed").Inc()
			c.log.Warn("passing a lease slice on failed; it stays spent", "to", to.Name, "from", from, "err", err)
		}
		return
	}
}
