package rpc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/testkit"
)

// A check counts as given up once it took more than twice its Wait plus
// expirySlack longer than the connection's fastest; the two clocks' offset
// drops out, and the fastest lag stands for two windows.
func TestExpiryLate(t *testing.T) {
	const ms = time.Millisecond
	wait := 50 * ms
	limit := 2*wait + expirySlack // 150 ms
	offset := -time.Hour          // the caller's clock started an hour after the server's
	type step struct {
		now, sent time.Duration // by the server's clock, by the caller's
		wait      time.Duration
		late      time.Duration
		gone      bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"the first check sets the fastest", []step{{now: time.Hour, sent: time.Hour + offset, wait: wait, late: 0}}},
		{"no wait, no limit", []step{
			{now: time.Hour, sent: time.Hour + offset, wait: wait},
			{now: 2 * time.Hour, sent: time.Hour + offset, wait: 0, late: 0},
		}},
		{"slower within the limit", []step{
			{now: time.Hour, sent: time.Hour + offset, wait: wait},
			{now: time.Hour + 10*ms + limit, sent: time.Hour + offset + 10*ms, wait: wait, late: limit},
		}},
		{"paused past the limit", []step{
			{now: time.Hour, sent: time.Hour + offset, wait: wait},
			{now: time.Hour + 3*time.Second, sent: time.Hour + offset + 10*ms, wait: wait, late: 3*time.Second - 10*ms, gone: true},
		}},
		{"a pause across a window's end still measures from before it", []step{
			{now: time.Hour, sent: time.Hour + offset, wait: wait},
			{now: time.Hour + expiryWindow + time.Second, sent: time.Hour + offset + expiryWindow - 2*time.Second, wait: wait, late: 3 * time.Second, gone: true},
		}},
		{"a fastest older than two windows goes", []step{
			{now: time.Hour, sent: time.Hour + offset, wait: wait},
			{now: time.Hour + 2*expiryWindow, sent: time.Hour + offset + 2*expiryWindow - time.Second, wait: wait, late: 0},
		}},
		{"a faster check lowers the fastest", []step{
			{now: time.Hour, sent: time.Hour + offset - 20*ms, wait: wait},
			{now: time.Hour + ms, sent: time.Hour + offset + ms, wait: wait, late: 0},
			{now: time.Hour + 200*ms, sent: time.Hour + offset + 30*ms, wait: wait, late: 170 * ms, gone: true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var x expiry
			for i, s := range tc.steps {
				late, gone := x.late(s.now, &CheckRequest{Sent: s.sent, Wait: s.wait})
				if late != s.late || gone != s.gone {
					t.Fatalf("step %d: late %v, gone %v; want %v, %v", i, late, gone, s.late, s.gone)
				}
			}
		})
	}
}

// A server that stops reading (as a paused process does) and reads again
// drops the checks its callers gave up on meanwhile, unapplied: they were
// decided elsewhere. The reader stalls in a check's fast path, and 5 more
// checks, each waiting 5 ms, wait in its socket; read once it goes on,
// none reaches the handler. Applied, each would have counted twice.
func TestChecksReadAfterCallerGaveUpDropped(t *testing.T) {
	stalled, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	unstall := func() { once.Do(func() { close(release) }) }
	var handled atomic.Int64
	h := &fastHandler{testHandler: &testHandler{}}
	h.try = func(req *CheckRequest, resp *CheckResponse) (bool, error) {
		if req.Key == "stall" {
			close(stalled)
			<-release // the reader stops here: the next checks wait in the socket
		}
		handled.Add(1)
		resp.Node = req.Key
		return true, nil
	}
	ts := startServer(t, h, ServerConfig{})
	c, _ := newTestClient(t, ts.addr, ClientConfig{CallTimeout: 5 * time.Second})
	t.Cleanup(unstall) // before the server's stop, which waits for the reader
	ctx := context.Background()
	var resp CheckResponse
	if err := c.Check(ctx, sampleRequest("first", 1), &resp); err != nil {
		t.Fatal(err)
	}
	stalledErr := make(chan error, 1)
	go func() { stalledErr <- c.Check(ctx, sampleRequest("stall", 1), &CheckResponse{}) }()
	<-stalled
	const wait = 5 * time.Millisecond
	errs := make(chan error, 5)
	for i := range 5 {
		go func() {
			ctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			errs <- c.Check(ctx, sampleRequest(fmt.Sprint("waiting-", i), 1), &CheckResponse{})
		}()
	}
	for range 5 {
		if err := <-errs; !errors.Is(err, ErrUnavailable) {
			t.Fatalf("a check while the reader stalls: %v; want it to time out", err)
		}
	}
	// Expiry is about time gone by: the reader goes on once every waiting
	// check is past 2 × its wait + expirySlack.
	gaveUp := time.Now()
	testkit.Eventually(t, 5*time.Second, "the waiting checks past their limit", func() bool {
		return time.Since(gaveUp) > 2*wait+expirySlack+5*time.Millisecond
	})
	unstall()
	if err := <-stalledErr; err != nil {
		t.Fatalf("the check the reader stalled in: %v", err)
	}
	testkit.Eventually(t, 5*time.Second, "the 5 waiting checks read", func() bool {
		return handled.Load()+ts.ExpiredChecks() == 2+5
	})
	if n, x := handled.Load(), ts.ExpiredChecks(); n != 2 || x != 5 {
		t.Fatalf("the handler saw %d checks and %d were dropped; want 2 (first, stall) and 5: the checks that waited were applied", n, x)
	}
	ts.log.waitLog(t, "read after their callers gave up")
	if err := c.Check(ctx, sampleRequest("after", 1), &resp); err != nil || resp.Node != "after" {
		t.Fatalf("a check after the stall: %v %+v", err, resp)
	}
}
