package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// epoch is the fixed instant test handlers compute resets from.
var epoch = time.Unix(1_700_000_000, 123)

// testHandler answers checks deterministically from the request: allowed
// when Cost ≤ the first counter's Amount, Remaining = Amount-Cost, Reset =
// epoch+Period, Node = the key. Hooks replace the behaviour per test.
type testHandler struct {
	check func(ctx context.Context, req *CheckRequest, resp *CheckResponse) error

	mu     sync.Mutex
	merged []bucket.Entry
	// counts holds the merge, replica and refund requests received, in
	// order, each as the handler method it reached got it.
	counts []any
	resets []string
}

func (h *testHandler) Check(ctx context.Context, req *CheckRequest, resp *CheckResponse) error {
	if h.check != nil {
		return h.check(ctx, req, resp)
	}
	return echoCheck(ctx, req, resp)
}

func echoCheck(_ context.Context, req *CheckRequest, resp *CheckResponse) error {
	if req.Key == "fail" {
		return errors.New("bucket: invalid counter")
	}
	resp.Allowed = true
	for _, c := range req.Counters {
		st := bucket.Status{Limit: c.Limit, Remaining: c.Limit.Amount - req.Cost, Reset: epoch.Add(c.Limit.Period)}
		if st.Remaining < 0 {
			resp.Allowed = false
			st.RetryAfter = c.Limit.Period
		}
		resp.Statuses = append(resp.Statuses, st)
	}
	resp.Node = req.Key
	if req.Hops > 0 {
		resp.Node = fmt.Sprintf("%s/%d", req.Key, req.Hops)
	}
	return nil
}

func (h *testHandler) Merge(ctx context.Context, req *MergeRequest) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.merged = append(h.merged, req.Entries...)
	h.counts = append(h.counts, *req)
	return nil
}

func (h *testHandler) Replicate(ctx context.Context, req *ReplicaRequest) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts = append(h.counts, *req)
	return nil
}

func (h *testHandler) Refund(ctx context.Context, req *RefundRequest) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts = append(h.counts, *req)
	return nil
}

// Take returns an entry with one counter whose Count is len(req.To+req.ToAddr),
// superseding for the key "mine", and none for the key "none".
func (h *testHandler) Take(ctx context.Context, req *TakeRequest) (TakeResponse, error) {
	switch req.Key {
	case "none":
		return TakeResponse{}, nil
	case "fail":
		return TakeResponse{}, errors.New("take refused")
	}
	return TakeResponse{Found: true, Supersedes: req.Key == "mine", Entry: bucket.Entry{Key: req.Key, Counters: []bucket.CounterState{
		{Counter: bucket.Counter{Scope: "s", Limit: limit(5, time.Minute)}, Start: 1, Count: int64(len(req.To + req.ToAddr))},
	}}}, nil
}

func (h *testHandler) Reset(ctx context.Context, key string) error {
	if key == "fail" {
		return errors.New("reset refused")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resets = append(h.resets, key)
	return nil
}

// logBuf collects log output for assertions.
type logBuf struct{ testlog.Buffer }

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitLog waits until the log contains every one of subs.
func (l *logBuf) waitLog(t *testing.T, subs ...string) {
	t.Helper()
	var got string
	testkit.Eventually(t, 5*time.Second, fmt.Sprintf("log lines %q", subs), func() bool {
		got = l.String()
		for _, sub := range subs {
			if !strings.Contains(got, sub) {
				return false
			}
		}
		return true
	}, &got)
}

type testServer struct {
	*Server
	addr string
	log  *logBuf
	done chan error
}

// startServer serves h on a fresh loopback port (or on addr when given).
func startServer(t testing.TB, h Handler, cfg ServerConfig, addr ...string) *testServer {
	t.Helper()
	a := "127.0.0.1:0"
	if len(addr) > 0 {
		a = addr[0]
	}
	ln, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	lb := &logBuf{}
	if cfg.Logger == nil {
		cfg.Logger = lb.logger()
	}
	ts := &testServer{Server: NewServer(h, cfg), addr: ln.Addr().String(), log: lb, done: make(chan error, 1)}
	go func() { ts.done <- ts.Serve(ln) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop closes the server and waits for Serve to return nil.
func (ts *testServer) stop(t testing.TB) {
	t.Helper()
	if ts.done == nil {
		return
	}
	ts.Close()
	if err := <-ts.done; err != nil {
		t.Errorf("Serve returned %v after Close", err)
	}
	ts.done = nil
}

func newTestClient(t testing.TB, addr string, cfg ClientConfig) (*Client, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	if cfg.Logger == nil {
		cfg.Logger = lb.logger()
	}
	c := NewClient(addr, cfg)
	t.Cleanup(func() { c.Close() })
	return c, lb
}

func limit(n int64, p time.Duration) bucket.Limit { return bucket.Limit{Amount: n, Period: p} }

func sampleRequest(key string, cost int64) *CheckRequest {
	return &CheckRequest{Key: key, Cost: cost, Counters: []bucket.Counter{
		{Scope: "GET /products", Limit: limit(10, time.Minute)},
		{Scope: "shared:products", Limit: limit(200, 24*time.Hour), Strategy: bucket.MovingWindow},
	}}
}

// rawConn dials addr and runs the client handshake with secret, for tests
// that then write bytes of their own.
func rawConn(t *testing.T, addr string, secret []byte) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := clientHandshake(nc, bufioReader(nc), secret, protoVersion); err != nil {
		t.Fatal(err)
	}
	return nc
}

// expectClosed reads from nc until the server closes it.
func expectClosed(t *testing.T, nc net.Conn) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	for {
		_, err := nc.Read(buf)
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("server did not close the connection")
		}
		return
	}
}
