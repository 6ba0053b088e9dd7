package ring

import "github.com/cespare/xxhash/v2"

// hasher is the consistent.Hasher the library is run with in tests that
// compare placements with it.
type hasher struct{}

func (hasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

// libMember is what the library sees of a Member in those tests: its name,
// and its index in Ring.members.
type libMember struct {
	name string
	idx  int32
}

func (m libMember) String() string { return m.name }
