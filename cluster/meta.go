package cluster

import (
	"fmt"

	"github.com/ratemesh/ratemesh/ring"
	"github.com/vmihailenco/msgpack/v5"
)

// ProtocolVersion is carried in every node's gossip metadata. Nodes only put
// peers with the same version into their ring: two versions could place keys
// differently or speak different RPC frames, and a split ring would let a
// client through twice. It is raised whenever the RPC's protocol version
// is: 4 came with RPC version 3, where merge, replica and refund are ops
// of their own; 5 with RPC version 4, where a merge carries the bases of
// counts continued from the receiver's replicas; 6 with RPC version 5,
// where a merge can be a fill-in from a data file; 7 with RPC version 6,
// where a merge names the run of its receiver it is meant for; 8 with
// RPC version 7, where a check says when it was sent and how long its
// caller waits; 9 with RPC version 8, where a merge says whether its
// counts were made beside their owner.
const ProtocolVersion = 9

// maxMetaSize is memberlist's hard cap on node metadata.
const maxMetaSize = 512

// Meta is the metadata a node gossips about itself.
type Meta struct {
	// Protocol is the sender's ProtocolVersion.
	Protocol int `msgpack:"p"`
	// RPCAddr is the host:port the node's RPC server listens on.
	RPCAddr string `msgpack:"r"`
	// HTTPAddr is the host:port of the node's HTTP API, if it serves one.
	HTTPAddr string `msgpack:"h,omitempty"`
	// Ring names the placement (ring version and config): nodes that place
	// keys differently must not share a ring.
	Ring string `msgpack:"g"`
	// Incarnation is chosen at random each time the node starts: a peer
	// that sees it change knows the node lost what it held in memory.
	Incarnation uint64 `msgpack:"i,omitempty"`
}

// ringSignature names the placement a ring config produces.
func ringSignature(cfg ring.Config) string {
	r := ring.New(nil, cfg).Config()
	return fmt.Sprintf("v%d/%d/%d/%g", ring.Version, r.PartitionCount, r.ReplicationFactor, r.Load)
}

func (m Meta) encode() ([]byte, error) {
	b, err := msgpack.Marshal(&m)
	if err != nil {
		return nil, err
	}
	if len(b) > maxMetaSize {
		return nil, fmt.Errorf("cluster: node metadata is %d bytes, over memberlist's %d-byte cap (addresses too long?)", len(b), maxMetaSize)
	}
	return b, nil
}

func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) == 0 {
		return m, fmt.Errorf("cluster: node has no metadata (not a ratemesh node?)")
	}
	if err := msgpack.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("cluster: bad node metadata: %w", err)
	}
	return m, nil
}
