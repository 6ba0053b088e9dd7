package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/hashicorp/memberlist"

	"github.com/ratemesh/ratemesh/internal/logevery"
)

// gossipKey derives memberlist's AES key from the cluster secret, so one
// secret both authenticates RPC and encrypts gossip, and neither key can be
// learned from the other.
func gossipKey(secret []byte) []byte {
	h := sha256.New()
	h.Write([]byte("ratemesh gossip key v1\x00"))
	h.Write(secret)
	return h.Sum(nil)
}

// rpcKey derives the RPC handshake key from the cluster secret.
func rpcKey(secret []byte) []byte {
	h := sha256.New()
	h.Write([]byte("ratemesh rpc key v1\x00"))
	h.Write(secret)
	return h.Sum(nil)
}

// gossip is the membership a cluster builds its ring from: memberlist in a
// running node (membership below), a list the test sets in unit tests.
type gossip interface {
	// peers lists the members believed alive or suspect, this node
	// included.
	peers() []peer
	// changes delivers a value (coalesced) whenever membership changed.
	changes() <-chan struct{}
	// join contacts the seeds until one answers or ctx ends. Seeds that
	// resolve to this node alone make it the first of its cluster.
	join(ctx context.Context, seeds []string) error
	// rejoin contacts the seeds' addresses that are not live members and
	// reports how many answered.
	rejoin(ctx context.Context, seeds []string) (int, error)
	// leave announces this node's departure and stops gossip.
	leave(timeout time.Duration) error
	// addr is the host:port other nodes join through.
	addr() string
}

// membership wraps memberlist. Its delegates never block: they only note
// that something changed and wake the ring builder, which runs on its own
// goroutine.
type membership struct {
	ml       *memberlist.Memberlist
	name     string
	ringSig  string
	meta     []byte
	log      *slog.Logger
	resolver Resolver
	changed  chan struct{} // capacity 1: coalesces bursts of events

	mu       sync.Mutex
	conflict string            // set when another node claims our name
	badProto map[string]string // peer name → why it is kept out of the ring
}

func newMembership(cfg *Config, meta Meta, log *slog.Logger) (*membership, error) {
	m := &membership{name: cfg.Name, ringSig: meta.Ring, log: log, resolver: cfg.Resolve, changed: make(chan struct{}, 1), badProto: map[string]string{}}
	if m.resolver == nil {
		m.resolver = systemResolver
	}
	var err error
	if m.meta, err = meta.encode(); err != nil {
		return nil, err
	}
	mc := memberlist.DefaultLANConfig()
	if cfg.LocalTimings {
		mc = memberlist.DefaultLocalConfig()
		// On one busy host UDP gossip can be dropped; a full state sync
		// every 2s (instead of 15s) repairs a missed join or leave soon.
		mc.PushPullInterval = 2 * time.Second
	}
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.GossipPort
	mc.AdvertisePort = cfg.GossipPort
	if cfg.AdvertiseAddr != "" {
		mc.AdvertiseAddr = cfg.AdvertiseAddr
	}
	// A node restarted on a new port under its old name may take its name
	// back once the old incarnation has been dead this long.
	mc.DeadNodeReclaimTime = cfg.DeadNodeReclaimTime
	if len(cfg.Secret) > 0 {
		mc.SecretKey = gossipKey(cfg.Secret)
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	mc.Delegate = m
	mc.Events = m
	mc.Conflict = m
	mc.Logger = newStdLogger(log)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("cluster: start gossip on %s:%d: %w", cfg.BindAddr, cfg.GossipPort, err)
	}
	m.ml = ml
	return m, nil
}

func (m *membership) changes() <-chan struct{} { return m.changed }

func (m *membership) addr() string {
	n := m.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// signal wakes the ring builder without ever blocking memberlist.
func (m *membership) signal() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// NodeMeta implements memberlist.Delegate.
func (m *membership) NodeMeta(limit int) []byte { return m.meta }

// NotifyMsg implements memberlist.Delegate; ratemesh sends no user messages.
func (m *membership) NotifyMsg([]byte) {}

// GetBroadcasts implements memberlist.Delegate.
func (m *membership) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState implements memberlist.Delegate.
func (m *membership) LocalState(join bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (m *membership) MergeRemoteState(buf []byte, join bool) {}

// NotifyJoin implements memberlist.EventDelegate.
func (m *membership) NotifyJoin(n *memberlist.Node) { m.event(n) }

// NotifyLeave implements memberlist.EventDelegate.
func (m *membership) NotifyLeave(n *memberlist.Node) { m.event(n) }

// NotifyUpdate implements memberlist.EventDelegate.
func (m *membership) NotifyUpdate(n *memberlist.Node) { m.event(n) }

func (m *membership) event(n *memberlist.Node) {
	if n.Name == m.name {
		return
	}
	m.signal()
}

// NotifyConflict implements memberlist.ConflictDelegate. memberlist keeps
// the first node it saw under a name and silently ignores the second; we
// record it so Join can fail loudly instead.
func (m *membership) NotifyConflict(existing, other *memberlist.Node) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if existing.Name == m.name || other.Name == m.name {
		m.conflict = fmt.Sprintf("node name %q is used by both %s and %s", existing.Name, existing.Address(), other.Address())
	}
	m.log.Error("two nodes claim one name", "name", existing.Name, "existing", existing.Address(), "other", other.Address())
}

func (m *membership) conflictErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conflict == "" {
		return nil
	}
	return fmt.Errorf("cluster: %s; give each node a unique name", m.conflict)
}

