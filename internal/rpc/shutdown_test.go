package rpc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/testkit"
)

// heldHandler applies each check (notes its key) and then holds it until
// released or its context ends.
type heldHandler struct {
	testHandler
	release chan struct{}
	mu      sync.Mutex
	applied map[string]bool
	entered atomic.Int64
}

func newHeldHandler() *heldHandler {
	return &heldHandler{release: make(chan struct{}), applied: map[string]bool{}}
}

func (h *heldHandler) Check(ctx context.Context, req *CheckRequest, resp *CheckResponse) error {
	h.mu.Lock()
	h.applied[req.Key] = true
	h.mu.Unlock()
	h.entered.Add(1)
	select {
	case <-h.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return echoCheck(ctx, req, resp)
}

// checkAll sends one check per key at once and returns each one's error.
func checkAll(c *Client, keys []string) map[string]error {
	var mu sync.Mutex
	errs := map[string]error{}
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp CheckResponse
			err := c.Check(context.Background(), sampleRequest(k, 1), &resp)
			mu.Lock()
			errs[k] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return errs
}

func keysNamed(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

// A server that shuts down answers every request it read, and reads none
// after: no check is applied with its answer lost, which the caller would
// retry on another node and count twice. Close, for contrast, loses the
// answers of the checks it cut off.
func TestShutdownAnswersWhatItRead(t *testing.T) {
	for _, graceful := range []bool{true, false} {
		t.Run(fmt.Sprintf("graceful=%v", graceful), func(t *testing.T) {
			h := newHeldHandler()
			ts := startServer(t, h, ServerConfig{})
			c, _ := newTestClient(t, ts.addr, ClientConfig{CallTimeout: 10 * time.Second})
			const held = 20
			var first map[string]error
			firstDone := make(chan struct{})
			go func() { first = checkAll(c, keysNamed("held", held)); close(firstDone) }()
			testkit.Eventually(t, 5*time.Second, "checks to reach the handler", func() bool { return h.entered.Load() == held })
			stopped := make(chan error, 1)
			go func() {
				if graceful {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					stopped <- ts.Shutdown(ctx)
				} else {
					stopped <- ts.Close()
				}
			}()
			var late map[string]error
			lateDone := make(chan struct{})
			go func() { late = checkAll(c, keysNamed("late", 10)); close(lateDone) }() // sent while the server stops
			testkit.Eventually(t, 5*time.Second, "the server to stop accepting", ts.isClosed)
			close(h.release)
			<-firstDone
			<-lateDone
			if err := <-stopped; err != nil {
				t.Fatalf("stop: %v", err)
			}
			answered := 0
			for k, err := range mergeErrs(first, late) {
				h.mu.Lock()
				applied := h.applied[k]
				h.mu.Unlock()
				if err == nil {
					answered++
				}
				if err != nil && !errors.Is(err, ErrUnavailable) {
					t.Errorf("%s: %v; want an answer or ErrUnavailable", k, err)
				}
				if graceful && applied != (err == nil) {
					t.Errorf("%s: applied %v, answered with error %v; want an answer exactly for each check applied", k, applied, err)
				}
			}
			switch {
			case graceful && answered < held:
				t.Errorf("%d checks answered; want at least the %d held ones", answered, held)
			case !graceful && answered != 0:
				t.Errorf("Close answered %d checks; want 0 (it cuts the held ones off)", answered)
			}
		})
	}
}

func mergeErrs(a, b map[string]error) map[string]error {
	out := make(map[string]error, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// A retired client waits for the answers of the calls it sent; calls made
// after Retire fail unsent. Close, for contrast, cuts the sent ones off.
func TestRetireWaitsForCallsInFlight(t *testing.T) {
	h := newHeldHandler()
	ts := startServer(t, h, ServerConfig{})
	c, _ := newTestClient(t, ts.addr, ClientConfig{CallTimeout: 10 * time.Second})
	var first map[string]error
	firstDone := make(chan struct{})
	go func() { first = checkAll(c, keysNamed("held", 5)); close(firstDone) }()
	testkit.Eventually(t, 5*time.Second, "checks to reach the handler", func() bool { return h.entered.Load() == 5 })
	retired := make(chan error, 1)
	go func() { retired <- c.Retire() }()
	testkit.Eventually(t, 5*time.Second, "the client to retire", c.retiring.Load)
	var resp CheckResponse
	if err := c.Check(context.Background(), sampleRequest("after", 1), &resp); !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrClosed) {
		t.Errorf("a check after Retire: %v; want ErrUnavailable and ErrClosed", err)
	}
	close(h.release)
	<-firstDone
	if err := <-retired; err != nil {
		t.Fatal(err)
	}
	for k, err := range first {
		if err != nil {
			t.Errorf("%s, sent before Retire: %v; want its answer", k, err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.applied["after"] {
		t.Error("the check made after Retire reached the server")
	}
}

// notServingHandler refuses every check and ping as a node that has not
// joined yet does.
type notServingHandler struct{ *testHandler }

func (notServingHandler) Serving() error { return errors.New("not joined yet") }

func (notServingHandler) Check(context.Context, *CheckRequest, *CheckResponse) error {
	return fmt.Errorf("%w: not joined yet", ErrNotServing)
}

// A handler that is not serving yet refuses checks and pings so that the
// caller knows they were not applied (ErrNotSent) and fails over.
func TestNotServingIsUnavailableAndUnsent(t *testing.T) {
	ts := startServer(t, notServingHandler{&testHandler{}}, ServerConfig{})
	c, _ := newTestClient(t, ts.addr, ClientConfig{})
	var resp CheckResponse
	err := c.Check(context.Background(), sampleRequest("k", 1), &resp)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrNotSent) || !errors.Is(err, ErrNotServing) {
		t.Errorf("check: %v; want ErrUnavailable, ErrNotSent and ErrNotServing", err)
	}
	if err := c.Ping(context.Background()); !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrNotServing) {
		t.Errorf("ping: %v; want ErrUnavailable and ErrNotServing", err)
	}
	ok := startServer(t, &testHandler{}, ServerConfig{})
	c2, _ := newTestClient(t, ok.addr, ClientConfig{})
	if err := c2.Ping(context.Background()); err != nil {
		t.Errorf("ping of a serving handler: %v", err)
	}
}

// otherRunHandler refuses merges meant for another run of its node.
type otherRunHandler struct{ *testHandler }

func (otherRunHandler) Merge(_ context.Context, req *MergeRequest) error {
	if req.ToIncarnation != 7 {
		return fmt.Errorf("%w: meant for run %d, this is run 7", ErrOtherRun, req.ToIncarnation)
	}
	return nil
}

// A merge meant for another run of the peer comes back as ErrOtherRun,
// not as unavailability: the peer answers, so callers must not route
// around it; and the run it was meant for travels in the request.
func TestOtherRunIsRefusedNotUnavailable(t *testing.T) {
	ts := startServer(t, otherRunHandler{&testHandler{}}, ServerConfig{})
	c, _ := newTestClient(t, ts.addr, ClientConfig{})
	err := c.Merge(context.Background(), &MergeRequest{From: "n1", ToIncarnation: 6})
	if !errors.Is(err, ErrOtherRun) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "meant for run 6") {
		t.Errorf("merge for run 6: %v; want ErrOtherRun with the handler's reason, not ErrUnavailable", err)
	}
	if err := c.Merge(context.Background(), &MergeRequest{From: "n1", ToIncarnation: 7}); err != nil {
		t.Errorf("merge for run 7: %v", err)
	}
}
