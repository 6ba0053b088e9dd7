package ratemesh_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// The scale run measures how a cluster of N nodes in this process grows
// with N: join and leave times, handoff at scaleKeys keys, heap per node
// and checks per second. It runs only when RATEMESH_SCALE lists the sizes
// ("3,10,20,50"; "1" means those four), since one size takes up to a
// minute; scripts/scale.sh runs it and docs/performance.md has the table.
const (
	scaleKeys    = 1_000_000
	scaleWorkers = 64 // checks in flight, for the fill and the load
	scaleLoad    = 3 * time.Second
	scaleAgree   = 90 * time.Second // bound on each wait for agreement
)

// scaleConfig changes each node's preset as RATEMESH_SCALE_REPLICAS
// asks: the number of replicas of each key (the preset's when unset).
func scaleConfig(t *testing.T) func(*ratemesh.Config) {
	v := os.Getenv("RATEMESH_SCALE_REPLICAS")
	if v == "" {
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > ratemesh.MaxReplicas {
		t.Fatalf("RATEMESH_SCALE_REPLICAS=%q: want 0 to %d", v, ratemesh.MaxReplicas)
	}
	return func(c *ratemesh.Config) { c.Replicas = n }
}

// scaleKeyCount is RATEMESH_SCALE_KEYS, the keys the cluster holds while
// a node joins and leaves; scaleKeys when unset.
func scaleKeyCount(t *testing.T) int {
	v := os.Getenv("RATEMESH_SCALE_KEYS")
	if v == "" {
		return scaleKeys
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("RATEMESH_SCALE_KEYS=%q: want a number of keys", v)
	}
	return n
}

// scaleSizes parses RATEMESH_SCALE; nil when the run is not asked for.
func scaleSizes(t *testing.T) []int {
	v := os.Getenv("RATEMESH_SCALE")
	switch v {
	case "":
		return nil
	case "1":
		return []int{3, 10, 20, 50}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			t.Fatalf("RATEMESH_SCALE=%q: want sizes of at least 2 nodes, comma-separated, or 1", v)
		}
		out = append(out, n)
	}
	return out
}

func TestScale(t *testing.T) {
	sizes := scaleSizes(t)
	if sizes == nil {
		t.Skip("set RATEMESH_SCALE=1 (or sizes, e.g. 3,10) to measure the cluster at several sizes")
	}
	mod, keys := scaleConfig(t), scaleKeyCount(t)
	rows := []string{
		fmt.Sprintf("| N | start | join: median, max | leave: median, max | join at %d keys: moved, time | leave at %d keys: moved, time | heap/node idle | heap/node at %d keys | goroutines/node | fill checks/s | checks/s |", keys, keys, keys),
		"|---|---|---|---|---|---|---|---|---|---|---|",
	}
	for _, n := range sizes {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) { rows = append(rows, scaleOne(t, n, keys, mod)) })
	}
	t.Log("\n" + strings.Join(rows, "\n"))
}

// scaleRounds is how many times the join and the leave of an empty node
// are timed: gossip over UDP on a busy host loses a packet now and then,
// and a lost one costs a push-pull interval.
const scaleRounds = 5

// scaleOne measures one cluster of n nodes and returns its table row.
func scaleOne(t *testing.T, n, keys int, mod func(*ratemesh.Config)) string {
	// The nodes are closed and dropped when the size is done, so that the
	// next size's heap does not count their tables.
	base := heapInuse()
	sn := &scaleNodes{mod: mod, heap: base}
	t.Cleanup(sn.closeAll)
	start := time.Now()
	nodes := make([]*ratemesh.Node, n)
	for i := range nodes {
		nodes[i] = sn.start(t, fmt.Sprintf("s%d", i))
		if i > 0 {
			joinTo(t, nodes[i], nodes[0])
		}
	}
	waitAgree(t, nodes)
	started := time.Since(start)
	idle := perNode(heapInuse(), base, n)
	routines := runtime.NumGoroutine() / n
	t.Logf("%d nodes: started and agreed in %v; heap %s and %d goroutines per node", n, started.Round(time.Millisecond), mib(idle), routines)

	// Membership alone, no keys held.
	var joins, leaves []time.Duration
	for r := range scaleRounds {
		j, _, _ := joinOne(t, sn, nodes, fmt.Sprintf("empty%d", r))
		l, _, _ := leaveOne(t, nodes, j.node)
		joins, leaves = append(joins, j.agree), append(leaves, l)
	}

	cs := testkit.Counters(t, "scale", "1000000000 per hour")
	fill := fillKeys(t, nodes, cs, keys)
	held := perNode(heapInuse(), base, n)
	rate := loadKeys(t, nodes, cs, keys)
	t.Logf("%d nodes: fill %.0f checks/s, then %.0f checks/s over %d keys; heap %s and %d goroutines per node",
		n, fill, rate, keys, mib(held), runtime.NumGoroutine()/n)

	kjoin, jmoved, jtime := joinOne(t, sn, nodes, "keys")
	_, lmoved, ltime := leaveOne(t, nodes, kjoin.node)
	return fmt.Sprintf("| %d | %v | %s | %s | %d, %v | %d, %v | %s | %s | %d | %.0f | %.0f |", n,
		started.Round(time.Millisecond), medianMax(joins), medianMax(leaves),
		jmoved, jtime.Round(time.Millisecond), lmoved, ltime.Round(time.Millisecond), mib(idle), mib(held), routines, fill, rate)
}

