package rpc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

func bufioReader(nc net.Conn) *bufio.Reader { return bufio.NewReader(nc) }

func TestRoundTrip(t *testing.T) {
	h := &testHandler{}
	ts := startServer(t, h, ServerConfig{})
	c, _ := newTestClient(t, ts.addr, ClientConfig{CallTimeout: 5 * time.Second})
	ctx := context.Background()

	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	var resp CheckResponse
	if err := c.Check(ctx, sampleRequest("ip:1.2.3.4", 3), &resp); err != nil {
		t.Fatalf("Check: %v", err)
	}
	want := CheckResponse{Allowed: true, Node: "ip:1.2.3.4", Statuses: []bucket.Status{
		{Limit: limit(10, time.Minute), Remaining: 7, Reset: epoch.Add(time.Minute)},
		{Limit: limit(200, 24*time.Hour), Remaining: 197, Reset: epoch.Add(24 * time.Hour)},
	}}
	assertResponse(t, &resp, &want)

	// Denied, a zero Reset, and resp reused with a longer Statuses.
	h.check = func(ctx context.Context, req *CheckRequest, resp *CheckResponse) error {
		resp.Node = "n2"
		resp.Statuses = append(resp.Statuses, bucket.Status{Limit: req.Counters[0].Limit, Remaining: 0, RetryAfter: bucket.RetryNever})
		return nil
	}
	req := &CheckRequest{Key: "k", Cost: 0, Counters: []bucket.Counter{{Scope: "", Limit: limit(0, time.Second), Strategy: bucket.TokenBucket}}}
	if err := c.Check(ctx, req, &resp); err != nil {
		t.Fatalf("Check: %v", err)
	}
	assertResponse(t, &resp, &CheckResponse{Node: "n2", Statuses: []bucket.Status{{Limit: limit(0, time.Second), RetryAfter: bucket.RetryNever}}})
	h.check = nil

	// A handler error is a *RemoteError, not ErrUnavailable.
	err := c.Check(ctx, &CheckRequest{Key: "fail"}, &resp)
	var re *RemoteError
	if !errors.As(err, &re) || re.Msg != "bucket: invalid counter" || errors.Is(err, ErrUnavailable) {
		t.Fatalf("Check(fail) = %v, want RemoteError", err)
	}

	if err := c.Reset(ctx, "user:42"); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if err := c.Reset(ctx, "fail"); !errors.As(err, &re) || re.Msg != "reset refused" {
		t.Fatalf("Reset(fail) = %v, want RemoteError", err)
	}

	entries := []bucket.Entry{
		{Key: "ip:1.1.1.1", Counters: []bucket.CounterState{
			{Counter: bucket.Counter{Scope: "a", Limit: limit(5, time.Minute)}, Start: 1, Count: 3},
			{Counter: bucket.Counter{Scope: "b", Limit: limit(5, time.Hour), Strategy: bucket.MovingWindow}, Hits: []int64{10, 20, 30}},
		}},
		{Key: "user:7", Counters: []bucket.CounterState{
			{Counter: bucket.Counter{Scope: "c", Limit: limit(9, time.Second), Strategy: bucket.TokenBucket}},
		}},
	}
	// Each of the three ops that carry counts reaches its own handler
	// method with its own fields.
	sent := []any{
		MergeRequest{From: "n1", BaseIncarnation: 1<<62 + 1, Bases: entries, Entries: entries},
		MergeRequest{From: "n1", FillIn: true, Entries: entries},
		MergeRequest{From: "n1", Beside: true, Entries: entries},
		ReplicaRequest{From: "n2", Incarnation: 1 << 63, Entries: entries[:1]},
		RefundRequest{From: "n3", Hops: 2, Entries: entries[1:]},
	}
	for _, req := range sent {
		var err error
		switch req := req.(type) {
		case MergeRequest:
			err = c.Merge(ctx, &req)
		case ReplicaRequest:
			err = c.Replicate(ctx, &req)
		case RefundRequest:
			err = c.Refund(ctx, &req)
		}
		if err != nil {
			t.Fatalf("%T: %v", req, err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !reflect.DeepEqual(h.counts, sent) {
		t.Errorf("received %+v, want %+v", h.counts, sent)
	}
	if !reflect.DeepEqual(h.resets, []string{"user:42"}) {
		t.Errorf("resets %q", h.resets)
	}
}

func assertResponse(t *testing.T, got, want *CheckResponse) {
	t.Helper()
	if got.Allowed != want.Allowed || got.Node != want.Node || len(got.Statuses) != len(want.Statuses) {
		t.Fatalf("response %+v, want %+v", got, want)
	}
	for i := range got.Statuses {
		g, w := got.Statuses[i], want.Statuses[i]
		if g.Limit != w.Limit || g.Remaining != w.Remaining || !g.Reset.Equal(w.Reset) || g.RetryAfter != w.RetryAfter {
			t.Fatalf("status %d = %+v, want %+v", i, g, w)
		}
	}
}

// Many goroutines share one connection; each gets the answer to its own
// request.
func TestConcurrentCalls(t *testing.T) {
	ts := startServer(t, &testHandler{}, ServerConfig{})
	c, _ := newTestClient(t, ts.addr, ClientConfig{CallTimeout: 10 * time.Second})
	const workers, calls = 64, 200
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp CheckResponse
			for i := range calls {
				key := fmt.Sprintf("w%d-%d", w, i)
				cost := int64(i % 12)
				if err := c.Check(context.Background(), sampleRequest(key, cost), &resp); err != nil {
					errs <- err
					return
				}
				if resp.Node != key || resp.Statuses[0].Remaining != 10-cost || resp.Allowed != (cost <= 10) {
					errs <- fmt.Errorf("request %s cost %d got %+v", key, cost, resp)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ts.mu.Lock()
	n := len(ts.conns)
	ts.mu.Unlock()
	if n != 1 {
		t.Errorf("server has %d connections, want 1", n)
	}
}

// After the server goes away the client fails fast with ErrUnavailable,
// then redials once a server listens on the address again.
func TestServerRestartRedial(t *testing.T) {
	ts := startServer(t, &testHandler{}, ServerConfig{})
	c, clog := newTestClient(t, ts.addr, ClientConfig{})
	ctx := context.Background()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	ts.stop(t)
	testkit.Eventually(t, 5*time.Second, "ping to fail", func() bool { return errors.Is(c.Ping(ctx), ErrUnavailable) })
	clog.waitLog(t, "connection to peer lost")

	startServer(t, &testHandler{}, ServerConfig{}, ts.addr)
	testkit.Eventually(t, 5*time.Second, "redial", func() bool { return c.Ping(ctx) == nil })
	var resp CheckResponse
	if err := c.Check(ctx, sampleRequest("k", 1), &resp); err != nil || resp.Node != "k" {
		t.Fatalf("Check after redial: %v %+v", err, resp)
	}
}

// A handler that does not answer: the call returns at its deadline (the
// client's CallTimeout, or an earlier context deadline) with ErrUnavailable,
// and the client recovers on a fresh connection.
func TestCallDeadline(t *testing.T) {
	release := make(chan struct{})
	h := &testHandler{}
	h.check = func(ctx context.Context, req *CheckRequest, resp *CheckResponse) error {
		if req.Key == "block" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return echoCheck(ctx, req, resp)
	}
	ts := startServer(t, h, ServerConfig{})
	defer close(release)
	const timeout = 50 * time.Millisecond
	c, _ := newTestClient(t, ts.addr, ClientConfig{CallTimeout: timeout})
	var resp CheckResponse
	if err := c.Check(context.Background(), sampleRequest("ok", 1), &resp); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	err := c.Check(context.Background(), sampleRequest("block", 1), &resp)
	took := time.Since(start)
	// The call's own timer ended it (the handler still blocks), and not
	// before its deadline: bounds by cause, which no slow machine breaks.
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errTimeout) {
		t.Fatalf("blocked Check = %v, want ErrUnavailable of the call timing out", err)
	}
	if took < timeout {
		t.Errorf("blocked Check returned after %v, before its timeout of %v", took, timeout)
	}

	// An earlier context deadline wins, and is reported. On a client whose
	// own timeout is a minute: with 50 ms, a loaded machine that ran the
	// call late saw both expired, and either could be reported (1 in 16).
	testkit.Eventually(t, 5*time.Second, "recovery", func() bool { return c.Ping(context.Background()) == nil })
	slow, _ := newTestClient(t, ts.addr, ClientConfig{CallTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	err = slow.Check(ctx, sampleRequest("block", 1), &resp)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errTimeout) {
		t.Fatalf("Check with ctx deadline = %v, want ErrUnavailable of the context's deadline, not of the call's timeout", err)
	}

	// A cancelled context returns at once without sending.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if err := c.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Ping(cancelled) = %v", err)
	}
	testkit.Eventually(t, 5*time.Second, "recovery", func() bool { return c.Check(context.Background(), sampleRequest("ok", 1), &resp) == nil })
}

// Calls in flight fail promptly when the connection dies or the client
// closes, not at their deadline.
func TestPendingCallsFailPromptly(t *testing.T) {
	for _, kill := range []string{"server", "client"} {
		t.Run(kill, func(t *testing.T) {
			entered := make(chan struct{}, 16)
			h := &testHandler{}
			h.check = func(ctx context.Context, req *CheckRequest, resp *CheckResponse) error {
				entered <- struct{}{}
				<-ctx.Done()
				return ctx.Err()
			}
			ts := startServer(t, h, ServerConfig{})
			c, _ := newTestClient(t, ts.addr, ClientConfig{CallTimeout: time.Minute})
			const n = 8
			errs := make(chan error, n)
			for range n {
				go func() {
					var resp CheckResponse
					errs <- c.Check(context.Background(), sampleRequest("k", 1), &resp)
				}()
			}
			<-entered // the first check is in the handler; the others queue behind it
			if kill == "server" {
				ts.stop(t)
			} else {
				c.Close()
			}
			for range n {
				// Failed by the connection's end, not by the timeout of
				// a minute: that is promptly, however slow the machine.
				if err := <-errs; !errors.Is(err, ErrUnavailable) || errors.Is(err, errTimeout) {
					t.Errorf("pending call = %v, want ErrUnavailable, not by its timeout", err)
				}
			}
			if kill == "client" {
				if err := c.Ping(context.Background()); !errors.Is(err, ErrClosed) {
					t.Errorf("Ping after Close = %v, want ErrClosed", err)
				}
			}
		})
	}
}

func TestDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c, clog := newTestClient(t, addr, ClientConfig{})
	for range 3 {
		if err := c.Ping(context.Background()); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Ping = %v, want ErrUnavailable", err)
		}
	}
	clog.waitLog(t, "dial failed")
}

// A client in the backoff of a failed dial is told its peer answers again
// (Redial): the next call dials at once. Until then each call fails unsent
// with the old dial's error, though the peer listens again (a restarted
// node's successor could not hand its replicas back for up to a second).
func TestRedialSkipsBackoff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, _ := newTestClient(t, addr, ClientConfig{})
	if err := c.Ping(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping with nothing listening = %v, want ErrUnavailable", err)
	}
	c.mu.Lock()
	c.retryAt = time.Now().Add(time.Hour) // a backoff no test outlasts
	c.mu.Unlock()
	startServer(t, &testHandler{}, ServerConfig{}, addr)
	if err := c.Ping(context.Background()); !errors.Is(err, ErrNotSent) {
		t.Fatalf("Ping in the backoff = %v, want the last dial's error, unsent", err)
	}
	c.Redial()
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("Ping after Redial = %v, want nil", err)
	}
}

