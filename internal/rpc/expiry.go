package rpc

import (
	"errors"
	"time"
)

// ErrExpired refuses, unapplied, a check read after its caller gave up
// on it: a server that was paused (SIGSTOP, a VM stalled) reads the checks
// that waited in its socket, and their callers decided each one elsewhere
// already. Applied here too, each would count twice. It travels as
// statusNotServing: unapplied, and the caller may send it elsewhere.
var ErrExpired = errors.New("rpc: check read after its caller gave up")

const (
	// expiryWindow is how long a connection's fastest lag stands: two
	// windows' worth, so that two clocks whose rates differ a little do
	// not drift apart for ever.
	expiryWindow = 30 * time.Second
	// expirySlack is added to twice a check's Wait before it counts as
	// given up: the caller's timer starts a moment after Sent, and its
	// clock and this one may run at rates that differ slightly.
	expirySlack = 50 * time.Millisecond
)

// expiry tells whether a check on one connection was read after its caller
// gave up. The two clocks differ by an unknown offset, the same for every
// check of the connection: a check's lag, the time of reading by this
// server's clock less its Sent by the caller's, is that offset plus the
// time it took to get here. The connection's smallest lag is the offset
// plus the fastest trip, so a check's lag less the smallest is how much
// longer than the fastest it took. No wall clock is read: both are
// monotonic, so neither can step. Used by the connection's reader only.
type expiry struct {
	fastest, before time.Duration // smallest lag of this window and of the last
	windowAt        time.Duration // when this window began, by the server's clock
	started         bool
}

// late reports how much longer than the connection's fastest check req
// took, read at now by the server's clock, and whether its caller gave up
// on it by then.
func (x *expiry) late(now time.Duration, req *CheckRequest) (time.Duration, bool) {
	if req.Wait <= 0 {
		return 0, false
	}
	lag := now - req.Sent
	switch {
	case !x.started || now-x.windowAt >= 2*expiryWindow:
		x.fastest, x.before, x.windowAt, x.started = lag, lag, now, true
	case now-x.windowAt >= expiryWindow:
		x.before, x.fastest, x.windowAt = x.fastest, lag, now
	}
	x.fastest = min(x.fastest, lag)
	late := lag - min(x.fastest, x.before)
	return late, late > 2*req.Wait+expirySlack
}
