package cluster

import (
	"slices"
	"sync"
)

// The faults a test injects into a memNet: calls unanswered, held in
// flight, applied with their answers lost, refused unsent, or cut by a
// partition.

// setCut makes calls to addr fail as if its node did not answer (or
// answer again).
func (n *memNet) setCut(addr string, cut bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[addr] = cut
}

// hold keeps op calls to addr from their handler, as if in flight, until
// the returned release is called.
func (n *memNet) hold(op, addr string) (release func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.gates == nil {
		n.gates = map[string]chan struct{}{}
	}
	g := make(chan struct{})
	n.gates[op+" "+addr] = g
	return sync.OnceFunc(func() {
		n.mu.Lock()
		delete(n.gates, op+" "+addr)
		n.mu.Unlock()
		close(g)
	})
}

// loseAnswers makes op calls to addr reach their handler and then fail as
// a connection lost before the answer came (or stop doing so).
func (n *memNet) loseAnswers(op, addr string, lose bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.lose == nil {
		n.lose = map[string]bool{}
	}
	n.lose[op+" "+addr] = lose
}

// refuse makes op calls to addr fail unsent, as a client in its dial
// backoff fails them, once past a gate of hold (or stop doing so).
func (n *memNet) refuse(op, addr string, refuse bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.refused == nil {
		n.refused = map[string]bool{}
	}
	n.refused[op+" "+addr] = refuse
}

// partition splits the nodes into sides, by name: calls between sides
// fail, and each node's gossip view is its own side, as it is once
// failure detection has run. No sides heal the partition.
func (n *memNet) partition(sides ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.side, n.views = map[string]int{}, map[string][]string{}
	for i, names := range sides {
		for _, name := range names {
			n.side[memAddr(name)] = i
			n.views[name] = slices.Clone(names)
		}
	}
}
