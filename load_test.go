package ratemesh_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
)

// load sends checks of one key from one client per node, paced, and counts
// what the cluster admits.
type load struct {
	allowed, checks, fallbacks atomic.Int64
	errs                       atomic.Int64
	firstErr                   atomic.Value
	maxGap                     atomic.Int64 // longest wait for one answer, ns
	mu                         sync.Mutex
	byDecider                  map[string]int // admitted, by the node that decided

	stop chan struct{}
	wg   sync.WaitGroup
}

func startLoad(t *testing.T, nodes []*ratemesh.Node, key string, cs []bucket.Counter) *load {
	l := &load{stop: make(chan struct{}), byDecider: map[string]int{}}
	for _, n := range nodes {
		l.wg.Add(1)
		go func(n *ratemesh.Node) {
			defer l.wg.Done()
			req := ratemesh.Request{Key: key, Counters: cs, Cost: 1}
			// Paced, so that membership changes land mid-window: about
			// 2,000 checks a second per client.
			pace := time.NewTicker(500 * time.Microsecond)
			defer pace.Stop()
			for {
				select {
				case <-l.stop:
					return
				case <-pace.C:
				}
				start := time.Now()
				res, err := n.Check(context.Background(), req)
				if gap := int64(time.Since(start)); gap > l.maxGap.Load() {
					l.maxGap.Store(gap)
				}
				if errors.Is(err, ratemesh.ErrClosed) {
					return // this client's node left; the client goes too
				}
				l.checks.Add(1)
				if err != nil {
					if l.errs.Add(1) == 1 {
						l.firstErr.Store(err)
					}
					continue
				}
				if res.Fallback {
					l.fallbacks.Add(1)
				}
				if res.Allowed {
					l.allowed.Add(1)
					l.mu.Lock()
					l.byDecider[res.Node]++
					l.mu.Unlock()
				}
			}
		}(n)
	}
	t.Cleanup(l.finish)
	return l
}

// waitChecks waits until n more checks were answered.
func (l *load) waitChecks(t *testing.T, n int64) {
	t.Helper()
	want := l.checks.Load() + n
	eventually(t, 30*time.Second, fmt.Sprintf("load did not reach %d checks", want), func() bool { return l.checks.Load() >= want })
}

// waitAllowed waits until at least n checks were admitted.
func (l *load) waitAllowed(t *testing.T, n int64) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("load did not admit %d", n), func() bool { return l.allowed.Load() >= n })
}

func (l *load) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func (l *load) report(t *testing.T) {
	l.finish()
	var first any
	if v := l.firstErr.Load(); v != nil {
		first = v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("checks %d, admitted %d (by deciding node: %v), fallbacks %d, errors %d (first: %v), longest answer %v",
		l.checks.Load(), l.allowed.Load(), l.byDecider, l.fallbacks.Load(), l.errs.Load(), first, time.Duration(l.maxGap.Load()))
}
