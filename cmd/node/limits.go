package main

import (
	"cmp"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/connlimit"
)

// Defaults of the HTTP server's limits: what a client may hold open and
// for how long. A request that takes longer than the read timeout to
// arrive, body included, is cut: slow bodies cannot pin descriptors.
const (
	defaultReadTimeout       = 30 * time.Second
	defaultReadHeaderTimeout = 5 * time.Second
	defaultWriteTimeout      = 30 * time.Second
	defaultIdleTimeout       = 2 * time.Minute
	defaultMaxHeaderBytes    = 64 << 10
	defaultMaxConnsPerIP     = 256
	// fdReserve is how many descriptors the automatic connection cap
	// leaves for gossip, RPC, peers and files.
	fdReserve = 1024
	// minAutoConns is the floor of the automatic cap on a host whose
	// descriptor limit is small.
	minAutoConns = 64
)

// storeOptions bound the node's counter table (see bucket.StoreConfig).
type storeOptions struct {
	maxKeys, maxCounters, maxMovingSlots int
}

func (s *storeOptions) register(e *envFlags) {
	e.Int(&s.maxKeys, "max-keys", "RATEMESH_MAX_KEYS", bucket.DefaultMaxKeys, "routing keys the node's counter table holds at most; checks of new keys beyond it are refused (503), keys moving in from other nodes may take it 1/64 beyond and no further")
	e.Int(&s.maxCounters, "max-counters", "RATEMESH_MAX_COUNTERS", bucket.DefaultMaxCounters, "counters of all keys together the node holds at most")
	e.Int(&s.maxMovingSlots, "max-moving-window-slots", "RATEMESH_MAX_MOVING_WINDOW_SLOTS", bucket.DefaultMaxMovingWindowSlots, "timestamps (8 bytes each) all moving-window counters together hold at most")
}

// apply puts the bounds into cfg, refusing values that are not positive.
func (s *storeOptions) apply(cfg *ratemesh.Config) error {
	for _, f := range []struct {
		flag string
		v    int
	}{{"--max-keys", s.maxKeys}, {"--max-counters", s.maxCounters}, {"--max-moving-window-slots", s.maxMovingSlots}} {
		if f.v < 1 {
			return fmt.Errorf("%s %d: want at least 1", f.flag, f.v)
		}
	}
	cfg.Store.MaxKeys, cfg.Store.MaxCounters, cfg.Store.MaxMovingWindowSlots = s.maxKeys, s.maxCounters, s.maxMovingSlots
	return nil
}

// serverLimits bound what HTTP clients hold: connections and time.
type serverLimits struct {
	readTimeout, readHeaderTimeout time.Duration
	maxHeaderBytes                 int
	maxConns, maxConnsPerIP        int
}

func (l *serverLimits) register(e *envFlags) {
	e.Duration(&l.readTimeout, "read-timeout", "RATEMESH_READ_TIMEOUT", defaultReadTimeout, "longest time a client may take to send a whole request, body included; 0: the default")
	e.Duration(&l.readHeaderTimeout, "read-header-timeout", "RATEMESH_READ_HEADER_TIMEOUT", defaultReadHeaderTimeout, "longest time a client may take to send a request's headers; 0: the default")
	e.Int(&l.maxHeaderBytes, "max-header-bytes", "RATEMESH_MAX_HEADER_BYTES", defaultMaxHeaderBytes, "largest request header block accepted (431 beyond)")
	e.Int(&l.maxConns, "max-connections", "RATEMESH_MAX_CONNECTIONS", 0, fmt.Sprintf("HTTP connections open at once; more wait in the kernel's queue. 0: the descriptor limit minus %d kept for gossip and RPC (at least %d)", fdReserve, minAutoConns))
	e.Int(&l.maxConnsPerIP, "max-connections-per-ip", "RATEMESH_MAX_CONNECTIONS_PER_IP", defaultMaxConnsPerIP, "HTTP connections one client IP may hold open (--trusted-proxies are exempt); 0: no per-IP cap")
}

// resolve refuses limits that would switch a protection off by mistake
// and fills zero timeouts and header size with the defaults.
func (l *serverLimits) resolve() error {
	switch {
	case l.readTimeout < 0:
		return fmt.Errorf("--read-timeout %v: want a positive duration", l.readTimeout)
	case l.readHeaderTimeout < 0:
		return fmt.Errorf("--read-header-timeout %v: want a positive duration", l.readHeaderTimeout)
	case l.maxHeaderBytes != 0 && l.maxHeaderBytes < 1<<10:
		return fmt.Errorf("--max-header-bytes %d: want at least 1024", l.maxHeaderBytes)
	case l.maxConns < 0:
		return fmt.Errorf("--max-connections %d: want 0 (automatic) or more", l.maxConns)
	case l.maxConnsPerIP < 0:
		return fmt.Errorf("--max-connections-per-ip %d: want 0 (off) or more", l.maxConnsPerIP)
	}
	l.readTimeout = cmp.Or(l.readTimeout, defaultReadTimeout)
	l.readHeaderTimeout = cmp.Or(l.readHeaderTimeout, defaultReadHeaderTimeout)
	l.maxHeaderBytes = cmp.Or(l.maxHeaderBytes, defaultMaxHeaderBytes)
	return nil
}

// server returns an http.Server with the limits' timeouts.
func (l *serverLimits) server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadTimeout:       l.readTimeout,
		ReadHeaderTimeout: l.readHeaderTimeout,
		WriteTimeout:      defaultWriteTimeout,
		IdleTimeout:       defaultIdleTimeout,
		MaxHeaderBytes:    l.maxHeaderBytes,
	}
}

// listener caps ln's connections in total and per client IP.
func (l *serverLimits) listener(ln net.Listener, trusted []netip.Prefix) *connlimit.Listener {
	max := l.maxConns
	if max == 0 {
		max = autoMaxConns(descriptorLimit())
	}
	return connlimit.New(ln, connlimit.Config{Max: max, PerIP: l.maxConnsPerIP, Exempt: func(ip netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(ip) {
				return true
			}
		}
		return false
	}})
}

// autoMaxConns is the connection cap for a process allowed fds
// descriptors: all but fdReserve, and never fewer than minAutoConns.
func autoMaxConns(fds uint64) int {
	if fds <= fdReserve+minAutoConns {
		return minAutoConns
	}
	return int(min(fds-fdReserve, 1<<24))
}

// descriptorLimit is the process's soft limit on open descriptors (the Go
// runtime raises it to the hard limit at start), or 0 when unknown.
func descriptorLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return r.Cur
}
