package ring

import (
	"math"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

// hasher is the consistent.Hasher of every ring. Owner and Partition hash
// keys with xxhash.Sum64String, which gives the same value for the same
// bytes without converting the key to a []byte.
type hasher struct{}

func (hasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

// libMember is what the library sees of a Member: the name (its identity
// on the ring) and the member's index in Ring.members, so a partition owner
// maps back to a Member without a map lookup.
type libMember struct {
	name string
	idx  int32
}

func (m libMember) String() string { return m.name }

// place runs consistent v1.0.0 over the members whose indices are in idx
// (ascending, so the library sees them sorted by name) and returns the
// owner index of every partition. cfg must be normalized and idx non-empty.
func place(members []Member, idx []int32, cfg Config) []int32 {
	owners, ok := tryPlace(members, idx, cfg)
	if !ok && !math.IsInf(cfg.Load, 1) {
		// Not reachable with a normalized Config: with Load >= 1 the caps
		// add up to at least PartitionCount. It could only happen if every
		// ring position of a member collided with another member's (64-bit
		// hashes), leaving its share unreachable. Every node hits the same
		// case, so falling back to unbounded load is still deterministic,
		// and with the bound gone the library always finds a position.
		cfg.Load = math.Inf(1)
		owners, ok = tryPlace(members, idx, cfg)
	}
	if !ok {
		return nil
	}
	return owners
}

// tryPlace is place without the fallback; ok is false if the library
// panicked or left a partition without an owner.
func tryPlace(members []Member, idx []int32, cfg Config) (owners []int32, ok bool) {
	defer func() {
		if recover() != nil {
			owners, ok = nil, false
		}
	}()
	lms := make([]consistent.Member, len(idx))
	for i, j := range idx {
		lms[i] = libMember{name: members[j].Name, idx: j}
	}
	c := consistent.New(lms, consistent.Config{
		Hasher:            hasher{},
		PartitionCount:    cfg.PartitionCount,
		ReplicationFactor: cfg.ReplicationFactor,
		Load:              cfg.Load,
	})
	owners = make([]int32, cfg.PartitionCount)
	for p := range owners {
		m, isLib := c.GetPartitionOwner(p).(libMember)
		if !isLib {
			return nil, false
		}
		owners[p] = m.idx
	}
	return owners, true
}
