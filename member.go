package ratemesh

import "github.com/ratemesh/ratemesh/cluster"

// Member is a cluster member as a node sees it.
type Member struct {
	// Name is the member's unique name.
	Name string
	// RPCAddr is where peers forward checks to it.
	RPCAddr string
	// HTTPAddr is its HTTP API, if it gossips one.
	HTTPAddr string
	// State is how this node sees it.
	State MemberState
	// Self is true for the node that was asked.
	Self bool
}

// MemberState is a member's state as one node sees it.
type MemberState string

// The member states. Members StateAlive or StateSuspect are in the ring.
const (
	// StateAlive: gossip reports the member alive.
	StateAlive MemberState = "alive"
	// StateSuspect: gossip suspects the member; it stays in the ring
	// until declared dead.
	StateSuspect MemberState = "suspect"
	// StateUnreachable: this node's forwards to the member failed, so this
	// node routes around it until it answers a ping again.
	StateUnreachable MemberState = "unreachable"
	// StateLeaving: the node itself, while it leaves (Close).
	StateLeaving MemberState = "leaving"
)

func memberOf(m cluster.Member) Member {
	return Member{Name: m.Name, RPCAddr: m.RPCAddr, HTTPAddr: m.HTTPAddr, State: MemberState(m.State.String()), Self: m.Self}
}
