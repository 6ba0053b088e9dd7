// Command rls-load drives Envoy rate limit services
// (envoy.service.ratelimit.v3) with a closed loop of gRPC calls and
// reports throughput, latency and how many hits each limit admitted. It
// is the load generator of scripts/rls-bench.sh, which runs it against
// envoyproxy/ratelimit with Redis and against ratemesh, with one config:
//
//	domain: bench
//	descriptors:
//	  - key: user     # -keys values, each limited to -cold-limit
//	  - key: hot      # one value, limited to -hot-limit
//
// Each call carries one descriptor: every -hot-every-th call the hot one,
// the others the user values in turn. Calls go round-robin over -targets,
// as Envoy spreads them over a cluster's endpoints.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// settings are the command's flags.
type settings struct {
	name        string
	targets     []string
	domain      string
	prefix      string
	keys        int
	hotEvery    int
	coldLimit   int
	hotLimit    int
	concurrency int
	conns       int
	duration    time.Duration
	header      bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	s, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "rls-load:", err)
		return 2
	}
	res, err := drive(context.Background(), s)
	if err != nil {
		fmt.Fprintln(stderr, "rls-load:", err)
		return 1
	}
	if s.header {
		fmt.Fprintln(stdout, header())
	}
	fmt.Fprintln(stdout, res.row(s))
	return 0
}

func parse(args []string, stderr io.Writer) (settings, error) {
	fs := flag.NewFlagSet("rls-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s settings
	var targets string
	fs.StringVar(&s.name, "name", "service", "name of the row printed")
	fs.StringVar(&targets, "targets", "127.0.0.1:8089", "comma-separated gRPC addresses, called round-robin")
	fs.StringVar(&s.domain, "domain", "bench", "the domain of every call")
	fs.StringVar(&s.prefix, "prefix", "", "prefix of every descriptor value, so that each run has fresh counters")
	fs.IntVar(&s.keys, "keys", 10000, "user values, each its own counter")
	fs.IntVar(&s.hotEvery, "hot-every", 2, "every N-th call carries the hot descriptor")
	fs.IntVar(&s.coldLimit, "cold-limit", 5, "the config's limit of each user value in the run's window")
	fs.IntVar(&s.hotLimit, "hot-limit", 1000, "the config's limit of the hot value in the run's window")
	fs.IntVar(&s.concurrency, "concurrency", 64, "calls in flight")
	fs.IntVar(&s.conns, "conns", 2, "gRPC connections per target")
	fs.DurationVar(&s.duration, "duration", 10*time.Second, "how long to call")
	fs.BoolVar(&s.header, "header", false, "print the table's header first")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	for _, t := range strings.Split(targets, ",") {
		if t = strings.TrimSpace(t); t != "" {
			s.targets = append(s.targets, t)
		}
	}
	switch {
	case len(s.targets) == 0:
		return s, errors.New("-targets: none")
	case s.keys < 1 || s.hotEvery < 1 || s.concurrency < 1 || s.conns < 1 || s.duration <= 0:
		return s, errors.New("-keys, -hot-every, -concurrency, -conns and -duration must be positive")
	}
	return s, nil
}

// result is what one run saw.
type result struct {
	calls, errs         int64
	firstErr            error
	elapsed             time.Duration
	latencies           []time.Duration
	hotHits, hotAllowed int64
	coldHits            []int64 // per user value
	coldAllowed         int64
}

// drive runs the closed loop for s.duration.
func drive(ctx context.Context, s settings) (*result, error) {
	var clients []pb.RateLimitServiceClient
	for _, t := range s.targets {
		for range s.conns {
			conn, err := grpc.NewClient(t, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return nil, err
			}
			defer conn.Close()
			clients = append(clients, pb.NewRateLimitServiceClient(conn))
		}
	}
	res := &result{coldHits: make([]int64, s.keys)}
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(s.duration)
	for range s.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := worker{s: s, res: &result{coldHits: make([]int64, s.keys)}}
			for time.Now().Before(deadline) {
				n := next.Add(1) - 1
				w.call(ctx, clients[n%int64(len(clients))], n)
			}
			mu.Lock()
			res.merge(w.res)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if res.calls == 0 {
		return nil, fmt.Errorf("no call answered: %v", res.firstErr)
	}
	return res, nil
}

// worker is one call in flight at a time, with its own tallies.
type worker struct {
	s   settings
	res *result
}

func (w *worker) call(ctx context.Context, c pb.RateLimitServiceClient, n int64) {
	hot := n%int64(w.s.hotEvery) == 0
	entry := &rlv3.RateLimitDescriptor_Entry{Key: "hot", Value: w.s.prefix + "h"}
	user := int(n/int64(w.s.hotEvery)) % w.s.keys
	if !hot {
		entry = &rlv3.RateLimitDescriptor_Entry{Key: "user", Value: fmt.Sprintf("%su%d", w.s.prefix, user)}
	}
	req := &pb.RateLimitRequest{Domain: w.s.domain, Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{entry}}}}
	t0 := time.Now()
	resp, err := c.ShouldRateLimit(ctx, req)
	d := time.Since(t0)
	if err != nil {
		w.res.errs++
		if w.res.firstErr == nil {
			w.res.firstErr = err
		}
		return
	}
	w.res.calls++
	w.res.latencies = append(w.res.latencies, d)
	ok := resp.OverallCode == pb.RateLimitResponse_OK
	switch {
	case hot:
		w.res.hotHits++
		w.res.hotAllowed += b2i(ok)
	default:
		w.res.coldHits[user]++
		w.res.coldAllowed += b2i(ok)
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func (r *result) merge(o *result) {
	r.calls += o.calls
	r.errs += o.errs
	if r.firstErr == nil {
		r.firstErr = o.firstErr
	}
	r.latencies = append(r.latencies, o.latencies...)
	r.hotHits += o.hotHits
	r.hotAllowed += o.hotAllowed
	r.coldAllowed += o.coldAllowed
	for i, h := range o.coldHits {
		r.coldHits[i] += h
	}
}

// header is the table's header row.
func header() string {
	return fmt.Sprintf("| %-28s | %9s | %8s | %8s | %8s | %-22s | %-24s | %s |",
		"service", "calls", "req/s", "p50", "p99", "hot admitted / limit", "users admitted / limit", "errors")
}

// row is one run's line of the table; the limits are what an exact
// service admits: min(hits, limit) for each counter.
func (r *result) row(s settings) string {
	slices.Sort(r.latencies)
	q := func(p float64) time.Duration { return r.latencies[int(p*float64(len(r.latencies)-1))] }
	var coldWant int64
	for _, h := range r.coldHits {
		coldWant += min(h, int64(s.coldLimit))
	}
	hotWant := min(r.hotHits, int64(s.hotLimit))
	return fmt.Sprintf("| %-28s | %9d | %8.0f | %8s | %8s | %-22s | %-24s | %d |",
		s.name, r.calls, float64(r.calls)/r.elapsed.Seconds(), q(0.50).Round(time.Microsecond), q(0.99).Round(time.Microsecond),
		fmt.Sprintf("%d / %d", r.hotAllowed, hotWant), fmt.Sprintf("%d / %d", r.coldAllowed, coldWant), r.errs)
}
