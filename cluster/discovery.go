package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Resolver turns the host of a seed into addresses: IPs, or host:port
// pairs that override the seed's port (as a DNS SRV record would). Nil in
// Config means the system's DNS resolver.
type Resolver func(ctx context.Context, host string) ([]string, error)

// maxRejoinAddrs bounds the addresses one rejoin contacts: a name that
// resolves to a thousand addresses must not stall the node for a thousand
// dial timeouts. Any one member lets gossip bring in the rest.
const maxRejoinAddrs = 3

// ErrNoSeedAddrs is returned (wrapped) when the seeds resolve to no
// address other than this node's own.
var ErrNoSeedAddrs = errors.New("cluster: the seeds resolve to no address but this node's")

// resolve turns seeds (host:port, the host a name or an IP) into gossip
// addresses, leaving out this node's own; onlySelf reports that they named
// nothing else. A seed that fails to resolve is skipped when another
// resolves; err names every failure.
func (m *membership) resolve(ctx context.Context, seeds []string) (addrs []string, onlySelf bool, err error) {
	self := m.addr()
	seen := map[string]bool{}
	var errs []error
	for _, seed := range seeds {
		found, err := m.resolveSeed(ctx, seed)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, a := range found {
			if a == self {
				onlySelf = true
			} else if !seen[a] {
				seen[a] = true
				addrs = append(addrs, a)
			}
		}
	}
	return addrs, onlySelf && len(addrs) == 0, errors.Join(errs...)
}

// resolveSeed resolves one host:port seed.
func (m *membership) resolveSeed(ctx context.Context, seed string) ([]string, error) {
	host, port, err := net.SplitHostPort(seed)
	if err != nil {
		return nil, fmt.Errorf("cluster: seed %q: want host:port (%v)", seed, err)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return []string{net.JoinHostPort(host, port)}, nil
	}
	found, err := m.resolver(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("cluster: resolve seed %q: %w", seed, err)
	}
	out := make([]string, 0, len(found))
	for _, a := range found {
		if _, _, err := net.SplitHostPort(a); err == nil {
			out = append(out, a)
		} else if ip, err := netip.ParseAddr(a); err == nil {
			out = append(out, net.JoinHostPort(ip.String(), port))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("cluster: seed %q resolves to no address", seed)
	}
	return out, nil
}

// systemResolver resolves with the system's DNS resolver.
func systemResolver(ctx context.Context, host string) ([]string, error) {
	return net.DefaultResolver.LookupHost(ctx, host)
}

// rejoin resolves seeds again and joins those of their addresses that are
// not live members, a few at a time: two clusters that formed apart
// merge, a node the others declared dead comes back, and a cluster whose
// seeds all restarted finds them again. It returns how many it reached.
func (m *membership) rejoin(ctx context.Context, seeds []string) (int, error) {
	addrs, _, err := m.resolve(ctx, seeds)
	live := map[string]bool{}
	for _, n := range m.ml.Members() {
		live[net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))] = true
	}
	var missing []string
	for _, a := range addrs {
		if !live[a] {
			missing = append(missing, a)
		}
	}
	if len(missing) == 0 {
		return 0, err
	}
	rand.Shuffle(len(missing), func(i, j int) { missing[i], missing[j] = missing[j], missing[i] })
	missing = missing[:min(len(missing), maxRejoinAddrs)]
	n, joinErr := m.ml.Join(missing)
	if n > 0 {
		m.signal()
		return n, nil
	}
	return 0, fmt.Errorf("cluster: rejoin %s: %w", strings.Join(missing, ","), flat(errors.Join(err, joinErr)))
}

// Rejoin resolves seeds again and joins the addresses among them that are
// not live members (at most a few per call). It returns nil when there
// was nothing to join or a join succeeded. Call it on an interval to heal
// what a single join at start cannot.
func (c *Cluster) Rejoin(ctx context.Context, seeds ...string) error {
	n, err := c.gossip.rejoin(ctx, seeds)
	if n > 0 {
		c.log.Info("rejoined", "seeds", seeds, "reached", n)
		c.rebuild()
	}
	return err
}
