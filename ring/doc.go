// Package ring places routing keys on cluster members: which member owns a
// key, which members take over when owners fail, and which partitions
// changed owner between two memberships.
//
// A Ring places keys exactly as github.com/buraksezer/consistent v1.0.0
// (consistent hashing with bounded loads) with an xxhash hasher does, but
// computes the placement itself in one sort of the ring positions: the
// library re-sorts them after adding each member, which made a ring of 50
// members cost 21 ms instead of 2. Every node of a cluster must place keys
// the same way, with the same Config (see Version). A Ring is immutable: rebuild it with New on every membership
// change and swap the pointer.
//
// # Placement
//
// A key belongs to partition xxhash(key) mod PartitionCount, exactly as the
// library's FindPartitionID computes it. New assigns every partition an
// owner once, as the library would, and keeps the answer in a table, so
// Owner is one hash and two slice loads, without locks or allocations.
// Members are sorted by name and deduplicated before placement: the
// same set of names gives the same owners on every node, whatever order
// gossip delivered them in.
//
// # Failover order
//
// Successors(key, n) starts with the owner; member k+1 is the member that
// would own the key if members 1..k were gone. This is the placement the
// cluster switches to once membership drops a failed owner, so failing over
// to Successors(key, 2)[1] puts the counters where the next ring routes the
// key. See Ring.Successors.
//
// # Safety and defaults
//
// The library panics, or loops without end, on some configurations (a Load
// below 1, negative counts, no members). New clamps every Config field into
// a range the library accepts and never panics. The defaults (4093
// partitions, 200 virtual nodes, Load 1.5) replace the library's (271, 20,
// 1.25), which spread keys poorly and move partitions between members that
// stayed. docs/design.md in the repository lists the library's panics and
// gives the survey behind the defaults.
package ring
