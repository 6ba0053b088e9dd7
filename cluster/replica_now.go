package cluster

import (
	"context"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/rpc"
	"github.com/ratemesh/ratemesh/ring"
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
// It goes on the peers' check connections, not the replication loop's:
// it is rare, and must not wait for the loop.
func (r *replicator) copyNow(ctx context.Context, entries []bucket.Entry) {
	now := r.c.now()
	v := r.c.view.Load()
	batches := map[ring.Member][]bucket.Entry{}
	succ := make([]ring.Member, 0, 1+r.n)
	for _, e := range entries {
		succ = v.full.AppendSuccessors(succ[:0], e.Key, 1+r.n)
		if len(succ) < 2 || succ[0].Name != r.c.name {
			continue
		}
		cur, ok := r.c.store.Export(now, e.Key)
		if !ok {
			continue
		}
		for _, m := range succ[1:] {
			batches[m] = append(batches[m], cur)
		}
	}
	for m, es := range batches {
		ctx, cancel := context.WithTimeout(ctx, r.c.cfg.ForwardTimeout)
		err := r.c.peers.get(m.Name, m.Addr).Replicate(ctx, &rpc.ReplicaRequest{From: r.c.name, Incarnation: r.c.incarnation, Entries: es})
		cancel()
		result := "sent"
		if err != nil {
			result = "failed"
		}
		r.c.metrics.replicaKeys.WithLabelValues(result).Add(float64(len(es)))
	}
}
