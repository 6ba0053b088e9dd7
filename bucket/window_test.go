package bucket

import (
	"testing"
	"time"
)

// TestFixedWindow is the example: 10 per 2 seconds.
func TestFixedWindow(t *testing.T) {
	c := Counter{Scope: "s", Limit: Limit{10, 2 * time.Second}, Strategy: FixedWindow}
	t.Run("eleventh denied", func(t *testing.T) {
		var steps []step
		for i := int64(1); i <= 10; i++ {
			// The window opens at the first hit, t0+0.5s.
			steps = append(steps, step{at: seconds(0.5 + float64(i)/10), cost: 1, allowed: true, remaining: 10 - i, reset: seconds(2.6)})
		}
		steps = append(steps,
			step{at: seconds(1.6), cost: 1, remaining: 0, reset: seconds(2.6), retry: seconds(1)},
			step{at: seconds(2.5), cost: 0, allowed: true, remaining: 0, reset: seconds(2.6)},
			// The window closes at first hit + 2s; the next hit opens a new one.
			step{at: seconds(2.6), cost: 1, allowed: true, remaining: 9, reset: seconds(4.6)},
		)
		runSteps(t, NewStore(StoreConfig{}), "k", c, steps)
	})
	t.Run("cost 11 denied", func(t *testing.T) {
		s := NewStore(StoreConfig{})
		runSteps(t, s, "k", c, []step{
			{at: 0, cost: 11, remaining: 10, reset: 0, retry: never},
			{at: 0, cost: 10, allowed: true, remaining: 0, reset: seconds(2)},
		})
	})
	t.Run("cost 5 then 6", func(t *testing.T) {
		s := NewStore(StoreConfig{})
		runSteps(t, s, "k", c, []step{
			{at: 0, cost: 5, allowed: true, remaining: 5, reset: seconds(2)},
			{at: seconds(1.5), cost: 6, remaining: 5, reset: seconds(2), retry: seconds(0.5)},
			{at: seconds(1.5), cost: 5, allowed: true, remaining: 0, reset: seconds(2)},
		})
	})
	t.Run("denied check creates no key", func(t *testing.T) {
		s := NewStore(StoreConfig{})
		runSteps(t, s, "k", c, []step{{at: 0, cost: 11, remaining: 10, retry: never}, {at: 0, cost: 0, allowed: true, remaining: 10}})
		if n := s.Len(); n != 0 {
			t.Fatalf("Len = %d after a denied check and a peek, want 0", n)
		}
	})
}

// TestSlidingWindowCounter is the reference's worked example: 10 per minute,
// 10 hits at second 50 of an aligned minute; remaining = amount -
// floor(prev × (time left in current bucket)/period + current).
func TestSlidingWindowCounter(t *testing.T) {
	c := Counter{Limit: Limit{10, time.Minute}, Strategy: SlidingWindowCounter}
	s := NewStore(StoreConfig{})
	var steps []step
	for i := int64(1); i <= 10; i++ {
		// Whole again once i × r/60s < 1 in the next bucket, where r is the
		// time left in it: r <= ceil(60s/i) - 1ns.
		reset := seconds(120) - (time.Minute+time.Duration(i)-1)/time.Duration(i) + 1
		steps = append(steps, step{at: seconds(50), cost: 1, allowed: true, remaining: 10 - i, reset: reset})
	}
	steps = append(steps,
		step{at: seconds(50), cost: 1, remaining: 0, reset: seconds(114) + 1, retry: seconds(10) + 1},
		step{at: seconds(60), cost: 0, allowed: true, remaining: 0, reset: seconds(114) + 1},
		step{at: seconds(75), cost: 0, allowed: true, remaining: 3, reset: seconds(114) + 1},
		step{at: seconds(90), cost: 0, allowed: true, remaining: 5, reset: seconds(114) + 1},
		step{at: seconds(105), cost: 0, allowed: true, remaining: 8, reset: seconds(114) + 1},
		step{at: seconds(119), cost: 0, allowed: true, remaining: 10, reset: seconds(119)},
	)
	runSteps(t, s, "k", c, steps)

	// Retry-after is exact: at t=75 the weighted count is floor(7.5) = 7, so
	// cost 4 must wait until floor(10 × r/60s) <= 6, i.e. r < 42s.
	s = NewStore(StoreConfig{})
	runSteps(t, s, "k", c, []step{
		{at: seconds(50), cost: 10, allowed: true, remaining: 0, reset: seconds(114) + 1},
		{at: seconds(75), cost: 4, remaining: 3, reset: seconds(114) + 1, retry: seconds(3) + 1},
		{at: seconds(78) + 1, cost: 4, allowed: true, remaining: 0, reset: seconds(180) - seconds(15) + 1},
		// Weighted at 80s: floor(10 × 40/60) + 4 = 10. Cost 5 fits once
		// floor(10 × r/60s) <= 1, i.e. r < 12s: at 108s + 1ns.
		{at: seconds(80), cost: 5, remaining: 0, reset: seconds(165) + 1, retry: seconds(28) + 1},
		// Cost 9 never fits in this bucket (4 + 9 > 10); in the next one the 4
		// hits weigh floor(4 × r/60s) <= 1 once r < 30s: at 150s + 1ns.
		{at: seconds(90), cost: 9, remaining: 1, reset: seconds(165) + 1, retry: seconds(60) + 1},
		{at: seconds(90), cost: 11, remaining: 1, reset: seconds(165) + 1, retry: never},
	})
}

