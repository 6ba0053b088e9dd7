package httpapi

import (
	"testing"
	"time"
)

// Attempts still being evaluated hold their place in the budget: of 1,000
// attempts begun before any ends, 5 are admitted. A success gives its
// place back, in its own window only.
func TestFailureThrottleCountsAttemptsInFlight(t *testing.T) {
	var f failureThrottle
	now := time.Unix(1_700_000_000, 0)
	admitted := 0
	for range 1000 {
		if ok, _ := f.allow(now, "a"); ok {
			admitted++
		}
	}
	if admitted != AdminFailuresPerIP {
		t.Fatalf("%d of 1,000 attempts in flight admitted, want %d", admitted, AdminFailuresPerIP)
	}
	f.succeeded(now, "a")
	if ok, _ := f.allow(now, "a"); !ok {
		t.Fatal("a success did not give its place back")
	}
	if ok, wait := f.allow(now.Add(AdminFailureWindow/2), "a"); ok || wait != AdminFailureWindow/2 {
		t.Fatalf("over the budget: %v, wait %v; want refused for %v", ok, wait, AdminFailureWindow/2)
	}
	next := now.Add(AdminFailureWindow)
	for i := range AdminFailuresPerIP {
		if ok, _ := f.allow(next, "a"); !ok {
			t.Fatalf("attempt %d of the next window refused", i)
		}
	}
	f.succeeded(now, "a") // admitted in the last window: nothing to give back in this one
	if ok, _ := f.allow(next, "a"); ok {
		t.Fatal("a success of the last window gave a place in this one")
	}
}
