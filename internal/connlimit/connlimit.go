// Package connlimit caps the connections a listener holds open: in total,
// so that clients cannot take every file descriptor from gossip and RPC,
// and per client IP, so that one client cannot take every slot.
package connlimit

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Config sets the caps of a Listener.
type Config struct {
	// Max bounds the connections open at once. When that many are open,
	// Accept waits for one to close: further clients wait in the kernel's
	// accept queue and use no descriptor of this process. Must be > 0.
	Max int
	// PerIP bounds the connections of one client IP; a connection over it
	// is closed at once. 0 means no per-IP cap.
	PerIP int
	// Exempt reports whether an IP is exempt from PerIP: a trusted proxy
	// carries many clients' connections. Nil exempts none.
	Exempt func(netip.Addr) bool
}

// Listener wraps a net.Listener with the caps of a Config.
type Listener struct {
	net.Listener
	cfg   Config
	slots chan struct{}
	done  chan struct{} // closed by Close
	close sync.Once

	mu    sync.Mutex
	perIP map[netip.Addr]int

	refused atomic.Int64
	open    atomic.Int64
}

// New returns ln with the caps of cfg.
func New(ln net.Listener, cfg Config) *Listener {
	return &Listener{Listener: ln, cfg: cfg, slots: make(chan struct{}, max(cfg.Max, 1)), done: make(chan struct{}), perIP: make(map[netip.Addr]int)}
}

// Refused is the number of connections closed for being over PerIP.
func (l *Listener) Refused() int64 { return l.refused.Load() }

// Open is the number of connections open now.
func (l *Listener) Open() int { return int(l.open.Load()) }

// Accept waits for a free slot, then for a connection within its IP's cap.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			return nil, err
		}
		ip, ok := l.admit(nc.RemoteAddr())
		if !ok {
			l.refused.Add(1)
			nc.Close()
			continue
		}
		l.open.Add(1)
		return &conn{Conn: nc, l: l, ip: ip}, nil
	}
}

// Close closes the listener and ends an Accept waiting for a slot.
func (l *Listener) Close() error {
	l.close.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// admit counts a connection from addr against its IP's cap.
func (l *Listener) admit(addr net.Addr) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil || l.cfg.PerIP <= 0 {
		return netip.Addr{}, true
	}
	ip := ap.Addr().Unmap()
	if l.cfg.Exempt != nil && l.cfg.Exempt(ip) {
		return netip.Addr{}, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[ip] >= l.cfg.PerIP {
		return netip.Addr{}, false
	}
	l.perIP[ip]++
	return ip, true
}

func (l *Listener) release(ip netip.Addr) {
	if ip.IsValid() {
		l.mu.Lock()
		if l.perIP[ip]--; l.perIP[ip] <= 0 {
			delete(l.perIP, ip)
		}
		l.mu.Unlock()
	}
	l.open.Add(-1)
	<-l.slots
}

// conn gives its slot back once, on the first Close.
type conn struct {
	net.Conn
	l    *Listener
	ip   netip.Addr
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}