// perNode is the heap grown from base, per node.
func perNode(heap, base uint64, n int) uint64 {
	if heap < base {
		return 0
	}
	return (heap - base) / uint64(n)
}

// medianMax formats the median and the largest of ds.
func medianMax(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("%v, %v", s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}

// scaleNodes are the nodes of one size, all closed and forgotten by
// closeAll.
type scaleNodes struct {
	mod  func(*ratemesh.Config)
	live []*ratemesh.Node
	heap uint64 // heapInuse before the first node started
}

// start starts a node from the test preset (clustertest.Config) changed by
// sn.mod.
func (sn *scaleNodes) start(t *testing.T, name string) *ratemesh.Node {
	t.Helper()
	cfg := clustertest.Config(name)
	if sn.mod != nil {
		sn.mod(&cfg)
	}
	n, err := ratemesh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	sn.live = append(sn.live, n)
	return n
}

// closeAll closes every node at once and drops them.
func (sn *scaleNodes) closeAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, n := range sn.live {
		wg.Go(func() { n.Close(ctx) })
	}
	wg.Wait()
	sn.live = nil
	// Something of a closed node (gossip's timers, connections ending)
	// holds its table for a second or two after Close: wait, within
	// bounds, until the heap is back to what it was before the nodes.
	testkit.Poll(30*time.Second, func() bool { return heapInuse() <= sn.heap+8<<20 })
}

func joinTo(t *testing.T, n, seed *ratemesh.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Join(ctx, seed.GossipAddr()); err != nil {
		t.Fatal(err)
	}
}

// joined is a node that joined a running cluster, and how long until every
// node agreed on the members and owners.
type joined struct {
	node  *ratemesh.Node
	agree time.Duration
}

// joinOne starts one more node, joins it and waits until all agree and
// the handoff to it is over; it returns the keys handed to it and the time
// from Join to the last of them.
func joinOne(t *testing.T, sn *scaleNodes, nodes []*ratemesh.Node, tag string) (joined, int, time.Duration) {
	t.Helper()
	extra := sn.start(t, fmt.Sprintf("%s-%d", tag, len(nodes)))
	all := append(nodes[:len(nodes):len(nodes)], extra)
	before := handoffSum(all, "sent")
	start := time.Now()
	joinTo(t, extra, nodes[0])
	agree := waitAgree(t, all)
	moved, last := waitHandoff(t, all, "sent", before, start)
	t.Logf("join of %s: all %d agree after %v; %d keys handed off, the last after %v; it holds %.0f keys",
		extra.Name(), len(all), agree.Round(time.Millisecond), moved, last.Round(time.Millisecond), metric(extra, "ratemesh_keys", ""))
	return joined{node: extra, agree: agree}, moved, last
}

// leaveOne closes gone gracefully and waits until nodes (the others) agree
// again; it returns that time, the keys gone handed off and how long its
// Close took.
func leaveOne(t *testing.T, nodes []*ratemesh.Node, gone *ratemesh.Node) (time.Duration, int, time.Duration) {
	t.Helper()
	before := handoffKeys(gone, "sent")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), scaleAgree)
	defer cancel()
	if err := gone.Close(ctx); err != nil {
		t.Fatalf("close %s: %v", gone.Name(), err)
	}
	closed := time.Since(start)
	moved := handoffKeys(gone, "sent") - before
	agree := closed + waitAgree(t, nodes) // from the start of Close
	t.Logf("leave of %s: Close took %v and handed off %d keys; all %d agree after %v",
		gone.Name(), closed.Round(time.Millisecond), moved, len(nodes), agree.Round(time.Millisecond))
	return agree, moved, closed
}

