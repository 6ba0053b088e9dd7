package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/ratemesh/ratemesh/internal/rpc"
)

// peerSet holds one RPC client per peer and the peers this node suspects.
// A suspect is left out of this node's ring at once, without waiting for
// gossip to agree, and comes back when it answers a ping or gossip reports
// it joining again.
type peerSet struct {
	c        *Cluster
	mu       sync.Mutex
	clients  map[string]*peerClient
	suspects map[string]time.Time // name → when suspected
	lastLog  map[string]time.Time // fallback log limiter, per peer
}

type peerClient struct {
	addr   string
	client *rpc.Client
}

func (s *peerSet) init(c *Cluster) {
	s.c = c
	s.clients = map[string]*peerClient{}
	s.suspects = map[string]time.Time{}
	s.lastLog = map[string]time.Time{}
}

// client returns the RPC client for the named peer at addr, creating it (or
// replacing it, when the peer came back on another address).
func (s *peerSet) client(name, addr string) *rpc.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	pc := s.clients[name]
	if pc != nil && pc.addr == addr {
		return pc.client
	}
	if pc != nil {
		go pc.client.Close() // not under the lock: Close waits for its goroutines
	}
	pc = &peerClient{addr: addr, client: rpc.NewClient(addr, rpc.ClientConfig{
		Secret:      s.c.secret(),
		DialTimeout: s.c.cfg.DialTimeout,
		CallTimeout: s.c.cfg.ForwardTimeout,
		Logger:      s.c.log,
	})}
	s.clients[name] = pc
	return pc.client
}

// sync closes the clients of peers that are no longer members (live maps
// each member's name to its RPC address) and forgets their suspicion.
func (s *peerSet) sync(live map[string]string) {
	var gone []*rpc.Client
	s.mu.Lock()
	for name, pc := range s.clients {
		if addr, ok := live[name]; !ok || addr != pc.addr {
			gone = append(gone, pc.client)
			delete(s.clients, name)
		}
	}
	for name := range s.suspects {
		if _, ok := live[name]; !ok {
			delete(s.suspects, name)
		}
	}
	s.mu.Unlock()
	for _, cl := range gone { // outside the lock: Close waits for its goroutines
		cl.Close()
	}
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
		s.suspects[name] = time.Now()
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
	s.mu.Unlock()
	if was {
		s.c.log.Info("peer answers again", "peer", name)
		s.c.rebuild()
	}
}

// logFallback logs a fail-policy decision at most once per peer per second.
func (s *peerSet) logFallback(policy FailPolicy, peer string, cause error) {
	now := time.Now()
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
		s.c.log.Warn("no owner answered; fail policy decides", "policy", policy.String(), "peer", peer, "err", cause)
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
		c.moved.expire(c.now())
		c.peers.mu.Lock()
		var names []string
		var clients []*rpc.Client
		for name := range c.peers.suspects {
			if pc := c.peers.clients[name]; pc != nil {
				names = append(names, name)
				clients = append(clients, pc.client)
			}
		}
		c.peers.mu.Unlock()
		for i, cl := range clients {
			ctx, cancel := context.WithTimeout(c.ctx, c.cfg.ForwardTimeout)
			err := cl.Ping(ctx)
			cancel()
			if err == nil {
				c.peers.clear(names[i])
			}
		}
	}
}

func (s *peerSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, pc := range s.clients {
		pc.client.Close()
		delete(s.clients, name)
	}
}