// TestMovingWindow is the example: 2 per minute, hits at t0 and
// t0+1s; the third is denied until the first leaves the window.
func TestMovingWindow(t *testing.T) {
	c := Counter{Limit: Limit{2, time.Minute}, Strategy: MovingWindow}
	runSteps(t, NewStore(StoreConfig{}), "k", c, []step{
		{at: 0, cost: 1, allowed: true, remaining: 1, reset: seconds(60)},
		{at: seconds(1), cost: 1, allowed: true, remaining: 0, reset: seconds(61)},
		{at: seconds(1), cost: 1, remaining: 0, reset: seconds(61), retry: seconds(59)},
		{at: seconds(1), cost: 2, remaining: 0, reset: seconds(61), retry: seconds(60)},
		{at: seconds(1), cost: 3, remaining: 0, reset: seconds(61), retry: never},
		{at: seconds(60) - 1, cost: 1, remaining: 0, reset: seconds(61), retry: 1},
		// A hit counts while it is newer than now - period.
		{at: seconds(60), cost: 1, allowed: true, remaining: 0, reset: seconds(120)},
		{at: seconds(70), cost: 2, remaining: 1, reset: seconds(120), retry: seconds(50)},
		{at: seconds(120), cost: 0, allowed: true, remaining: 2, reset: seconds(120)},
	})
}

// TestTokenBucket checks burst, even refill and exact retry-after, including
// a period that does not divide by the amount.
func TestTokenBucket(t *testing.T) {
	t.Run("5 per minute", func(t *testing.T) {
		c := Counter{Limit: Limit{5, time.Minute}, Strategy: TokenBucket}
		runSteps(t, NewStore(StoreConfig{}), "k", c, []step{
			// Burst: the full amount at once; each token refills in 12s.
			{at: 0, cost: 1, allowed: true, remaining: 4, reset: seconds(12)},
			{at: 0, cost: 4, allowed: true, remaining: 0, reset: seconds(60)},
			{at: 0, cost: 1, remaining: 0, reset: seconds(60), retry: seconds(12)},
			{at: seconds(11), cost: 1, remaining: 0, reset: seconds(60), retry: seconds(1)},
			{at: seconds(12), cost: 1, allowed: true, remaining: 0, reset: seconds(72)},
			{at: seconds(30), cost: 2, remaining: 1, reset: seconds(72), retry: seconds(6)},
			{at: seconds(36), cost: 2, allowed: true, remaining: 0, reset: seconds(96)},
			{at: seconds(36), cost: 6, remaining: 0, reset: seconds(96), retry: never},
			{at: seconds(200), cost: 0, allowed: true, remaining: 5, reset: seconds(200)},
		})
	})
	t.Run("3 per 10 seconds", func(t *testing.T) {
		// A token every 10/3 s, tracked without rounding.
		c := Counter{Limit: Limit{3, 10 * time.Second}, Strategy: TokenBucket}
		runSteps(t, NewStore(StoreConfig{}), "k", c, []step{
			{at: 0, cost: 3, allowed: true, remaining: 0, reset: seconds(10)},
			{at: 0, cost: 1, remaining: 0, reset: seconds(10), retry: 3333333334},
			{at: 3333333333, cost: 1, remaining: 0, reset: seconds(10), retry: 1},
			{at: 3333333334, cost: 1, allowed: true, remaining: 0, reset: 13333333334},
			// Three more tokens at exact thirds: no drift after many refills.
			{at: 13333333334, cost: 3, allowed: true, remaining: 0, reset: 23333333334},
		})
	})
}

// TestZeroAmount: "0 per second" denies every hit and never suggests a retry.
func TestZeroAmount(t *testing.T) {
	for _, strat := range allStrategies {
		c := Counter{Limit: Limit{0, time.Second}, Strategy: strat}
		runSteps(t, NewStore(StoreConfig{}), "k", c, []step{
			{at: 0, cost: 1, remaining: 0, retry: never},
			{at: 0, cost: 0, allowed: true, remaining: 0},
		})
	}
}

var allStrategies = []Strategy{FixedWindow, SlidingWindowCounter, MovingWindow, TokenBucket}
