package rpc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// fastHandler adds a fast path to a testHandler.
type fastHandler struct {
	*testHandler
	try func(req *CheckRequest, resp *CheckResponse) (bool, error)
}

func (h *fastHandler) TryCheck(req *CheckRequest, resp *CheckResponse) (bool, error) {
	return h.try(req, resp)
}

// A check whose handler blocks, without telling anyone, does not delay the
// other calls of its connection; it still gets its own answer.
func TestSlowCheckDoesNotStallConnection(t *testing.T) {
	release := make(chan struct{})
	blocked := make(chan struct{})
	h := &testHandler{}
	h.check = func(ctx context.Context, req *CheckRequest, resp *CheckResponse) error {
		if req.Key == "slow" {
			close(blocked)
			<-release
		}
		return echoCheck(ctx, req, resp)
	}
	ts := startServer(t, h, ServerConfig{})
	c, _ := newTestClient(t, ts.addr, ClientConfig{CallTimeout: 10 * time.Second})
	slow := make(chan error, 1)
	var slowResp CheckResponse
	go func() { slow <- c.Check(context.Background(), sampleRequest("slow", 2), &slowResp) }()
	<-blocked
	ctx := context.Background()
	for i := range 100 {
		var resp CheckResponse
		key := fmt.Sprint("fast-", i)
		if err := c.Check(ctx, sampleRequest(key, 1), &resp); err != nil || resp.Node != key {
			t.Fatalf("check behind a blocked one: %v %+v", err, resp)
		}
	}
	if err := c.Reset(ctx, "other"); err != nil {
		t.Fatalf("reset behind a blocked check: %v", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping behind a blocked check: %v", err)
	}
	close(release)
	if err := <-slow; err != nil || slowResp.Node != "slow" || slowResp.Statuses[0].Remaining != 8 {
		t.Fatalf("slow check: %v %+v", err, slowResp)
	}
}

// A check the fast path declines reaches Check with a clean response, even
// when TryCheck wrote into it first, and the fast path's answers and
// errors reach the caller as they were given.
func TestFastPathDeclinesAndErrors(t *testing.T) {
	th := &testHandler{}
	h := &fastHandler{testHandler: th, try: func(req *CheckRequest, resp *CheckResponse) (bool, error) {
		switch req.Key {
		case "decline":
			resp.Allowed = true
			resp.Node = "junk"
			resp.Statuses = append(resp.Statuses, bucket.Status{Remaining: -1})
			return false, nil
		case "fast-error":
			return true, errors.New("bucket: store full")
		}
		resp.Allowed, resp.Node = true, "fast"
		return true, nil
	}}
	th.check = func(ctx context.Context, req *CheckRequest, resp *CheckResponse) error {
		if resp.Allowed || resp.Node != "" || len(resp.Statuses) != 0 {
			return fmt.Errorf("Check got a used response: %+v", resp)
		}
		return echoCheck(ctx, req, resp)
	}
	ts := startServer(t, h, ServerConfig{})
	c, _ := newTestClient(t, ts.addr, ClientConfig{})
	ctx := context.Background()
	for range 3 {
		var resp CheckResponse
		if err := c.Check(ctx, sampleRequest("decline", 1), &resp); err != nil || resp.Node != "decline" || len(resp.Statuses) != 2 || resp.Statuses[0].Remaining != 9 {
			t.Fatalf("declined check: %v %+v", err, resp)
		}
		var re *RemoteError
		if err := c.Check(ctx, sampleRequest("fast-error", 1), &resp); !errors.As(err, &re) || re.Msg != "bucket: store full" {
			t.Fatalf("fast-path error = %v, want RemoteError %q", err, "bucket: store full")
		}
		if err := c.Check(ctx, sampleRequest("k", 1), &resp); err != nil || resp.Node != "fast" {
			t.Fatalf("fast check: %v %+v", err, resp)
		}
	}
}

// At most maxCalls checks of one connection run at once; the reader waits
// for a free slot rather than starting more, and every check is answered.
func TestCheckGoroutineBound(t *testing.T) {
	var running, peak atomic.Int64
	release := make(chan struct{})
	h := &testHandler{}
	h.check = func(ctx context.Context, req *CheckRequest, resp *CheckResponse) error {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		running.Add(-1)
		return echoCheck(ctx, req, resp)
	}
	ts := startServer(t, h, ServerConfig{})
	c, _ := newTestClient(t, ts.addr, ClientConfig{CallTimeout: 30 * time.Second})
	const calls = maxCalls + 1
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Go(func() {
			var resp CheckResponse
			key := fmt.Sprint("k", i)
			if err := c.Check(context.Background(), sampleRequest(key, 1), &resp); err != nil || resp.Node != key {
				errs <- fmt.Errorf("check %s: %v %+v", key, err, resp)
			}
		})
	}
	testkit.Eventually(t, 5*time.Second, "a reader waiting with every slot taken", func() bool { return ts.callWaits.Load() > 0 && running.Load() == maxCalls })
	if got := peak.Load(); got != maxCalls {
		t.Fatalf("%d checks ran at once, want %d", got, maxCalls)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := peak.Load(); got != maxCalls {
		t.Fatalf("%d checks ran at once, want at most %d", got, maxCalls)
	}
}
