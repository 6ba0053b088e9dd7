package httpapi

import (
	"context"

	"github.com/ratemesh/ratemesh"
)

// Limiter decides rate-limit checks. *ratemesh.Node satisfies it; so does
// anything that forwards to one.
//
// Check must not modify or retain req.Counters: the middleware passes
// slices it shares between requests.
type Limiter interface {
	Check(ctx context.Context, req ratemesh.Request) (ratemesh.Result, error)
}

// Cluster is what the service API needs from a node. *ratemesh.Node
// satisfies it.
type Cluster interface {
	Limiter
	// Reset forgets every counter of a routing key, cluster-wide.
	Reset(ctx context.Context, key string) error
	// Members lists the members this node knows, itself included.
	Members() []ratemesh.Member
	// Owner names the member that owns a routing key.
	Owner(key string) (ratemesh.Member, bool)
	// Name is this node's name.
	Name() string
	// Ready reports whether the node has joined and built its ring.
	Ready() bool
}
