package nodeapi

import (
	"cmp"
	"slices"
)

// topK counts the keys seen most often in a stream within bounded memory:
// the space-saving algorithm (Metwally, Agrawal, El Abbadi, 2005). It
// keeps at most capacity keys; a new key when it is full takes the place
// of the least counted one and inherits its count as its error, so a
// key's count is at most err too high and every key seen more than
// total/capacity times is kept. Not safe for concurrent use.
type topK struct {
	capacity int
	entries  map[string]*TopKey
}

// TopKey is a key among the most denied: one counted key, with what the
// last denial of it said.
type TopKey struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
	// Err bounds how much of Count belongs to the keys this one evicted.
	Err   int64  `json:"err,omitempty"`
	Limit string `json:"limit"` // the limit that last denied the key
	Route string `json:"route,omitempty"`
	Reset int64  `json:"reset"` // epoch seconds when that limit reopens
}

func newTopK(capacity int) *topK {
	return &topK{capacity: capacity, entries: make(map[string]*TopKey, capacity)}
}

// add counts n more for e.Key and keeps e's limit, route and reset.
func (t *topK) add(e TopKey, n int64) {
	if cur := t.entries[e.Key]; cur != nil {
		cur.Count += n
		cur.Limit, cur.Route, cur.Reset = e.Limit, e.Route, e.Reset
		return
	}
	if len(t.entries) < t.capacity {
		e.Count, e.Err = n, 0
		t.entries[e.Key] = &e
		return
	}
	var low *TopKey
	for _, cur := range t.entries {
		if low == nil || cur.Count < low.Count {
			low = cur
		}
	}
	delete(t.entries, low.Key)
	e.Count, e.Err = low.Count+n, low.Count
	t.entries[e.Key] = &e
}

// merge adds every entry of o (counts and errors).
func (t *topK) merge(o []TopKey) {
	for _, e := range o {
		t.add(e, e.Count)
		t.entries[e.Key].Err += e.Err
	}
}

// top returns at most n entries, most counted first (ties by key).
func (t *topK) top(n int) []TopKey {
	out := make([]TopKey, 0, len(t.entries))
	for _, e := range t.entries {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b TopKey) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Key, b.Key))
	})
	return out[:min(n, len(out))]
}