func TestMergeTooLarge(t *testing.T) {
	ts := startServer(t, &testHandler{}, ServerConfig{})
	c, _ := newTestClient(t, ts.addr, ClientConfig{MaxFrame: 1024})
	req := &MergeRequest{}
	for i := range 100 {
		req.Entries = append(req.Entries, bucket.Entry{Key: fmt.Sprint("key-", i), Counters: []bucket.CounterState{{Counter: bucket.Counter{Scope: "s", Limit: limit(1, time.Second)}}}})
	}
	err := c.Merge(context.Background(), req)
	if !errors.Is(err, ErrTooLarge) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("Merge = %v, want ErrTooLarge", err)
	}
	if err := c.Merge(context.Background(), &MergeRequest{Entries: req.Entries[:2]}); err != nil {
		t.Fatalf("small Merge: %v", err)
	}
}

// A response larger than the client's cap closes the connection; the
// server's check response larger than its own cap becomes an error.
func TestResponseTooLarge(t *testing.T) {
	h := &testHandler{}
	h.check = func(ctx context.Context, req *CheckRequest, resp *CheckResponse) error {
		resp.Node = string(make([]byte, 2000))
		return nil
	}
	ts := startServer(t, h, ServerConfig{MaxFrame: 1024})
	c, _ := newTestClient(t, ts.addr, ClientConfig{})
	var resp CheckResponse
	err := c.Check(context.Background(), sampleRequest("k", 1), &resp)
	var re *RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("Check = %v, want RemoteError", err)
	}
}

