package ratemesh

import (
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
)

func TestParseFailPolicy(t *testing.T) {
	for in, want := range map[string]FailPolicy{"": FailLocal, "local": FailLocal, "open": FailOpen, "closed": FailClosed} {
		if got, err := ParseFailPolicy(in); err != nil || got != want {
			t.Errorf("ParseFailPolicy(%q) = %v, %v", in, got, err)
		}
		if in != "" && want.String() != in {
			t.Errorf("%v.String() = %q", want, want.String())
		}
	}
	if _, err := ParseFailPolicy("sometimes"); err == nil || !strings.Contains(err.Error(), "sometimes") {
		t.Errorf("bad policy: %v", err)
	}
}

// Each policy's answer when no owner of a key answers, for three checks of
// a "2 per minute" limit: local counts on the asking node's table, open
// allows, closed denies with a retry-after of one second.
func TestFailPolicyDecides(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	limits, err := bucket.Parse("2 per minute")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		policy     FailPolicy
		allowed    []bool
		retryAfter time.Duration // of the third answer
	}{
		{FailLocal, []bool{true, true, false}, time.Minute},
		{FailOpen, []bool{true, true, true}, 0},
		{FailClosed, []bool{false, false, false}, time.Second},
	} {
		store := bucket.NewStore(bucket.StoreConfig{})
		req := rpc.CheckRequest{Key: "ip:1", Counters: []bucket.Counter{{Scope: "r", Limit: limits[0]}}, Cost: 1}
		var resp rpc.CheckResponse
		for i, want := range tc.allowed {
			if err := tc.policy.decide(store, now, &req, &resp); err != nil || resp.Allowed != want || len(resp.Statuses) != 1 {
				t.Fatalf("%v, check %d: allowed=%v statuses=%d err=%v; want allowed=%v", tc.policy, i+1, resp.Allowed, len(resp.Statuses), err, want)
			}
		}
		if ra := resp.Statuses[0].RetryAfter; ra != tc.retryAfter {
			t.Errorf("%v: retry-after %v, want %v", tc.policy, ra, tc.retryAfter)
		}
		if held := store.Has("ip:1"); held != (tc.policy == FailLocal) {
			t.Errorf("%v: the local table holds the key: %v", tc.policy, held)
		}
	}
}
