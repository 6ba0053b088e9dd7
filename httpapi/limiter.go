package httpapi

import (
	"context"

	"github.com/ratemesh/ratemesh"
)

// Cluster decides rate-limit checks: what the middleware needs from a
// node. *ratemesh.Node satisfies it; so does anything that forwards to one,
// which then forwards FailPolicy too (embedding the Cluster it wraps does).
type Cluster interface {
	// Check decides req. It must not modify or retain req.Counters: the
	// middleware passes slices it shares between requests.
	Check(ctx context.Context, req ratemesh.Request) (ratemesh.Result, error)
	// FailPolicy is the fail policy Check has applied before it returns an
	// error. The middleware lets a request whose check failed through only
	// under ratemesh.FailOpen, and refuses it (503) otherwise (see
	// failure.go).
	FailPolicy() ratemesh.FailPolicy
}
