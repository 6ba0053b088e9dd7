//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/proctest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// crashForwardTimeout is the nodes' forward timeout in the crash test: far
// longer than any answer takes on a busy machine (10 ms measured), so that
// an answer that waited it out on the dead owner stands out, and no
// healthy one comes near it however slow the machine.
const crashForwardTimeout = 10 * time.Second

// The owner of a key at 1000 per minute is SIGKILLed mid-window, ~600
// spent, while 100 checks a second arrive through the two other node
// processes. With --replicas 1 (the default) the next owner continues
// from its replica: at most the limit and 1 % are admitted over the
// window, no client sees an error, and no answer waits out the forward
// timeout: the askers fail over at once on the dead owner's closed
// connections.
func TestOwnerCrashMidWindow(t *testing.T) {
	c := proctest.NewCluster(t, nodeBinary(t))
	c.ExtraArgs = func(*proctest.Node) []string {
		return []string{"--replicas", "1", "--forward-timeout", crashForwardTimeout.String()}
	}
	for range 3 {
		c.StartNext(t)
	}
	c.WaitMembers(t, 20*time.Second, time.Now(), c.Nodes)
	owner, asking := c.Nodes[2], c.Nodes[:2]
	key := c.KeyOwnedBy(t, "crash", owner)
	body := fmt.Sprintf(`{"key":%q,"limits":"1000 per minute","cost":1}`, key)

	var allowed, checks, errs atomic.Int64
	var slowest atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range asking {
		wg.Go(func() {
			testkit.Paced(stop, 20*time.Millisecond, func() bool { // 50 a second from each
				start := time.Now()
				r, err := c.Do(p, http.MethodPost, "/v1/check", strings.NewReader(body), "Content-Type", "application/json")
				took := time.Since(start)
				for s := slowest.Load(); int64(took) > s && !slowest.CompareAndSwap(s, int64(took)); s = slowest.Load() {
				}
				checks.Add(1)
				var a proctest.Answer
				if err != nil || r.Status != http.StatusOK || json.Unmarshal(r.Body, &a) != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %v %d %s", p.Name, err, r.Status, r.Body))
					return true
				}
				if a.Allowed {
					allowed.Add(1)
				}
				return true
			})
		})
	}
	testkit.Eventually(t, 30*time.Second, "600 admitted", func() bool { return allowed.Load() >= 600 })
	c.Signal(t, owner, syscall.SIGKILL, 10*time.Second)
	killedAt := allowed.Load()
	testkit.Eventually(t, 30*time.Second, "1,200 checks", func() bool { return checks.Load() >= 1200 })
	close(stop)
	wg.Wait()
	t.Logf("owner killed at %d admitted; %d of %d admitted over the window, %d errors (first: %v), slowest answer %v",
		killedAt, allowed.Load(), checks.Load(), errs.Load(), firstErr.Load(), time.Duration(slowest.Load()).Round(time.Millisecond))
	if errs.Load() != 0 {
		t.Errorf("%d checks failed (first: %v)", errs.Load(), firstErr.Load())
	}
	if got := allowed.Load(); got > 1010 {
		t.Errorf("%d admitted over the window; want at most 1,010 (the limit and 1 %%)", got)
	}
	if s := time.Duration(slowest.Load()); s >= crashForwardTimeout {
		t.Errorf("the slowest answer took %v, the whole forward timeout: a check waited on the dead owner", s)
	}
}
