package nodeapi

import (
	"sync"
	"time"
)

// Failed admin-token attempts are throttled, so that the token cannot be
// guessed at the speed of the HTTP server (7,000 tries a second before).
// An attempt over a budget is answered 429 without being evaluated.
//
// The budget that matters is the client's own: one client (an IPv4
// address, an IPv6 /64) cannot make the admin wait. The global budget is
// only a ceiling on guessing from very many addresses, set far above what
// a few attackers reach: at 50 a second, 12 addresses guessing at their
// own budget locked the real admin out 7 times in 10.
const (
	// AdminFailuresPerIP is how many failed attempts one client gets per
	// AdminFailureWindow.
	AdminFailuresPerIP = 5
	// AdminFailuresTotal is how many failed attempts all clients together
	// get per AdminFailureWindow: AdminFailuresTotal/AdminFailuresPerIP
	// (200) clients guessing at their own budget before anyone waits. It
	// also bounds the clients remembered, one window's worth.
	AdminFailuresTotal = 1000
	// AdminFailureWindow is the window of both budgets.
	AdminFailureWindow = time.Second
	// AdminKnownClients is how many clients that presented the admin token
	// the throttle remembers, for AdminKnownFor each: they are spared the
	// global budget (not their own), so that an attacker holding enough
	// addresses to spend it (an IPv6 /48 holds 65,536 /64s) does not lock
	// out an admin who succeeded from that client before. The oldest is
	// forgotten first.
	AdminKnownClients = 16
	// AdminKnownFor is how long a client that presented the admin token
	// is spared the global budget.
	AdminKnownFor = 24 * time.Hour
)

// failureThrottle counts failures per client and in total in fixed
// windows. It keeps no more than one window's clients, at most
// AdminFailuresTotal of them: a client enters the map only with an
// admitted attempt.
type failureThrottle struct {
	mu     sync.Mutex
	start  time.Time
	total  int
	byAddr map[string]int
	known  map[string]time.Time // client → when it last succeeded
}

// allow reports whether addr may make an attempt at now, and if not, how
// long until it may. An admitted attempt counts as a failure at once:
// counted only once it had failed, a thousand attempts sent together would
// all be admitted before the first failure was. succeeded takes it back.
// The client's own budget is looked at first, so that a client over it
// never takes from the global one.
func (f *failureThrottle) allow(now time.Time, addr string) (bool, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roll(now)
	if f.byAddr[addr] >= AdminFailuresPerIP || (f.total >= AdminFailuresTotal && !f.isKnown(now, addr)) {
		return false, f.start.Add(AdminFailureWindow).Sub(now)
	}
	f.total++
	f.byAddr[addr]++
	return true, 0
}

// succeeded gives back the place of addr's attempt admitted at now, if
// its window is still the current one, and remembers addr as a client of
// the admin.
func (f *failureThrottle) succeeded(now time.Time, addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.remember(now, addr)
	if f.byAddr[addr] == 0 || now.Before(f.start) || !now.Before(f.start.Add(AdminFailureWindow)) {
		return
	}
	f.total--
	if f.byAddr[addr]--; f.byAddr[addr] == 0 {
		delete(f.byAddr, addr)
	}
}

func (f *failureThrottle) roll(now time.Time) {
	if f.byAddr == nil || !now.Before(f.start.Add(AdminFailureWindow)) {
		f.start, f.total, f.byAddr = now, 0, map[string]int{}
	}
}

// isKnown reports whether addr presented the admin token less than
// AdminKnownFor before now. The caller holds mu.
func (f *failureThrottle) isKnown(now time.Time, addr string) bool {
	at, ok := f.known[addr]
	return ok && now.Sub(at) < AdminKnownFor
}

// remember notes that addr presented the admin token at now, forgetting
// the client that did longest ago when AdminKnownClients are known. The
// caller holds mu.
func (f *failureThrottle) remember(now time.Time, addr string) {
	if f.known == nil {
		f.known = map[string]time.Time{}
	}
	if _, ok := f.known[addr]; !ok && len(f.known) >= AdminKnownClients {
		oldest := ""
		for a, at := range f.known {
			if oldest == "" || at.Before(f.known[oldest]) {
				oldest = a
			}
		}
		delete(f.known, oldest)
	}
	f.known[addr] = now
}
