package cluster

import (
	"context"
	"errors"
	"testing"

	"github.com/ratemesh/ratemesh/internal/rpc"
)

// A pull (Take) for a node that is not a member, or for a member at
// another address, is refused: the key's count stays, and its checks are
// not sent anywhere the caller chose.
func TestTakeForStrangerRefused(t *testing.T) {
	net, clock := newMemNet(), newManualClock()
	nodes := startMemCluster(t, net, clock, "n0", "n1")
	n0 := nodes[0]
	key := keyOn(t, []string{"n0", "n1"}, "n0")
	cs := perMinute(t, 5)
	if got, _ := checkN(t, n0, key, cs, 3); got != 3 {
		t.Fatalf("before: %d of 3 allowed", got)
	}
	for _, req := range []rpc.TakeRequest{
		{Key: key, To: "mallory", ToAddr: memAddr("mallory")},
		{Key: key, To: "n1", ToAddr: "10.6.6.6:9091"},
		{Key: key, To: "n0", ToAddr: memAddr("n0")},
	} {
		r, err := handler{n0.Cluster}.Take(context.Background(), &req)
		var nm *NotMemberError
		if !errors.As(err, &nm) || r.Found || nm.Name != req.To {
			t.Errorf("Take to %s at %s: found %v, err %v; want a NotMemberError", req.To, req.ToAddr, r.Found, err)
		}
	}
	got, last := checkN(t, n0, key, cs, 5)
	if got != 2 || last.Node != "n0" {
		t.Errorf("after the refused takes: %d of 5 allowed, by %s; want 2 by n0", got, last.Node)
	}
	// A member's pull is served.
	r, err := handler{n0.Cluster}.Take(context.Background(), &rpc.TakeRequest{Key: key, To: "n1", ToAddr: memAddr("n1")})
	if err != nil || !r.Found || r.Supersedes || r.Entry.Counters[0].Count != 5 {
		t.Errorf("Take to n1: %+v %v; want the entry with 5 hits, not superseding", r, err)
	}
}