// join resolves the seeds and contacts them, retrying both with
// exponential backoff until one answers or ctx ends. Seeds that resolve to
// this node's own address and nothing else make it the first node of its
// cluster: a StatefulSet's first pod, whose seed names itself.
func (m *membership) join(ctx context.Context, seeds []string) error {
	backoff := 50 * time.Millisecond
	for {
		addrs, onlySelf, err := m.resolve(ctx, seeds)
		if onlySelf && err == nil {
			m.log.Info("the seeds name only this node: it is the first of its cluster", "seeds", seeds)
			return nil
		}
		n := 0
		if len(addrs) > 0 {
			var joinErr error
			n, joinErr = m.ml.Join(addrs)
			err = errors.Join(err, joinErr)
		} else if err == nil {
			err = ErrNoSeedAddrs
		}
		if n > 0 {
			if err := m.conflictErr(); err != nil {
				return err
			}
			m.signal()
			return nil
		}
		if secretMismatch(err) {
			return fmt.Errorf("cluster: join %s: %w (%s)", strings.Join(seeds, ","), ErrSecretMismatch, oneLine(err))
		}
		m.log.Warn("join failed, retrying", "seeds", seeds, "err", oneLine(err), "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("cluster: join %s: %s (gave up: %w)", strings.Join(seeds, ","), oneLine(err), ctx.Err())
		case <-t.C:
		}
		if backoff *= 2; backoff > 2*time.Second {
			backoff = 2 * time.Second
		}
	}
}

// peer is a live member as the ring builder sees it.
type peer struct {
	Name  string
	Meta  Meta
	State State
	Self  bool
}

// peers lists the members memberlist believes alive (or suspect), with their
// metadata; members of another protocol version are logged once and left out.
func (m *membership) peers() []peer {
	nodes := m.ml.Members()
	out := make([]peer, 0, len(nodes))
	for _, n := range nodes {
		meta, err := decodeMeta(n.Meta)
		switch {
		case err != nil:
		case meta.Protocol != ProtocolVersion:
			err = fmt.Errorf("speaks protocol %d, this node %d", meta.Protocol, ProtocolVersion)
		case meta.Ring != m.ringSig:
			err = fmt.Errorf("places keys by ring %s, this node by %s", meta.Ring, m.ringSig)
		}
		if err != nil {
			m.noteBad(n.Name, err.Error())
			continue
		}
		state := Alive
		if n.State == memberlist.StateSuspect {
			state = Suspect
		}
		out = append(out, peer{Name: n.Name, Meta: meta, State: state, Self: n.Name == m.name})
	}
	return out
}

func (m *membership) noteBad(name, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.badProto[name] == why {
		return
	}
	m.badProto[name] = why
	m.log.Error("member kept out of the ring", "member", name, "reason", why)
}

// leave announces departure and stops gossip. A leave message that could
// not be confirmed in time (typically: no other member left to hear it) is
// only logged: the others then detect the departure as a failure.
//
// A node refused for taking a member's name leaves silently: its leave
// message would carry that name, and the others would drop the real member.
func (m *membership) leave(timeout time.Duration) error {
	if m.conflictErr() != nil {
		return m.ml.Shutdown()
	}
	if err := m.ml.Leave(timeout); err != nil {
		m.log.Warn("leave not confirmed by gossip; peers will detect it", "err", err)
	}
	return m.ml.Shutdown()
}

// newStdLogger adapts memberlist's "[LEVEL] text" log lines to slog.
// Warnings and errors are logged at most once per class and
// logevery.DefaultInterval: memberlist logs one ERROR line for each packet
// that does not decode, and 20,000 junk packets sent to the gossip port
// made 3.2 MB of log in 2.3 s.
func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(slogWriter{l: l, every: logevery.New(l, logevery.DefaultInterval)}, "", 0)
}

type slogWriter struct {
	l     *slog.Logger
	every *logevery.Logger
}

func (w slogWriter) Write(p []byte) (int, error) {
	s := strings.TrimSpace(string(p))
	prefixes := [...]struct {
		prefix string
		level  slog.Level
	}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}}
	level := slog.LevelInfo
	for _, p := range prefixes {
		if strings.HasPrefix(s, p.prefix) {
			level, s = p.level, strings.TrimSpace(s[len(p.prefix):])
			break
		}
	}
	s = strings.TrimPrefix(s, "memberlist: ")
	if level < slog.LevelWarn {
		// Joins, leaves and failures: news of members, not of strangers.
		w.l.Log(context.Background(), level, s, "component", "gossip")
		return len(p), nil
	}
	// Wall time, not the cluster's clock: the bound is on log written, and
	// a test clock standing still must not silence gossip for good.
	w.every.Log(time.Now(), level, gossipLogClass(level, s), s, "component", "gossip")
	return len(p), nil
}

// gossipLogClass names the class of memberlist line s: its level and the
// fixed words its format starts with ("Decrypt packet failed", "msg type
// "), without the addresses, numbers and errors that follow and vary.
func gossipLogClass(level slog.Level, s string) string {
	end := strings.IndexFunc(s, func(r rune) bool { return r != ' ' && !unicode.IsLetter(r) })
	if end < 0 {
		end = len(s)
	}
	return level.String() + " " + s[:min(end, maxGossipClass)]
}

// maxGossipClass bounds the bytes of a gossip log class. A class is a map
// key, never printed: a cut inside a character does no harm.
const maxGossipClass = 48
