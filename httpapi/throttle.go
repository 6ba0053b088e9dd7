package httpapi

import (
	"sync"
	"time"
)

// Failed admin-token attempts are throttled, so that the token cannot be
// guessed at the speed of the HTTP server (7,000 tries a second before).
// An attempt over the budget is answered 429 without being evaluated.
const (
	// AdminFailuresPerIP is how many failed attempts one client IP gets
	// per AdminFailureWindow.
	AdminFailuresPerIP = 5
	// AdminFailuresTotal is how many failed attempts all clients together
	// get per AdminFailureWindow, against guessing from many addresses.
	AdminFailuresTotal = 50
	// AdminFailureWindow is the window of both budgets.
	AdminFailureWindow = time.Second
)

// failureThrottle counts failures per client and in total in fixed
// windows. It keeps no more than one window's clients.
type failureThrottle struct {
	mu     sync.Mutex
	start  time.Time
	total  int
	byAddr map[string]int
}

// allow reports whether addr may make an attempt at now, and if not, how
// long until it may.
func (f *failureThrottle) allow(now time.Time, addr string) (bool, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roll(now)
	if f.total >= AdminFailuresTotal || f.byAddr[addr] >= AdminFailuresPerIP {
		return false, f.start.Add(AdminFailureWindow).Sub(now)
	}
	return true, 0
}

// failed records a failed attempt of addr at now.
func (f *failureThrottle) failed(now time.Time, addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roll(now)
	f.total++
	f.byAddr[addr]++
}

func (f *failureThrottle) roll(now time.Time) {
	if f.byAddr == nil || !now.Before(f.start.Add(AdminFailureWindow)) {
		f.start, f.total, f.byAddr = now, 0, map[string]int{}
	}
}
