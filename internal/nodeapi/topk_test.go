package nodeapi

import (
	"strconv"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
)

// The sketch keeps its capacity whatever the number of keys, keeps every
// key seen more than total/capacity times, and over-counts a key by at
// most its err.
func TestTopKSpaceSaving(t *testing.T) {
	tk := newTopK(8)
	for i := range 1000 {
		tk.add(TopKey{Key: "noise-" + strconv.Itoa(i)}, 1)
		if i%4 == 0 {
			tk.add(TopKey{Key: "heavy", Limit: "5 per 1 minute"}, 1)
		}
	}
	if len(tk.entries) != 8 {
		t.Fatalf("%d entries, want 8", len(tk.entries))
	}
	top := tk.top(1)
	if top[0].Key != "heavy" || top[0].Count-top[0].Err > 250 || top[0].Count < 250 || top[0].Limit != "5 per 1 minute" {
		t.Fatalf("top %+v, want heavy with 250 within its err", top)
	}
	// Merging two nodes' tops adds counts and errors.
	m := newTopK(8)
	m.merge([]TopKey{{Key: "a", Count: 3}, {Key: "b", Count: 1, Err: 1}})
	m.merge([]TopKey{{Key: "a", Count: 2, Err: 1}})
	if got := m.top(2); got[0] != (TopKey{Key: "a", Count: 5, Err: 1}) || got[1] != (TopKey{Key: "b", Count: 1, Err: 1}) {
		t.Fatalf("merged %+v", got)
	}
}

// Stats keeps StatsHistory seconds, and the top of the last one to two
// minutes: a key denied three minutes ago is gone.
func TestStatsHistoryAndWindows(t *testing.T) {
	s := NewStats()
	t0 := time.Unix(1_800_000_000, 0)
	st := &bucket.Status{Limit: bucket.Limit{Amount: 5, Period: time.Minute}, RetryAfter: 30 * time.Second}
	s.allowed(t0)
	s.allowed(t0)
	s.denied(t0, "ip:192.0.2.1", "GET /x", st)
	s.shadowDenied(t0.Add(time.Second), "GET /y", "1 per 1 minute")
	a := s.activity(t0.Add(2 * time.Second))
	if len(a.History) != StatsHistory {
		t.Fatalf("%d seconds of history, want %d", len(a.History), StatsHistory)
	}
	h := a.History[StatsHistory-3:]
	if h[0] != (StatsSecond{Time: t0.Unix(), Allowed: 2, Denied: 1}) || h[1] != (StatsSecond{Time: t0.Unix() + 1, Shadow: 1}) || h[2] != (StatsSecond{Time: t0.Unix() + 2}) {
		t.Fatalf("history %+v", h)
	}
	if len(a.TopDenied) != 1 || a.TopDenied[0] != (TopKey{Key: "ip:192.0.2.1", Count: 1, Limit: "5 per 1 minute", Route: "GET /x", Reset: t0.Unix() + 30}) {
		t.Fatalf("top %+v", a.TopDenied)
	}
	if len(a.Shadow) != 1 || a.Shadow[0] != (ShadowCount{Route: "GET /y", Limit: "1 per 1 minute", Count: 1}) {
		t.Fatalf("shadow %+v", a.Shadow)
	}
	s.denied(t0.Add(90*time.Second), "ip:192.0.2.2", "GET /x", st)
	if a := s.activity(t0.Add(91 * time.Second)); len(a.TopDenied) != 2 {
		t.Fatalf("after 91 s: top %+v, want both keys", a.TopDenied)
	}
	if a := s.activity(t0.Add(200 * time.Second)); len(a.TopDenied) != 1 || a.TopDenied[0].Key != "ip:192.0.2.2" {
		t.Fatalf("after 200 s: top %+v, want only the later key", a.TopDenied)
	}
	if a := s.activity(t0.Add(StatsHistory * time.Second)); a.History[0].Time != t0.Unix()+1 || a.History[0].Shadow != 1 {
		t.Fatalf("history after %d s starts %+v", StatsHistory, a.History[0])
	}
}
