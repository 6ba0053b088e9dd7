package ring

import (
	"cmp"
	"math"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// Defaults used for zero Config fields. They differ from the library's
// (271, 20, 1.25); docs/design.md gives the measurements behind
// them.
const (
	// DefaultPartitionCount is the number of partitions keys hash into. A
	// prime spreads the xxhash values evenly over the modulus.
	DefaultPartitionCount = 4093
	// DefaultReplicationFactor is the number of virtual nodes per member.
	DefaultReplicationFactor = 200
	// DefaultLoad bounds a member at Load × its fair share of partitions.
	// It is a safety net against freak arcs rather than the balancer: a cap
	// that binds makes membership changes move partitions between members
	// that stayed.
	DefaultLoad = 1.5

	// MaxPartitionCount caps Config.PartitionCount: New builds a table of
	// this many entries, and so does every failover table Successors builds.
	MaxPartitionCount = 1 << 16
	// MaxReplicationFactor caps Config.ReplicationFactor: the library keeps
	// and sorts members × ReplicationFactor ring positions.
	MaxReplicationFactor = 1 << 10
)

// Version identifies how this package places keys: the library version
// (consistent v1.0.0), the hasher (xxhash), member ordering and the meaning
// of Config. It is raised whenever a change would place keys differently for
// the same members and Config. Nodes advertise it together with Config and
// keep peers that differ out of the ring, since they would pick other
// owners.
const Version = 1

// Member is one node of the ring. Name is its identity: two members with
// the same Name are the same member, whatever their Addr. The zero Member
// is what lookups return on an empty ring.
type Member struct {
	Name string // unique node name
	Addr string // RPC address, host:port
}

// Config tunes placement. Every node of a cluster must use the same Config
// (and the same library version), or nodes disagree on owners. The zero
// value selects the defaults.
type Config struct {
	// PartitionCount is the number of partitions keys hash into. Values
	// <= 0 select DefaultPartitionCount; values above MaxPartitionCount are
	// lowered to it.
	PartitionCount int
	// ReplicationFactor is the number of virtual nodes per member. Values
	// <= 0 select DefaultReplicationFactor; values above
	// MaxReplicationFactor are lowered to it.
	ReplicationFactor int
	// Load caps each member at ceil(PartitionCount/members × Load)
	// partitions (consistent hashing with bounded loads). 0 or NaN selects
	// DefaultLoad. Values below 1 are raised to 1: with Load < 1 the caps
	// can add up to fewer than PartitionCount and the library panics
	// ("not enough room to distribute partitions"). +Inf removes the bound
	// (plain consistent hashing with virtual nodes).
	Load float64
}

// normalize returns c with the documented substitutions applied; the result
// never makes consistent v1.0.0 panic for a non-empty, deduplicated member
// set.
func (c Config) normalize() Config {
	switch {
	case c.PartitionCount <= 0:
		c.PartitionCount = DefaultPartitionCount
	case c.PartitionCount > MaxPartitionCount:
		c.PartitionCount = MaxPartitionCount
	}
	switch {
	case c.ReplicationFactor <= 0:
		c.ReplicationFactor = DefaultReplicationFactor
	case c.ReplicationFactor > MaxReplicationFactor:
		c.ReplicationFactor = MaxReplicationFactor
	}
	switch {
	case c.Load == 0 || math.IsNaN(c.Load):
		c.Load = DefaultLoad
	case c.Load < 1:
		c.Load = 1
	}
	return c
}

// Ring maps routing keys to members. It is immutable once built by New and
// safe for concurrent use; rebuild it on every membership change. The zero
// Ring, like a nil *Ring, is an empty ring with the default Config.
type Ring struct {
	cfg     Config   // effective (normalized) configuration
	members []Member // sorted by Name, names unique
	owners  []int32  // partition → index into members; nil when empty
	// pos are the members' ring positions, sorted (see sortPositions):
	// Without and Successors place keys on fewer members without sorting
	// again.
	pos []position

	// Successors builds the placement of "members minus the ones already
	// tried" lazily and keeps it here; see successors.go.
	mu       sync.Mutex
	without  map[string]*lazyTable
	maxCache int
}

// New builds a ring over members with cfg. The result depends only on the
// set of member names (and cfg): order and duplicates do not matter. When
// several members share a Name, the one with the smallest Addr is kept, so
// every node keeps the same one.
//
// New never panics. An empty member set gives an empty ring (Owner reports
// false); out-of-range Config values are replaced as documented on Config.
func New(members []Member, cfg Config) *Ring {
	r := &Ring{cfg: cfg.normalize()}
	ms := slices.Clone(members)
	// Sorting before adding matters: on a ring-position collision the
	// library keeps the member added last, so insertion order would leak
	// into placement.
	slices.SortFunc(ms, func(a, b Member) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Addr, b.Addr))
	})
	ms = slices.CompactFunc(ms, func(a, b Member) bool { return a.Name == b.Name })
	if len(ms) == 0 {
		return r
	}
	r.members = slices.Clip(ms)
	r.pos = sortPositions(r.members, r.cfg.ReplicationFactor)
	r.owners = place(r.pos, nil, len(r.members), r.cfg)
	r.maxCache = max(1, maxCachedEntries/r.cfg.PartitionCount)
	return r
}

