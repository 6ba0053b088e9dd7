package bucket

import (
	"runtime"
	"strconv"
	"testing"
	"time"
)

// A sweep of one large shard lets a waiting check take the shard's lock
// before it is done: a check never waits for a whole pass (at ten million
// keys, a shard of 40,000 entries held the lock for milliseconds).
func TestSweepYieldsTheLock(t *testing.T) {
	const n = 50 * sweepStep
	s := NewStore(StoreConfig{Shards: 1, MaxKeys: n, MaxCounters: n})
	c := []Counter{{Limit: Limit{Amount: 1, Period: time.Minute}}}
	for i := range n {
		if _, _, err := s.Check(t0, "k"+strconv.Itoa(i), c, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	sh := &s.tab.Load().shards[0]
	swept := make(chan int)
	go func() { swept <- s.Sweep(t0.Add(time.Minute), 0) }()
	held := n
	for held == n { // until the sweep has started
		sh.mu.Lock()
		held = len(sh.entries)
		sh.mu.Unlock()
		runtime.Gosched()
	}
	if removed := <-swept; removed != n || s.Len() != 0 {
		t.Fatalf("the sweep removed %d keys, %d left; want %d, 0", removed, s.Len(), n)
	}
	if held == 0 {
		t.Fatalf("the lock was free again only after the sweep had removed all %d keys", n)
	}
	t.Logf("took the lock with %d of %d keys left", held, n)
}
