package cluster

import (
	"context"

	"github.com/ratemesh/ratemesh/bucket"
)

// A restarted owner takes its counts back from its successor — handed
// back, or pulled by a check — and its successor gives them up. Until the
// owner's next replication (replicaFlush, plus one RPC) the owner holds
// the only copy, and a node killed again during its own restart is killed
// in just that window often enough: the fault schedule's "kill-in-restart"
// lost whole counts that way, the successor then deciding the key from
// zero. So counts that come back to a restarted owner are copied to its
// successors at once, before the merge is answered or the pulled key
// decided: if the owner dies before, its successor holds the count again.

// copyNow sends the current state of entries' keys this node owns to their
// successors and waits for the answers (each bounded by ForwardTimeout).
// It goes on the peers' check connections, not the replication loop's
// (which only the loop may use): it is rare, and must not wait for the
// loop.
func (r *replicator) copyNow(ctx context.Context, entries []bucket.Entry) {
	keys := func(yield func(string) bool) {
		for _, e := range entries {
			if !yield(e.Key) {
				return
			}
		}
	}
	for m, es := range r.batches(keys, len(entries)) {
		r.sendVia(ctx, r.c.peers.get(m.Name, m.Addr), es)
	}
}
