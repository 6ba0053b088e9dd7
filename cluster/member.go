package cluster

import "fmt"

// State is a member's state as this node sees it.
type State uint8

const (
	// Alive: gossip reports the member alive; it is in the ring.
	Alive State = iota
	// Suspect: gossip suspects the member; it stays in the ring until
	// declared dead.
	Suspect
	// Unreachable: this node's forwards to the member failed, so this node
	// routes around it until it answers a ping again.
	Unreachable
	// Leaving: this node itself, during Close.
	Leaving
)

// String returns "alive", "suspect", "unreachable" or "leaving".
func (s State) String() string {
	switch s {
	case Alive:
		return "alive"
	case Suspect:
		return "suspect"
	case Unreachable:
		return "unreachable"
	case Leaving:
		return "leaving"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Member is a cluster member as this node saw it at the last ring rebuild.
type Member struct {
	Name     string
	RPCAddr  string
	HTTPAddr string
	State    State
	Self     bool
	// Incarnation changes each time the member starts.
	Incarnation uint64
}
