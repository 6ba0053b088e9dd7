package httpapi

import (
	"sync"
	"time"
)

// Failed admin-token attempts are throttled, so that the token cannot be
// guessed at the speed of the HTTP server (7,000 tries a second before).
// An attempt over the budget is answered 429 without being evaluated.
const (
	// AdminFailuresPerIP is how many failed attempts one client (an IPv4
	// address, an IPv6 /64) gets per AdminFailureWindow.
	AdminFailuresPerIP = 5
	// AdminFailuresTotal is how many failed attempts all clients together
	// get per AdminFailureWindow, against guessing from many addresses.
	AdminFailuresTotal = 50
	// AdminFailureWindow is the window of both budgets.
	AdminFailureWindow = time.Second
)

// failureThrottle counts failures per client and in total in fixed
// windows. It keeps no more than one window's clients, at most
// AdminFailuresTotal of them.
type failureThrottle struct {
	mu     sync.Mutex
	start  time.Time
	total  int
	byAddr map[string]int
}

// allow reports whether addr may make an attempt at now, and if not, how
// long until it may. An admitted attempt counts as a failure at once:
// counted only once it had failed, a thousand attempts sent together would
// all be admitted before the first failure was. succeeded takes it back.
func (f *failureThrottle) allow(now time.Time, addr string) (bool, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roll(now)
	if f.total >= AdminFailuresTotal || f.byAddr[addr] >= AdminFailuresPerIP {
		return false, f.start.Add(AdminFailureWindow).Sub(now)
	}
	f.total++
	f.byAddr[addr]++
	return true, 0
}

// succeeded gives back the place of addr's attempt admitted at now, if
// its window is still the current one.
func (f *failureThrottle) succeeded(now time.Time, addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
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
