//go:build linux

// The fault schedule's checker: a ledger per key of what the load asked
// and what the cluster admitted, compared with what the key's algorithm
// allows, and the report by event.

package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"github.com/ratemesh/ratemesh/internal/proctest"
	"github.com/ratemesh/ratemesh/ring"
)

// faultStrategies are the /v1/check algorithms the keys are spread over.
var faultStrategies = []string{"fixed-window", "sliding-window-counter", "moving-window", "token-bucket"}

// faultKey is one key of the schedule and what the load saw of it.
type faultKey struct {
	name, strategy string
	limit          int64 // per day
	body           string

	// Under the ledger's lock.
	demand, admitted     int64 // answered checks, and the allowed ones
	fallbacks, errs      int64
	firstSent, firstDone time.Time // the first admitted check's
	lastSent, lastDone   time.Time // the last answered check's
	deciders             map[string]int64
}

// expected is the range of admissions the algorithm allows for the key's
// demand.
func (k *faultKey) expected() (lo, hi int64) {
	lo, hi = k.allowance()
	return min(lo, k.demand), min(hi, k.demand)
}

// allowance is what the algorithm admits over the run to an unbounded
// demand; lo == hi but for a token bucket, whose refill over the run the
// client can only bound by its own send and answer times.
func (k *faultKey) allowance() (lo, hi int64) {
	lo, hi = k.limit, k.limit
	if k.strategy == "token-bucket" && !k.firstSent.IsZero() {
		// GCRA: the burst, and one more hit per day/limit since the first.
		perDay := func(d time.Duration) int64 { return int64(math.Floor(float64(k.limit) * max(d, 0).Hours() / 24)) }
		lo += perDay(k.lastSent.Sub(k.firstDone))
		hi += perDay(k.lastDone.Sub(k.firstSent))
	}
	return lo, hi
}

// deviation is admitted less the nearest admission the algorithm allows:
// 0 when exact, > 0 over, < 0 under.
func (k *faultKey) deviation() int64 {
	lo, hi := k.expected()
	switch {
	case k.admitted > hi:
		return k.admitted - hi
	case k.admitted < lo:
		return k.admitted - lo
	}
	return 0
}

// faultKeys makes n keys over the four strategies, each with a per-day
// limit between 30 % and 90 % of the demand the load will make of it, so
// that keys run out at times spread over the run.
func faultKeys(rng *rand.Rand, runID string, n int, demandPerKey float64) []*faultKey {
	keys := make([]*faultKey, n)
	for i := range keys {
		k := &faultKey{
			name:     fmt.Sprintf("faults-%s-%d", runID, i),
			strategy: faultStrategies[i%len(faultStrategies)],
			limit:    max(3, int64(demandPerKey*(0.3+0.6*rng.Float64()))),
			deciders: map[string]int64{},
		}
		b, _ := json.Marshal(nodeapi.CheckRequest{Key: k.name, Limits: fmt.Sprintf("%d per day", k.limit), Strategy: k.strategy})
		k.body = string(b)
		keys[i] = k
	}
	return keys
}

