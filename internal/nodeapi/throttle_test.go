package nodeapi

import (
	"strconv"
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

// Clients that presented the admin token are spared the global budget,
// not their own; 16 are remembered, the one that succeeded longest ago is
// forgotten first, and none is after AdminKnownFor.
func TestFailureThrottleKnownClients(t *testing.T) {
	var f failureThrottle
	now := time.Unix(1_700_000_000, 0)
	for i := range AdminKnownClients + 1 {
		addr := "admin-" + strconv.Itoa(i)
		f.allow(now, addr)
		f.succeeded(now.Add(time.Duration(i)), addr)
	}
	if len(f.known) != AdminKnownClients {
		t.Fatalf("%d clients remembered, want %d", len(f.known), AdminKnownClients)
	}
	next := now.Add(AdminFailureWindow)
	for i := range AdminFailuresTotal {
		f.allow(next, "attacker-"+strconv.Itoa(i/AdminFailuresPerIP))
	}
	for addr, want := range map[string]bool{"admin-0": false, "admin-1": true, "admin-16": true, "stranger": false} {
		if ok, _ := f.allow(next, addr); ok != want {
			t.Errorf("%s once the global budget is spent: admitted %v, want %v", addr, ok, want)
		}
	}
	for range AdminFailuresPerIP - 1 {
		f.allow(next, "admin-1")
	}
	if ok, _ := f.allow(next, "admin-1"); ok {
		t.Error("a known client got more than its own budget")
	}
	later := now.Add(AdminKnownFor + 2*time.Second)
	for i := range AdminFailuresTotal {
		f.allow(later, "attacker-"+strconv.Itoa(i/AdminFailuresPerIP))
	}
	if ok, _ := f.allow(later, "admin-3"); ok {
		t.Error("a client known for longer than AdminKnownFor was spared the global budget")
	}
}
