package testkit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Outcome is one answered check as a load sees it.
type Outcome struct {
	Allowed  bool
	Fallback bool   // decided by the fail policy
	Node     string // the node that decided
}

// CheckFunc makes one check of the load's key. It returns ErrGone when
// the node it asks has left: its client then stops.
type CheckFunc func(ctx context.Context) (Outcome, error)

// ErrGone ends a load client (its node left the cluster).
var ErrGone = fmt.Errorf("testkit: node gone")

// Load sends checks of one key from one client per CheckFunc, paced at
// about 2,000 a second each so that membership changes land mid-window,
// and counts what the cluster admits.
type Load struct {
	Allowed, Checks, Fallbacks, Errs atomic.Int64
	firstErr                         atomic.Value
	maxGap                           atomic.Int64 // longest wait for one answer, ns
	mu                               sync.Mutex
	byDecider                        map[string]int // admitted, by the node that decided

	stop chan struct{}
	wg   sync.WaitGroup
}

// StartLoad starts one client per check function; the load stops when the
// test ends, or at Report.
func StartLoad(t testing.TB, clients []CheckFunc) *Load {
	l := &Load{stop: make(chan struct{}), byDecider: map[string]int{}}
	for _, check := range clients {
		l.wg.Add(1)
		go l.client(check)
	}
	t.Cleanup(l.finish)
	return l
}

func (l *Load) client(check CheckFunc) {
	defer l.wg.Done()
	Paced(l.stop, 500*time.Microsecond, func() bool {
		start := time.Now()
		out, err := check(context.Background())
		if gap := int64(time.Since(start)); gap > l.maxGap.Load() {
			l.maxGap.Store(gap)
		}
		if err == ErrGone {
			return false
		}
		l.Checks.Add(1)
		if err != nil {
			if l.Errs.Add(1) == 1 {
				l.firstErr.Store(err)
			}
			return true
		}
		if out.Fallback {
			l.Fallbacks.Add(1)
		}
		if out.Allowed {
			l.Allowed.Add(1)
			l.mu.Lock()
			l.byDecider[out.Node]++
			l.mu.Unlock()
		}
		return true
	})
}

// Paced calls tick once every interval until stop is closed or tick
// returns false. A tick that takes longer than interval delays the next;
// the ticks missed meanwhile are dropped, so the pace never bursts.
func Paced(stop <-chan struct{}, interval time.Duration, tick func() bool) {
	pace := time.NewTicker(interval)
	defer pace.Stop()
	for {
		select {
		case <-stop:
			return
		case <-pace.C:
		}
		if !tick() {
			return
		}
	}
}

// WaitChecks waits until n more checks were answered.
func (l *Load) WaitChecks(t testing.TB, n int64) {
	t.Helper()
	want := l.Checks.Load() + n
	Eventually(t, 30*time.Second, fmt.Sprintf("load did not reach %d checks", want), func() bool { return l.Checks.Load() >= want })
}

// WaitAllowed waits until at least n checks were admitted.
func (l *Load) WaitAllowed(t testing.TB, n int64) {
	t.Helper()
	Eventually(t, 30*time.Second, fmt.Sprintf("load did not admit %d", n), func() bool { return l.Allowed.Load() >= n })
}

// MaxGap is the longest any one check waited for its answer.
func (l *Load) MaxGap() time.Duration { return time.Duration(l.maxGap.Load()) }

func (l *Load) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// Report stops the load and logs what it saw.
func (l *Load) Report(t testing.TB) {
	t.Helper()
	l.finish()
	var first any
	if v := l.firstErr.Load(); v != nil {
		first = v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("checks %d, admitted %d (by deciding node: %v), fallbacks %d, errors %d (first: %v), longest answer %v",
		l.Checks.Load(), l.Allowed.Load(), l.byDecider, l.Fallbacks.Load(), l.Errs.Load(), first, l.MaxGap())
}