// report compares every key's admissions with its limit, logs the figures
// by event, and fails the test for each key outside what the schedule
// allows it, and for client errors in a graceful schedule.
func (r *faultRun) report(keys []*faultKey) {
	t := r.t
	graceful := r.sc.graceful()
	var all deviationStats
	byKind := map[faultKind]*deviationStats{}
	var bad []string
	for _, k := range keys {
		d := k.deviation()
		all.add(d)
		faults := 0
		var history []string
		touched := map[faultKind]bool{}
		for i, ev := range r.events {
			owner, next := ownersAt(ev.ring(), k.name)
			if !ev.touches(owner, next) {
				continue
			}
			faults += ev.kind.faults()
			if byKind[ev.kind] == nil {
				byKind[ev.kind] = &deviationStats{}
			}
			if !touched[ev.kind] {
				byKind[ev.kind].add(d)
			}
			touched[ev.kind] = true
			history = append(history, fmt.Sprintf("#%d %s %s (owner %s, next %s)", i+1, ev.kind, ev.node, owner, next))
		}
		if d == 0 {
			continue
		}
		lo, hi := k.expected()
		owner, next := ownersAt(r.names(), k.name)
		line := fmt.Sprintf("%s %s %d/day: admitted %d of %d asked, want %d (%+d); fallbacks %d, errors %d; decided by %s; events on owner or next (partitions: all): %s; owner now %s, next %s",
			k.name, k.strategy, k.limit, k.admitted, k.demand, lo, d, k.fallbacks, k.errs, deciderList(k.deciders), orNone(history), owner, next)
		if lo != hi {
			line = strings.Replace(line, fmt.Sprintf("want %d", lo), fmt.Sprintf("want %d..%d", lo, hi), 1)
		}
		if graceful || abs64(d) > int64(faultSlack*faults) {
			bad = append(bad, fmt.Sprintf("%s; bound %d", line, faultSlack*faults))
		} else {
			t.Logf("within the bound: %s", line)
		}
	}

	var errs, resent, fallbacks, checks int64
	errsByKind := map[string]int64{}
	for i, tl := range r.load.tally {
		label := "before the first event"
		switch {
		case i == len(r.load.tally)-1:
			label = "after the last event"
		case i > 0:
			label = fmt.Sprintf("#%d %v", i, r.events[i-1])
		}
		errs, resent, fallbacks, checks = errs+tl.errs, resent+tl.resent, fallbacks+tl.fallbacks, checks+tl.checks
		if i > 0 && i < len(r.load.tally)-1 {
			errsByKind[r.events[i-1].kind.String()] += tl.errs
		} else {
			errsByKind["none"] += tl.errs
		}
		t.Logf("%s: %d checks, %d errors, %d resent after a closed connection, %d fallbacks, %s %s",
			label, tl.checks, tl.errs, tl.resent, tl.fallbacks, tl.latencies(), bodyList(tl.bodies))
	}
	kinds := ""
	for k := range faultKindNames {
		if s := byKind[faultKind(k)]; s != nil {
			kinds += fmt.Sprintf("; keys whose owner or next had a %s: %v", faultKind(k), s)
		}
	}
	t.Logf("SUMMARY %s seed %d: %d keys: %v, beyond the bound %d%s; %d checks, %d errors %v, %d resent, %d fallbacks, %d ticks dropped; %d events",
		r.sc.name, r.seed, len(keys), all, len(bad), kinds, checks, errs, errsByKind, resent, fallbacks, r.load.dropped, len(r.events))
	for _, b := range bad {
		t.Errorf("key %s", b)
	}
	if graceful && errs > 0 {
		t.Errorf("%d checks failed in a graceful schedule; want 0 (see the events above)", errs)
	}
}

// bodyList lists error texts with their counts.
func bodyList(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	var out []string
	for b, n := range m {
		out = append(out, fmt.Sprintf("%d× %s", n, b))
	}
	slices.Sort(out)
	return "[" + strings.Join(out, " | ") + "]"
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "; ")
}

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// ownersAt is a key's owner and successor on the ring of members.
func ownersAt(members []string, key string) (owner, successor string) {
	ms := make([]ring.Member, len(members))
	for i, m := range members {
		ms[i] = ring.Member{Name: m}
	}
	s := ring.New(ms, ring.Config{}).Successors(nodeapi.CheckKeyPrefix+key, 2)
	if len(s) > 0 {
		owner = s[0].Name
	}
	if len(s) > 1 {
		successor = s[1].Name
	}
	return owner, successor
}

// verifyOwners fails the test unless the ring the checker computes places
// every key where the cluster does: the checker's owner history is the
// cluster's.
func verifyOwners(t *testing.T, c *proctest.Cluster, p *proctest.Node, members []string, keys []*faultKey) {
	t.Helper()
	for _, k := range keys {
		want, _ := ownersAt(members, k.name)
		got, err := c.Owner(p, nodeapi.CheckKeyPrefix+k.name)
		if err != nil || got != want {
			t.Fatalf("%s places %s on %q (%v); the checker's ring of %v on %s", p.Name, k.name, got, err, members, want)
		}
	}
}

// deviationStats sums up the deviations of keys.
type deviationStats struct {
	exact, over, under int
	maxOver, maxUnder  int64
}

func (s *deviationStats) add(d int64) {
	switch {
	case d > 0:
		s.over++
		s.maxOver = max(s.maxOver, d)
	case d < 0:
		s.under++
		s.maxUnder = min(s.maxUnder, d)
	default:
		s.exact++
	}
}

func (s deviationStats) String() string {
	return fmt.Sprintf("exact %d, over %d (max +%d), under %d (max %d)", s.exact, s.over, s.maxOver, s.under, s.maxUnder)
}

// deciderList is a key's admissions by deciding node, sorted by name.
func deciderList(m map[string]int64) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, " %s:%d", n, m[n])
	}
	return strings.TrimSpace(b.String())
}
