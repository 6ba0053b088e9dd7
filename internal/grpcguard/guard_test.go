package grpcguard

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// health is a health service whose Check runs check and whose Watch
// panics.
type health struct {
	healthpb.UnimplementedHealthServer
	check func(*healthpb.HealthCheckRequest)
}

func (h *health) Check(_ context.Context, r *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.check(r)
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (h *health) Watch(*healthpb.HealthCheckRequest, healthpb.Health_WatchServer) error {
	panic("watch panics")
}

// serve serves h under g on 127.0.0.1:0 and returns a client of it.
func serve(t *testing.T, g *Guard, h *health, maxMsg int) healthpb.HealthClient {
	t.Helper()
	srv := grpc.NewServer(append(g.ServerOptions(), grpc.MaxRecvMsgSize(maxMsg))...)
	healthpb.RegisterHealthServer(g.Registrar(srv), h)
	return healthpb.NewHealthClient(testkit.ServeGRPC(t, srv))
}

// TestPanicIsInternal: 100 panicking calls (unary and stream) each get
// Internal, are counted, make one log line, and the server still answers.
func TestPanicIsInternal(t *testing.T) {
	var logs testlog.Buffer
	g, err := New(Config{MaxRecvMsgSize: 1 << 20, MaxInFlightBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c := serve(t, g, &health{check: func(r *healthpb.HealthCheckRequest) {
		if r.Service == "boom" {
			panic("boom")
		}
	}}, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 50 {
		if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "boom"}); status.Code(err) != codes.Internal {
			t.Fatalf("Check panicking: %v, want Internal", err)
		}
		w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		if status.Code(err) != codes.Internal {
			t.Fatalf("Watch panicking: %v, want Internal", err)
		}
	}
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("after the panics: %v", err)
	}
	if n := g.Panics(); n != 100 {
		t.Fatalf("%d panics counted, want 100", n)
	}
	if n := strings.Count(logs.String(), "handler panicked"); n != 1 || !strings.Contains(logs.String(), "panic=boom") {
		t.Fatalf("%d log lines for 100 panics, want 1 naming the panic:\n%s", n, logs.String())
	}
	if g.InFlight() != 0 {
		t.Fatalf("%d bytes still held", g.InFlight())
	}
}

// TestBudgetBoundsRequestsInFlight: with 1 MiB messages and 2 MiB in
// flight, requests of 600,004 bytes are decided 2 at a time (2 × 600,004
// held leave less than the 1 MiB a third needs to be read); the other 3
// wait, and all 5 are answered once the first are.
func TestBudgetBoundsRequestsInFlight(t *testing.T) {
	g, err := New(Config{MaxRecvMsgSize: 1 << 20, MaxInFlightBytes: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var mu sync.Mutex
	in := 0
	c := serve(t, g, &health{check: func(*healthpb.HealthCheckRequest) {
		mu.Lock()
		in++
		mu.Unlock()
		<-release
	}}, 1<<20)
	big := strings.Repeat("x", 600_000)
	errs := make(chan error, 5)
	for range 5 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: big})
			errs <- err
		}()
	}
	testkit.Eventually(t, 10*time.Second, "2 requests decided and 3 waiting", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return in == 2 && g.budget.waiting() == 3
	})
	if got, want := g.InFlight(), int64(2*600_004); got != want {
		t.Fatalf("%d bytes held by 2 requests, want %d", got, want)
	}
	close(release)
	for range 5 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if in != 5 || g.InFlight() != 0 {
		t.Fatalf("%d decided, %d bytes held after; want 5 and 0", in, g.InFlight())
	}
}

