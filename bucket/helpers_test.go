package bucket

import (
	"strconv"
	"testing"
	"time"
)

// t0 is an instant aligned to the hour (so to every minute bucket too).
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// step is one check at t0+at and what it must report for the single counter.
type step struct {
	at        time.Duration
	cost      int64
	allowed   bool
	remaining int64
	reset     time.Duration // Reset - t0
	retry     time.Duration
}

// runSteps runs steps in order against one key of s with the one counter c.
func runSteps(t *testing.T, s *Store, key string, c Counter, steps []step) {
	t.Helper()
	for i, st := range steps {
		got, ok, err := s.Check(t0.Add(st.at), key, []Counter{c}, st.cost, nil)
		if err != nil {
			t.Fatalf("step %d (t0+%v cost %d): %v", i, st.at, st.cost, err)
		}
		want := Status{Limit: c.Limit, Remaining: st.remaining, Reset: t0.Add(st.reset), RetryAfter: st.retry}
		if ok != st.allowed || len(got) != 1 || !sameStatus(got[0], want) {
			t.Fatalf("step %d (t0+%v cost %d): allowed=%v %s; want allowed=%v %s",
				i, st.at, st.cost, ok, fmtStatus(got), st.allowed, fmtStatus([]Status{want}))
		}
	}
}

func sameStatus(a, b Status) bool {
	return a.Limit == b.Limit && a.Remaining == b.Remaining && a.Reset.Equal(b.Reset) && a.RetryAfter == b.RetryAfter
}

func fmtStatus(ss []Status) string {
	out := ""
	for _, s := range ss {
		out += "{" + s.Limit.String() + " remaining=" + strconv.FormatInt(s.Remaining, 10) + " reset=t0+" + s.Reset.Sub(t0).String() +
			" retry=" + s.RetryAfter.String() + "}"
	}
	return out
}

// seconds is a readable duration for tables.
func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

const never = RetryNever
