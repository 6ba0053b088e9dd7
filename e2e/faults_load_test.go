//go:build linux

// The fault schedule's load: a client that spreads checks of many keys
// over the nodes as a load balancer does, counting what each event saw.

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ratemesh/ratemesh/internal/proctest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

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
	c       *proctest.Cluster
	keys    []*faultKey
	rate    int // checks a second, all nodes together
	event   atomic.Int32
	rr      atomic.Uint32
	mu      sync.Mutex
	pool    []*proctest.Node
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

func startLBLoad(c *proctest.Cluster, keys []*faultKey, pool []*proctest.Node, rate int) *lbLoad {
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
func (l *lbLoad) setPool(pool []*proctest.Node) {
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
		r         proctest.Reply
		err       error
		resent    int64
		sent      time.Time
		triedNode string
	)
	for i := range pool {
		p := pool[(start+i)%len(pool)]
		triedNode = p.Name
		sent = time.Now()
		r, err = l.c.Do(p, http.MethodPost, "/v1/check", strings.NewReader(k.body), "Content-Type", "application/json")
		if err == nil || !(errors.Is(err, syscall.ECONNREFUSED) || closedUnanswered(err)) {
			break
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			resent++
		}
	}
	done := time.Now()
	var a proctest.Answer
	switch {
	case err != nil:
		err = fmt.Errorf("%s: %w", triedNode, err)
	case r.Status != http.StatusOK:
		err = fmt.Errorf("%s: %d %s", triedNode, r.Status, strings.TrimSpace(string(r.Body)))
	case json.Unmarshal(r.Body, &a) != nil:
		err = fmt.Errorf("%s: unreadable answer %s", triedNode, r.Body)
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