// A waiter whose context ends leaves the queue and the bytes it would
// have had go to the next.
func TestBudgetWaiterGivesUp(t *testing.T) {
	b := newBudget(10)
	if err := b.acquire(context.Background(), 8); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- b.acquire(ctx, 5) }()
	testkit.Eventually(t, 5*time.Second, "a waiter", func() bool { return b.waiting() == 1 })
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire after cancel: %v", err)
	}
	if err := b.acquire(context.Background(), 2); err != nil || b.taken(10) != 10 || b.waiting() != 0 {
		t.Fatalf("after the waiter left: %v, %d taken, %d waiting; want 10 and 0", err, b.taken(10), b.waiting())
	}
	b.release(10)
}

func TestNewRefusesBudgetSmallerThanAMessage(t *testing.T) {
	if _, err := New(Config{MaxRecvMsgSize: 4 << 20, MaxInFlightBytes: 1 << 20}); !errors.Is(err, ErrConfig) {
		t.Fatalf("New: %v, want ErrConfig", err)
	}
}

// TestWeighBeforeDecoding: with Weigh, a request is weighed from its wire
// form: refused undecoded with Weigh's error, refused ResourceExhausted
// if it would hold more than its reserve, else decoded and held at its
// weight while the handler runs.
func TestWeighBeforeDecoding(t *testing.T) {
	var decided []string
	var g *Guard
	g, err := New(Config{MaxRecvMsgSize: 1 << 10, ReadReserve: 4 << 10, MaxInFlightBytes: 8 << 10,
		Weigh: func(raw []byte, _ any) (int64, error) {
			if strings.Contains(string(raw), "refuse") {
				return 0, status.Error(codes.InvalidArgument, "refused by its shape")
			}
			if strings.Contains(string(raw), "heavy") {
				return 5 << 10, nil
			}
			return 100 * int64(len(raw)), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	c := serve(t, g, &health{check: func(r *healthpb.HealthCheckRequest) {
		decided = append(decided, r.Service+"="+strconv.FormatInt(g.InFlight(), 10))
	}}, 1<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		service string
		want    codes.Code
	}{{"refuse", codes.InvalidArgument}, {"heavy", codes.ResourceExhausted}, {"light", codes.OK}} {
		if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: tc.service}); status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.service, err, tc.want)
		}
	}
	// "light" is 7 bytes on the wire (tag, length, 5 bytes): 700 held.
	if strings.Join(decided, " ") != "light=700" || g.InFlight() != 0 {
		t.Fatalf("decided %q, %d held after; want light=700 and 0", decided, g.InFlight())
	}
}

// stallCodec is gRPC's proto codec, but its Marshal waits for release: a
// client whose call has sent its headers and not its message.
type stallCodec struct{ release chan struct{} }

func (c stallCodec) Marshal(v any) (mem.BufferSlice, error) {
	<-c.release
	return encoding.GetCodecV2(grpcproto.Name).Marshal(v)
}

func (stallCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2(grpcproto.Name).Unmarshal(data, v)
}

func (stallCodec) Name() string { return grpcproto.Name }

// TestSlowRequestGivesUpItsReserve: with a budget of one reserve, a call
// whose message does not come holds the reserve for ReadTimeout (200 ms)
// and fails; the call waiting behind it is then answered, and every byte
// is given back.
func TestSlowRequestGivesUpItsReserve(t *testing.T) {
	g, err := New(Config{MaxRecvMsgSize: 1 << 20, MaxInFlightBytes: 1 << 20, ReadTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c := serve(t, g, &health{check: func(*healthpb.HealthCheckRequest) {}}, 1<<20)
	stall := stallCodec{release: make(chan struct{})}
	slow := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := c.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.ForceCodecV2(stall))
		slow <- err
	}()
	testkit.Eventually(t, 10*time.Second, "the slow call holding the reserve", func() bool { return g.InFlight() == 1<<20 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("the call behind the slow one: %v", err)
	}
	close(stall.release)
	if err := <-slow; err == nil {
		t.Fatal("the slow call succeeded, want it failed")
	}
	testkit.Eventually(t, 10*time.Second, "every byte given back", func() bool { return g.InFlight() == 0 })
}