// A merge far larger than the read buffer arrives whole.
func TestLargeMerge(t *testing.T) {
	h := &testHandler{}
	ts := startServer(t, h, ServerConfig{})
	c, _ := newTestClient(t, ts.addr, ClientConfig{})
	var entries []bucket.Entry
	for i := range 2000 {
		hits := make([]int64, 50)
		for j := range hits {
			hits[j] = int64(1_700_000_000_000_000_000 + i*1000 + j)
		}
		entries = append(entries, bucket.Entry{Key: fmt.Sprint("ip:10.0.", i), Counters: []bucket.CounterState{
			{Counter: bucket.Counter{Scope: "GET /products", Limit: limit(100, time.Minute), Strategy: bucket.MovingWindow}, Hits: hits},
		}})
	}
	if err := c.Merge(context.Background(), &MergeRequest{Entries: entries}); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !reflect.DeepEqual(h.merged, entries) {
		t.Fatalf("merged %d entries, not equal to the %d sent", len(h.merged), len(entries))
	}
}

func TestTakeAndHops(t *testing.T) {
	ts := startServer(t, &testHandler{}, ServerConfig{})
	c, _ := newTestClient(t, ts.addr, ClientConfig{})
	ctx := context.Background()
	r, err := c.Take(ctx, &TakeRequest{Key: "ip:1", To: "n2", ToAddr: "10.0.0.2:7946"})
	want := bucket.Entry{Key: "ip:1", Counters: []bucket.CounterState{{Counter: bucket.Counter{Scope: "s", Limit: limit(5, time.Minute)}, Start: 1, Count: 15}}}
	if err != nil || !r.Found || r.Supersedes || !reflect.DeepEqual(r.Entry, want) {
		t.Fatalf("Take = %+v, %v; want %+v", r, err, want)
	}
	if r, err := c.Take(ctx, &TakeRequest{Key: "mine"}); err != nil || !r.Found || !r.Supersedes {
		t.Fatalf("Take(mine) = %+v, %v; want found and superseding", r, err)
	}
	if r, err := c.Take(ctx, &TakeRequest{Key: "none"}); err != nil || r.Found || r.Entry.Key != "" {
		t.Fatalf("Take(none) = %+v, %v", r, err)
	}
	var re *RemoteError
	if _, err := c.Take(ctx, &TakeRequest{Key: "fail"}); !errors.As(err, &re) {
		t.Fatalf("Take(fail) = %v, want RemoteError", err)
	}
	req := sampleRequest("k", 1)
	req.Hops = 1
	var resp CheckResponse
	if err := c.Check(ctx, req, &resp); err != nil || resp.Node != "k/1" {
		t.Fatalf("Check with Hops 1: node %q, %v", resp.Node, err)
	}
}