// Without returns the ring of r's members less those named (names of no
// member are ignored): the ring New builds from the members left, with
// r's Config, at a fraction of New's cost since the ring positions are
// sorted already. The cluster builds its routing ring, the full ring less
// the peers it suspects, this way.
func (r *Ring) Without(names ...string) *Ring {
	if r == nil || len(r.members) == 0 {
		return New(nil, r.Config())
	}
	drop := make([]byte, (len(r.members)+7)/8)
	dropped := 0
	for _, name := range names {
		if i, ok := slices.BinarySearchFunc(r.members, name, func(m Member, n string) int { return cmp.Compare(m.Name, n) }); ok && !isSet(drop, int32(i)) {
			drop[i/8] |= 1 << (i % 8)
			dropped++
		}
	}
	if dropped == 0 {
		return r
	}
	nr := &Ring{cfg: r.cfg, members: make([]Member, 0, len(r.members)-dropped)}
	renumber := make([]int32, len(r.members))
	for i, m := range r.members {
		renumber[i] = int32(len(nr.members))
		if !isSet(drop, int32(i)) {
			nr.members = append(nr.members, m)
		}
	}
	if len(nr.members) == 0 {
		nr.members = nil
		return nr
	}
	// Renumbering keeps the order of equal hashes: New's order.
	nr.pos = make([]position, 0, len(r.pos))
	for _, p := range r.pos {
		if !isSet(drop, p.member) {
			nr.pos = append(nr.pos, position{hash: p.hash, member: renumber[p.member]})
		}
	}
	nr.owners = place(nr.pos, nil, len(nr.members), nr.cfg)
	nr.maxCache = max(1, maxCachedEntries/nr.cfg.PartitionCount)
	return nr
}

// Owner returns the member that owns key, and false on an empty ring. It
// does not allocate.
func (r *Ring) Owner(key string) (Member, bool) {
	if r == nil || len(r.owners) == 0 {
		return Member{}, false
	}
	return r.members[r.owners[xxhash.Sum64String(key)%uint64(len(r.owners))]], true
}

// Partition returns the partition key hashes into, in [0, PartitionCount).
// It matches consistent's FindPartitionID (xxhash of the key modulo the
// partition count) and depends only on PartitionCount, not on the members,
// so it is defined on an empty ring too.
func (r *Ring) Partition(key string) int {
	return int(xxhash.Sum64String(key) % uint64(r.PartitionCount()))
}

// PartitionCount returns the effective number of partitions.
func (r *Ring) PartitionCount() int {
	return r.Config().PartitionCount
}

// PartitionOwner returns the owner of partition p, and false on an empty
// ring or when p is out of range.
func (r *Ring) PartitionOwner(p int) (Member, bool) {
	if r == nil || p < 0 || p >= len(r.owners) {
		return Member{}, false
	}
	return r.members[r.owners[p]], true
}

// Config returns the effective configuration: the one given to New with the
// documented substitutions applied. Nodes can compare it to refuse peers
// that would place keys differently.
func (r *Ring) Config() Config {
	if r == nil {
		return Config{}.normalize()
	}
	return r.cfg.normalize() // normalize again for the zero Ring
}

// Members returns a copy of the members, sorted by Name.
func (r *Ring) Members() []Member {
	if r == nil {
		return nil
	}
	return slices.Clone(r.members)
}

// Len returns the number of members.
func (r *Ring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.members)
}

// Has reports whether a member named name is in the ring.
func (r *Ring) Has(name string) bool {
	if r == nil {
		return false
	}
	_, ok := slices.BinarySearchFunc(r.members, name, func(m Member, n string) int { return cmp.Compare(m.Name, n) })
	return ok
}
