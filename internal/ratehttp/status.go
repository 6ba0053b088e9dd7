package ratehttp

import (
	"time"

	"github.com/ratemesh/ratemesh/bucket"
)

// CeilSeconds rounds d up to whole seconds, at least 0.
func CeilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// EpochCeil is t in epoch seconds, rounded up so that a client waiting
// until then is never early.
func EpochCeil(t time.Time) int64 {
	if t.Nanosecond() > 0 {
		return t.Unix() + 1
	}
	return t.Unix()
}

// RetryAfter is the wait a denied status asks for. A cost larger than the
// limit can never pass (bucket.RetryNever); clients are then told to wait
// one window, not forever.
func RetryAfter(s *bucket.Status) time.Duration {
	if s.RetryAfter == bucket.RetryNever {
		return s.Limit.Period
	}
	return s.RetryAfter
}

// Pick chooses the status a response describes: the one that denied (the
// longest wait, if several did), otherwise the one with least remaining.
// Ties go to the first. It returns -1 for no statuses.
func Pick(statuses []bucket.Status, allowed bool) int {
	best := -1
	if !allowed {
		for i := range statuses {
			if statuses[i].RetryAfter > 0 && (best < 0 || statuses[i].RetryAfter > statuses[best].RetryAfter) {
				best = i
			}
		}
		if best >= 0 {
			return best
		}
	}
	for i := range statuses {
		if best < 0 || statuses[i].Remaining < statuses[best].Remaining {
			best = i
		}
	}
	return best
}

// At is &sts[i], or nil when i is out of range.
func At(sts []bucket.Status, i int) *bucket.Status {
	if i < 0 || i >= len(sts) {
		return nil
	}
	return &sts[i]
}
