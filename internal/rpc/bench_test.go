package rpc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/ratemesh/ratemesh/bucket"
)

// benchHandler is a trivial in-memory handler: one status per counter.
type benchHandler struct{ testHandler }

func (*benchHandler) Check(_ context.Context, req *CheckRequest, resp *CheckResponse) error {
	for _, c := range req.Counters {
		resp.Statuses = append(resp.Statuses, bucket.Status{Limit: c.Limit, Remaining: c.Limit.Amount - req.Cost, Reset: epoch})
	}
	resp.Allowed = true
	resp.Node = "node-1"
	return nil
}

// fastBenchHandler answers every check on the fast path, inline on the
// connection's reader; benchHandler alone has none, so each of its checks
// is served on a goroutine.
type fastBenchHandler struct{ benchHandler }

func (h *fastBenchHandler) TryCheck(req *CheckRequest, resp *CheckResponse) (bool, error) {
	return true, h.Check(context.Background(), req, resp)
}

func benchPair(b *testing.B, fast bool) *Client {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var h Handler = &benchHandler{}
	if fast {
		h = &fastBenchHandler{}
	}
	ts := startServer(b, h, ServerConfig{Logger: quiet})
	c, _ := newTestClient(b, ts.addr, ClientConfig{Logger: quiet, CallTimeout: time.Second})
	if err := c.Ping(context.Background()); err != nil {
		b.Fatal(err)
	}
	return c
}

// latencies is a histogram of call latencies in µs buckets up to 10 ms.
type latencies struct {
	us   [10001]int64
	n    int64
	over []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.n++
	if us := d.Microseconds(); us < int64(len(l.us)-1) {
		l.us[us]++
		return
	}
	l.us[len(l.us)-1]++
	l.over = append(l.over, d)
}

// merge adds o's latencies to l.
func (l *latencies) merge(o *latencies) {
	for i, k := range o.us {
		l.us[i] += k
	}
	l.n += o.n
	l.over = append(l.over, o.over...)
}

// quantile returns the upper bound in µs of the bucket holding quantile q.
func (l *latencies) quantile(q float64) float64 {
	rank := int64(q * float64(l.n))
	var seen int64
	for us, k := range l.us {
		if seen += k; seen > rank {
			if us == len(l.us)-1 {
				sort.Slice(l.over, func(i, j int) bool { return l.over[i] < l.over[j] })
				return float64(l.over[int(rank-(seen-k))].Microseconds())
			}
			return float64(us + 1)
		}
	}
	return 0
}

// BenchmarkRPCCheck: one caller, one call at a time, over loopback. The key
// repeats, so the server reuses its string: 0 allocs/op on both sides.
func BenchmarkRPCCheck(b *testing.B) {
	c := benchPair(b, true)
	req := sampleRequest("ip:10.1.2.3", 1)
	var resp CheckResponse
	ctx := context.Background()
	var h latencies
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if err := c.Check(ctx, req, &resp); err != nil {
			b.Fatal(err)
		}
		h.add(time.Since(start))
	}
	b.ReportMetric(h.quantile(0.50), "p50-µs")
	b.ReportMetric(h.quantile(0.99), "p99-µs")
}

// BenchmarkRPCCheckParallel: about 64 concurrent callers on one client
// (one connection); checks served inline on the connection's reader (the
// handler's fast path), or each on a goroutine of its own.
func BenchmarkRPCCheckParallel(b *testing.B) {
	for _, mode := range []struct {
		name string
		fast bool
	}{{"fast-path", true}, {"goroutine", false}} {
		b.Run(mode.name, func(b *testing.B) {
			c := benchPair(b, mode.fast)
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var id atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				// A key per caller: interleaved on the connection, so
				// the server allocates each key string (1 alloc/op).
				req := sampleRequest(fmt.Sprintf("ip:10.0.0.%d", id.Add(1)), 1)
				var resp CheckResponse
				ctx := context.Background()
				for pb.Next() {
					if err := c.Check(ctx, req, &resp); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
		})
	}
}

// BenchmarkCodec compares the field-by-field codec of a check (request and
// response, encoded and decoded) with msgpack's reflection.
func BenchmarkCodec(b *testing.B) {
	req := sampleRequest("ip:10.1.2.3", 1)
	resp := &CheckResponse{Allowed: true, Node: "node-1"}
	echoCheck(context.Background(), req, resp)
	resp.Node = "node-1"
	b.Run("primitives", func(b *testing.B) {
		c := newCodec()
		var req2 CheckRequest
		var resp2 CheckResponse
		b.ReportAllocs()
		for b.Loop() {
			c.w.b = c.w.b[:0]
			c.encodeCheckRequest(req)
			c.reset(c.w.b)
			if err := c.decodeCheckRequest(&req2); err != nil {
				b.Fatal(err)
			}
			c.w.b = c.w.b[:0]
			c.encodeCheckResponse(resp)
			c.reset(c.w.b)
			if err := c.decodeCheckResponse(&resp2); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reflection", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req2 CheckRequest
			var resp2 CheckResponse
			p, err := msgpack.Marshal(req)
			if err != nil {
				b.Fatal(err)
			}
			if err := msgpack.Unmarshal(p, &req2); err != nil {
				b.Fatal(err)
			}
			if p, err = msgpack.Marshal(resp); err != nil {
				b.Fatal(err)
			}
			if err := msgpack.Unmarshal(p, &resp2); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLoopbackFloor is the floor under BenchmarkRPCCheck: one
// goroutine writes a check-sized frame to a plain TCP echo over loopback
// and reads it back, with no framing, codec, multiplexing or goroutine
// hand-off. What BenchmarkRPCCheck spends above it is ours.
//
// callers=64 is the floor under BenchmarkForwardedCheck/parallel: 64
// goroutines on 2 cores, each with its own echo connection, so what it
// measures is the scheduler's and the loopback's queueing, which any RPC
// with that many callers pays too.
func BenchmarkLoopbackFloor(b *testing.B) {
	b.Run("callers=1", func(b *testing.B) {
		conn := echoConn(b)
		defer conn.Close()
		frame := make([]byte, 64) // about the size of a one-counter check
		var h latencies
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if err := echoOnce(conn, frame, &h); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(h.quantile(0.50), "p50-µs")
		b.ReportMetric(h.quantile(0.99), "p99-µs")
	})
	b.Run("callers=64", func(b *testing.B) {
		var mu sync.Mutex
		var all latencies
		b.SetParallelism(32) // 64 callers on 2 cores
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			conn := echoConn(b)
			defer conn.Close()
			frame := make([]byte, 64)
			h := &latencies{}
			for pb.Next() {
				if err := echoOnce(conn, frame, h); err != nil {
					b.Error(err)
					return
				}
			}
			mu.Lock()
			all.merge(h)
			mu.Unlock()
		})
		b.ReportMetric(all.quantile(0.50), "p50-µs")
		b.ReportMetric(all.quantile(0.99), "p99-µs")
	})
}

// echoOnce writes frame to an echo and reads it back, adding the round
// trip's time to h.
func echoOnce(conn net.Conn, frame []byte, h *latencies) error {
	start := time.Now()
	if _, err := conn.Write(frame); err != nil {
		return err
	}
	if _, err := io.ReadFull(conn, frame); err != nil {
		return err
	}
	h.add(time.Since(start))
	return nil
}

// echoConn dials a TCP echo of its own on loopback; both end with the
// benchmark.
func echoConn(b *testing.B) net.Conn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		conn, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.Copy(conn, conn)
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	return conn
}
