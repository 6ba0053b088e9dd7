//go:build linux

// The fault schedule's load and its checker: a client that spreads checks
// of many keys over the nodes as a load balancer does, and a ledger per key
// that compares what the cluster admitted with the limit.

package ratemesh_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/testkit"
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
		b, _ := json.Marshal(httpapi.CheckRequest{Key: k.name, Limits: fmt.Sprintf("%d per day", k.limit), Strategy: k.strategy})
		k.body = string(b)
		keys[i] = k
	}
	return keys
}

// eventTally is what the load saw while one event ran (event 0: before
// the first).
type eventTally struct {
	checks, errs, resent, fallbacks int64
	bodies                          map[string]int // error text → count
	took                            []time.Duration
}

// latencies is the median, 99th percentile and longest of the checks'
// times to answer (resends included).
func (tl *eventTally) latencies() string {
	if len(tl.took) == 0 {
		return "no answers"
	}
	slices.Sort(tl.took)
	q := func(f float64) time.Duration {
		return tl.took[int(f*float64(len(tl.took)-1))].Round(100 * time.Microsecond)
	}
	return fmt.Sprintf("answered in %v / %v / %v (p50 / p99 / max)", q(0.5), q(0.99), q(1))
}

// lbLoad checks keys at a bounded pace through a pool of nodes, as a load
// balancer would: a node that refuses the connection, or closes it without
// an answer, is skipped for the next one; any other failure and any answer
// but 200 is an error of the check, kept with its body.
type lbLoad struct {
	c       *procCluster
	keys    []*faultKey
	rate    int // checks a second, all nodes together
	event   atomic.Int32
	rr      atomic.Uint32
	mu      sync.Mutex
	pool    []*nodeProc
	tally   []*eventTally // by event
	want    []*faultKey   // the keys the load cycles over
	next    int
	dropped int64 // ticks with every worker busy

	stop chan struct{}
	wg   sync.WaitGroup
}

// lbWorkers bounds the checks in flight: a paused node holds those sent
// to it until it runs again, and the pace drops meanwhile.
const lbWorkers = 256

func startLBLoad(c *procCluster, keys []*faultKey, pool []*nodeProc, rate int) *lbLoad {
	l := &lbLoad{c: c, keys: keys, rate: rate, pool: slices.Clone(pool), want: keys, stop: make(chan struct{}),
		tally: []*eventTally{{bodies: map[string]int{}}}}
	work := make(chan *faultKey)
	for range lbWorkers {
		l.wg.Go(func() {
			for k := range work {
				l.check(k)
			}
		})
	}
	l.wg.Go(func() {
		defer close(work)
		testkit.Paced(l.stop, time.Second/time.Duration(rate), func() bool {
			l.mu.Lock()
			var k *faultKey
			if len(l.want) > 0 {
				k = l.want[l.next%len(l.want)]
				l.next++
			}
			l.mu.Unlock()
			if k == nil {
				return true
			}
			select {
			case work <- k:
			default:
				l.mu.Lock()
				l.dropped++
				l.mu.Unlock()
			}
			return true
		})
	})
	return l
}

// stopLoad stops the load and waits for the checks in flight.
func (l *lbLoad) stopLoad() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// setPool replaces the nodes the load balancer sends to.
func (l *lbLoad) setPool(pool []*nodeProc) {
	l.mu.Lock()
	l.pool = slices.Clone(pool)
	l.mu.Unlock()
}

// beginEvent makes later checks count against a new event.
func (l *lbLoad) beginEvent() {
	l.mu.Lock()
	l.tally = append(l.tally, &eventTally{bodies: map[string]int{}})
	l.event.Store(int32(len(l.tally) - 1))
	l.mu.Unlock()
}

// topUp narrows the load to the keys whose demand is short of their limit
// and margin more, and reports how many there are.
func (l *lbLoad) topUp(margin int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.want = l.want[:0:0]
	for _, k := range l.keys {
		if _, hi := k.allowance(); k.demand < hi+margin {
			l.want = append(l.want, k)
		}
	}
	return len(l.want)
}

// check sends one check of k, skipping nodes as a load balancer does.
func (l *lbLoad) check(k *faultKey) {
	ev := l.event.Load()
	l.mu.Lock()
	pool := l.pool
	l.mu.Unlock()
	start := int(l.rr.Add(1))
	began := time.Now()
	var (
		r         httpReply
		err       error
		resent    int64
		sent      time.Time
		triedNode string
	)
	for i := range pool {
		p := pool[(start+i)%len(pool)]
		triedNode = p.name
		sent = time.Now()
		r, err = l.c.do(p, http.MethodPost, "/v1/check", strings.NewReader(k.body), "Content-Type", "application/json")
		if err == nil || !(errors.Is(err, syscall.ECONNREFUSED) || closedUnanswered(err)) {
			break
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			resent++
		}
	}
	done := time.Now()
	var a apiAnswer
	switch {
	case err != nil:
		err = fmt.Errorf("%s: %w", triedNode, err)
	case r.status != http.StatusOK:
		err = fmt.Errorf("%s: %d %s", triedNode, r.status, strings.TrimSpace(string(r.body)))
	case json.Unmarshal(r.body, &a) != nil:
		err = fmt.Errorf("%s: unreadable answer %s", triedNode, r.body)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	tl := l.tally[ev]
	tl.checks++
	tl.resent += resent
	tl.took = append(tl.took, done.Sub(began))
	if err != nil {
		tl.errs++
		k.errs++
		msg := err.Error()
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		tl.bodies[msg]++
		return
	}
	k.demand++
	k.lastSent, k.lastDone = sent, done
	if a.Fallback {
		k.fallbacks++
		tl.fallbacks++
	}
	if a.Allowed {
		if k.admitted == 0 {
			k.firstSent, k.firstDone = sent, done
		}
		k.admitted++
		k.deciders[a.Node]++
	}
}

// closedUnanswered tells a connection the node closed, or reset, before
// any answer: a load balancer sends the check to the next node. If the
// node had read and counted it, the key's count shows one more than its
// demand.
func closedUnanswered(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		strings.Contains(err.Error(), "server closed idle connection")
}

// ownersAt is a key's owner and successor on the ring of members.
func ownersAt(members []string, key string) (owner, successor string) {
	ms := make([]ring.Member, len(members))
	for i, m := range members {
		ms[i] = ring.Member{Name: m}
	}
	s := ring.New(ms, ring.Config{}).Successors(httpapi.CheckKeyPrefix+key, 2)
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
func verifyOwners(t *testing.T, c *procCluster, p *nodeProc, members []string, keys []*faultKey) {
	t.Helper()
	for _, k := range keys {
		want, _ := ownersAt(members, k.name)
		got, err := c.owner(p, httpapi.CheckKeyPrefix+k.name)
		if err != nil || got != want {
			t.Fatalf("%s places %s on %q (%v); the checker's ring of %v on %s", p.name, k.name, got, err, members, want)
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
