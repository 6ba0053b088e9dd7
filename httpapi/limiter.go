package httpapi

import (
	"context"

	"github.com/ratemesh/ratemesh"
)

// Cluster decides rate-limit checks: what the middleware needs from a
// node. *ratemesh.Node satisfies it; so does anything that forwards to one.
//
// Check must not modify or retain req.Counters: the middleware passes
// slices it shares between requests.
type Cluster interface {
	Check(ctx context.Context, req ratemesh.Request) (ratemesh.Result, error)
}
