package cluster

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/ring"
)

// FailPolicy says what a node decides when no owner of a key can answer.
type FailPolicy uint8

const (
	// FailLocal decides on this node's own counter table, as Flask-Limiter
	// falls back to memory when its storage is down. Limits then hold per
	// node rather than per cluster until the owner answers again.
	FailLocal FailPolicy = iota
	// FailOpen allows the request.
	FailOpen
	// FailClosed denies the request, with a retry-after of one second.
	FailClosed
)

// String returns "local", "open" or "closed".
func (p FailPolicy) String() string {
	switch p {
	case FailLocal:
		return "local"
	case FailOpen:
		return "open"
	case FailClosed:
		return "closed"
	}
	return fmt.Sprintf("FailPolicy(%d)", uint8(p))
}

// ParseFailPolicy reads "local", "open" or "closed"; "" means local.
func ParseFailPolicy(s string) (FailPolicy, error) {
	switch s {
	case "", "local":
		return FailLocal, nil
	case "open":
		return FailOpen, nil
	case "closed":
		return FailClosed, nil
	}
	return 0, fmt.Errorf("fail policy %q: want local, open or closed", s)
}

// Config configures a Cluster. The root package's Config documents each
// field for users; this is its translation.
type Config struct {
	Name                string
	BindAddr            string
	AdvertiseAddr       string
	GossipPort          int
	RPCPort             int
	HTTPAddr            string
	Secret              []byte
	LocalTimings        bool
	DeadNodeReclaimTime time.Duration
	ForwardTimeout      time.Duration
	DialTimeout         time.Duration
	ProbeInterval       time.Duration
	FailPolicy          FailPolicy
	Ring                ring.Config
	Store               *bucket.Store
	Logger              *slog.Logger
	Metrics             *Metrics
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}