// waitAgree polls until every node sees exactly these nodes alive and all
// name the same owners (clustertest.OwnersAgree), and returns how long
// that took.
func waitAgree(t *testing.T, nodes []*ratemesh.Node) time.Duration {
	t.Helper()
	start := time.Now()
	names := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		names[n.Name()] = true
	}
	same := func() bool {
		for _, n := range nodes {
			alive := 0
			for _, m := range n.Members() {
				if m.State == ratemesh.StateAlive && names[m.Name] {
					alive++
				} else if m.State == ratemesh.StateAlive {
					return false
				}
			}
			if alive != len(nodes) {
				return false
			}
		}
		return clustertest.OwnersAgree(nodes, 200)
	}
	testkit.Eventually(t, scaleAgree, fmt.Sprintf("%d nodes did not agree", len(nodes)), same)
	return time.Since(start)
}

// waitHandoff waits until the handoff counters of nodes (result "sent" or
// "received") stop growing for half a second, and returns their growth
// from before and when they last grew, from start.
func waitHandoff(t *testing.T, nodes []*ratemesh.Node, result string, before int, start time.Time) (int, time.Duration) {
	t.Helper()
	last, lastAt := handoffSum(nodes, result), time.Now()
	testkit.Eventually(t, scaleAgree, "the handoff did not end", func() bool {
		if s := handoffSum(nodes, result); s != last {
			last, lastAt = s, time.Now()
		}
		return time.Since(lastAt) >= 500*time.Millisecond
	})
	return last - before, lastAt.Sub(start)
}

// handoffSum adds up ratemesh_handoff_keys_total{result=result} over nodes.
func handoffSum(nodes []*ratemesh.Node, result string) int {
	s := 0
	for _, n := range nodes {
		s += handoffKeys(n, result)
	}
	return s
}

// handoffKeys reads ratemesh_handoff_keys_total{result=result} from n's registry.
func handoffKeys(n *ratemesh.Node, result string) int {
	return int(metric(n, "ratemesh_handoff_keys_total", result))
}

// metric reads the counter or gauge name from n's registry: the series
// with a label of value label, or the only series when label is "".
func metric(n *ratemesh.Node, name, label string) float64 {
	mfs, err := n.Registry().Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

// fillKeys checks each of keys keys once, through the nodes in turn,
// scaleWorkers at a time, and returns the checks per second.
func fillKeys(t *testing.T, nodes []*ratemesh.Node, cs []bucket.Counter, keys int) float64 {
	t.Helper()
	var next atomic.Int64
	start := time.Now()
	run(t, func(ctx context.Context, _ *rand.Rand) (bool, error) {
		i := next.Add(1) - 1
		if i >= int64(keys) {
			return false, nil
		}
		_, err := nodes[i%int64(len(nodes))].Check(ctx, ratemesh.Request{Key: "k" + strconv.FormatInt(i, 10), Counters: cs, Cost: 1})
		return true, err
	})
	return float64(keys) / time.Since(start).Seconds()
}

// loadKeys checks random keys of the filled ones through random nodes for
// scaleLoad and returns the checks per second.
func loadKeys(t *testing.T, nodes []*ratemesh.Node, cs []bucket.Counter, keys int) float64 {
	t.Helper()
	var done atomic.Int64
	start := time.Now()
	deadline := start.Add(scaleLoad)
	run(t, func(ctx context.Context, r *rand.Rand) (bool, error) {
		if time.Now().After(deadline) {
			return false, nil
		}
		key := "k" + strconv.Itoa(r.IntN(keys))
		_, err := nodes[r.IntN(len(nodes))].Check(ctx, ratemesh.Request{Key: key, Counters: cs, Cost: 1})
		done.Add(1)
		return true, err
	})
	return float64(done.Load()) / time.Since(start).Seconds()
}

// run calls check on scaleWorkers goroutines until it returns false, and
// fails the test on its first error.
func run(t *testing.T, check func(context.Context, *rand.Rand) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var first atomic.Pointer[error]
	for w := range scaleWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for {
				more, err := check(ctx, r)
				if err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
				if !more {
					return
				}
			}
		}()
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		t.Fatal(*e)
	}
}

// heapInuse is the live heap after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
