package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// peerSet holds one Peer per member and the members this node suspects.
// A suspect is left out of this node's ring at once, without waiting for
// gossip to agree, and comes back when it answers a ping or gossip reports
// it joining again.
type peerSet struct {
	c        *Cluster
	mu       sync.Mutex
	peers    map[string]*dialed
	suspects map[string]time.Time // name → when suspected
	lastLog  map[string]time.Time // fallback log limiter, per peer
	// nsuspects is len(suspects), read without the lock on the check path.
	nsuspects atomic.Int64
}

// dialed is the Peer of one member at one address.
type dialed struct {
	addr string
	peer Peer
}

func (s *peerSet) init(c *Cluster) {
	s.c = c
	s.peers = map[string]*dialed{}
	s.suspects = map[string]time.Time{}
	s.lastLog = map[string]time.Time{}
}

// get returns the Peer of the member name at addr, dialling it (or
// replacing it, when the member came back on another address).
func (s *peerSet) get(name, addr string) Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.peers[name]
	if d != nil && d.addr == addr {
		return d.peer
	}
	if d != nil {
		s.retire(d.peer)
	}
	d = &dialed{addr: addr, peer: s.c.transport.Dial(addr)}
	s.peers[name] = d
	return d.peer
}

// sync closes the peers that are no longer members (live maps each
// member's name to its RPC address) and forgets their suspicion.
func (s *peerSet) sync(live map[string]string) {
	var gone []Peer
	s.mu.Lock()
	for name, d := range s.peers {
		if addr, ok := live[name]; !ok || addr != d.addr {
			gone = append(gone, d.peer)
			delete(s.peers, name)
		}
	}
	for name := range s.suspects {
		if _, ok := live[name]; !ok {
			delete(s.suspects, name)
		}
	}
	s.nsuspects.Store(int64(len(s.suspects)))
	s.mu.Unlock()
	for _, p := range gone {
		s.retire(p)
	}
}

// retire closes p once its calls in flight are answered, in the
// background: a check sent to a member that just left may have been
// applied there, and cutting its answer off would count it twice.
func (s *peerSet) retire(p Peer) {
	s.c.wg.Add(1)
	go func() {
		defer s.c.wg.Done()
		p.Retire()
	}()
}

func (s *peerSet) isSuspect(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.suspects[name]
	return ok
}

// suspect takes name out of this node's ring now.
func (s *peerSet) suspect(name string, cause error) {
	s.mu.Lock()
	_, already := s.suspects[name]
	if !already {
		s.suspects[name] = s.c.now()
		s.nsuspects.Store(int64(len(s.suspects)))
	}
	s.mu.Unlock()
	if !already {
		s.c.log.Warn("peer unreachable; routing around it", "peer", name, "err", cause)
		s.c.rebuild()
	}
}

// clear brings name back into this node's ring.
func (s *peerSet) clear(name string) {
	s.mu.Lock()
	_, was := s.suspects[name]
	delete(s.suspects, name)
	s.nsuspects.Store(int64(len(s.suspects)))
	s.mu.Unlock()
	if was {
		s.c.log.Info("peer answers again", "peer", name)
		m, _ := s.c.view.Load().member(name)
		s.redial(name, m.RPCAddr)
		s.c.rebuild()
	}
}

// redialer is a Peer that can be told its node answers again (rpc.Client).
type redialer interface{ Redial() }

// redial tells name's Peer, if this node keeps one, that name answers
// again or runs anew: a dial that failed while it was down is tried again
// at once, not after its backoff. Otherwise every call of the handoff
// pass that the news brings failed unsent, the peer was suspected again,
// and the replicas of its earlier run that only this node held stayed
// here until the next ring change — lost if this node crashed first (the
// no-data-dir 30-minute schedule's keys a whole limit over).
// Replication's own connection to it (addr) is redialled too.
func (s *peerSet) redial(name, addr string) {
	s.mu.Lock()
	d := s.peers[name]
	s.mu.Unlock()
	if d != nil {
		if r, ok := d.peer.(redialer); ok {
			r.Redial()
		}
	}
	if s.c.repl != nil && addr != "" {
		s.c.repl.redial(addr)
	}
}

// suspected returns the suspects this node has a Peer for, by name.
func (s *peerSet) suspected() map[string]Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Peer, len(s.suspects))
	for name := range s.suspects {
		if d := s.peers[name]; d != nil {
			out[name] = d.peer
		}
	}
	return out
}

// logFallback logs a fail-policy decision at most once per peer per second.
func (s *peerSet) logFallback(peer string, cause error) {
	now := s.c.now()
	s.mu.Lock()
	last, seen := s.lastLog[peer]
	due := !seen || now.Sub(last) >= time.Second
	if due {
		if len(s.lastLog) >= 1024 { // bound the limiter's own memory
			clear(s.lastLog)
		}
		s.lastLog[peer] = now
	}
	s.mu.Unlock()
	if due {
		s.c.log.Warn("no owner answered; fail policy decides", "policy", s.c.cfg.FallbackName, "peer", peer, "err", cause)
	}
}

func (s *peerSet) closeAll() {
	s.mu.Lock()
	all := s.peers
	s.peers = map[string]*dialed{}
	s.mu.Unlock()
	for _, d := range all {
		s.retire(d.peer) // Close waits for them with the cluster's goroutines
	}
}

// probeLoop pings suspected peers until they answer, and forgets old moves.
func (c *Cluster) probeLoop() {
	t := time.NewTicker(c.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.probe()
	}
}

// probe is one round of probeLoop.
func (c *Cluster) probe() {
	c.moved.expire(c.now())
	c.adoptRest(c.now())
	for name, p := range c.peers.suspected() {
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.ForwardTimeout)
		err := p.Ping(ctx)
		cancel()
		if err == nil {
			c.peers.clear(name)
		}
	}
}
