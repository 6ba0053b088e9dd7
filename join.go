package ratemesh

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrNotJoined is returned by Check on a node given Config.Seeds that has
// not joined them: the check's context ended first, or the join failed.
// Such a node never decides alone a key it might not own in the cluster
// it is joining.
var ErrNotJoined = errors.New("ratemesh: node has not joined its cluster yet")

// joinState tracks a node's join of Config.Seeds. A node with no seeds is
// the first of its cluster and joined from the start.
type joinState struct {
	done chan struct{} // closed when the join succeeded or failed
	once sync.Once
	err  error // the join's failure; read after done
}

func newJoinState(seeds []string) *joinState {
	j := &joinState{done: make(chan struct{})}
	if len(seeds) == 0 {
		j.finish(nil)
	}
	return j
}

func (j *joinState) finish(err error) {
	j.once.Do(func() {
		j.err = err
		close(j.done)
	})
}

// joined reports whether the node may decide: its join is done and did
// not fail.
func (j *joinState) joined() bool {
	select {
	case <-j.done:
		return j.err == nil
	default:
		return false
	}
}

// wait returns nil once the node has joined, or ErrNotJoined when ctx
// ends first or the join failed.
func (j *joinState) wait(ctx context.Context) error {
	if j.joined() {
		return nil
	}
	select {
	case <-j.done:
		if j.err != nil {
			return fmt.Errorf("%w: %w", ErrNotJoined, j.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w (%w)", ErrNotJoined, ctx.Err())
	}
}

// joinSeeds joins Config.Seeds, retrying until JoinTimeout, and records
// the outcome. On failure the node stays unready and refuses checks: a
// node that decided alone would count keys its cluster owns elsewhere.
func (n *Node) joinSeeds() {
	defer n.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.JoinTimeout)
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := n.cl.Join(ctx, n.cfg.Seeds...)
	switch {
	case err == nil:
	case n.stopping():
		// Closed while joining (a SIGTERM during the join): nothing
		// failed, and no one will wait for this node to restart.
		n.cfg.Logger.Info("join abandoned: the node is stopping", "seeds", n.cfg.Seeds)
	default:
		n.cfg.Logger.Error("join failed; this node stays unready and refuses checks until restarted", "seeds", n.cfg.Seeds, "timeout", n.cfg.JoinTimeout, "err", err)
	}
	n.join.finish(err)
	if err == nil && n.cfg.RejoinInterval > 0 {
		n.every(n.cfg.RejoinInterval, n.rejoin)
	}
}

// stopping reports whether Close has begun.
func (n *Node) stopping() bool {
	select {
	case <-n.stop:
		return true
	default:
		return false
	}
}

// rejoin joins the seeds' addresses that are not live members, once. A
// failure is logged (once an interval, as this runs once an interval) and
// the members the node has are kept.
func (n *Node) rejoin() bool {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RejoinInterval)
	defer cancel()
	if err := n.cl.Rejoin(ctx, n.cfg.Seeds...); err != nil {
		n.cfg.Logger.Warn("rejoin failed; keeping the members this node has", "seeds", n.cfg.Seeds, "err", err)
	}
	return true
}

// WaitJoined returns once the node has joined Config.Seeds (at once for a
// node without seeds), or the join's error, or ErrNotJoined when ctx ends
// first.
func (n *Node) WaitJoined(ctx context.Context) error {
	return n.join.wait(ctx)
}
