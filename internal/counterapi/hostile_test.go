package counterapi_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/clustertest"
)

// TestHostileInput: what one request can send is refused with the field
// it got wrong, and counts nothing.
func TestHostileInput(t *testing.T) {
	nodes := clustertest.StartNamed(t, 1)
	c := client(t)
	s := serve(t, nodes[0])
	long := strings.Repeat("k", 513)
	cases := []struct {
		op     string
		body   any
		status int
		field  string
	}{
		{"incr", []byte(``), 400, "body"},
		{"incr", []byte(`{"key":"k","expiry":60`), 400, "body"},
		{"incr", []byte(`[{"key":"k"}]`), 400, "body"},
		{"incr", []byte(`{"key":"k","expiry":"60"}`), 400, "expiry"},
		{"incr", []byte(`{"key":"k","expiry":60,"amount":1.5}`), 400, "amount"},
		{"incr", []byte(`{"key":"k","expiry":60} {"key":"k"}`), 400, "body"},
		{"incr", obj{"expiry": 60}, 400, "key"},
		{"incr", obj{"key": long, "expiry": 60}, 400, "key"},
		{"incr", obj{"key": "k"}, 400, "expiry"},
		{"incr", obj{"key": "k", "expiry": 0}, 400, "expiry"},
		{"incr", obj{"key": "k", "expiry": -1}, 400, "expiry"},
		{"incr", obj{"key": "k", "expiry": 86401}, 400, "expiry"},
		{"incr", obj{"key": "k", "expiry": 1e300}, 400, "expiry"},
		{"incr", obj{"key": "k", "expiry": 1e-12}, 400, "expiry"},
		{"incr", obj{"key": "k", "expiry": 60, "amount": -1}, 400, "amount"},
		{"incr", obj{"key": "k", "expiry": 60, "amount": int64(1) << 41}, 400, "amount"},
		{"incr", obj{"key": "k", "expiry": 60, "limit": 3}, 400, "limit"},
		{"incr", obj{"key": "k", "expiry": 60, "Key": "x"}, 400, "Key"},
		{"get", obj{"key": "k", "expiry": 60}, 400, "expiry"},
		{"acquire", obj{"key": "k", "expiry": 60}, 400, "limit"},
		{"acquire", obj{"key": "k", "expiry": 60, "limit": 4097}, 400, "limit"},
		{"acquire", obj{"key": "k", "expiry": 60, "limit": -1}, 400, "limit"},
		{"acquire", obj{"key": "k", "expiry": 60, "limit": 10, "amount": -3}, 400, "amount"},
		{"acquire", obj{"key": "k", "expiry": 60, "limit": 10, "amount": 1 << 20}, 400, "amount"},
		{"window", obj{"key": "k", "limit": 10}, 400, "expiry"},
		{"incr", append([]byte(`{"key":"`), append(bytes.Repeat([]byte("a"), 5000), `"}`...)...), 413, "body"},
	}
	for _, tc := range cases {
		_, status, text, err := call(c, s, tc.op, tc.body)
		if err != nil || status != tc.status || !strings.Contains(text, `"field":"`+tc.field+`"`) {
			t.Errorf("%s %s: %d %s %v; want %d about %q", tc.op, clipBody(tc.body), status, text, err, tc.status, tc.field)
		}
	}
	if got := must(t, c, s, "get", obj{"key": "k"}); got.Count != 0 {
		t.Fatalf("refused requests counted: get = %+v", got)
	}
	resp, err := c.Get(s.url + "/v1/counters/incr")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/counters/incr: %d, want 405", resp.StatusCode)
	}
}

func clipBody(b any) string {
	s, ok := b.([]byte)
	if !ok {
		return "(object)"
	}
	if len(s) > 40 {
		s = s[:40]
	}
	return string(s)
}

// TestMaxKeys: a node's table bound holds for the counter API as for any
// check: a new key beyond it is refused with 503, never counted silently.
func TestMaxKeys(t *testing.T) {
	n := clustertest.StartNode(t, t.Name(), func(cfg *ratemesh.Config) { cfg.Store.MaxKeys = 2 })
	c := client(t)
	s := serve(t, n)
	must(t, c, s, "incr", obj{"key": "a", "expiry": 60})
	must(t, c, s, "acquire", obj{"key": "b", "expiry": 60, "limit": 3})
	for _, op := range []struct {
		name string
		body obj
	}{{"incr", obj{"key": "c", "expiry": 60}}, {"acquire", obj{"key": "c", "expiry": 60, "limit": 3}}} {
		_, status, text, err := call(c, s, op.name, op.body)
		if err != nil || status != http.StatusServiceUnavailable || !strings.Contains(text, "store full") {
			t.Errorf("%s of a third key at --max-keys 2: %d %s %v; want 503 naming the full store", op.name, status, text, err)
		}
	}
	if got := must(t, c, s, "incr", obj{"key": "a", "expiry": 60}); got.Count != 2 {
		t.Fatalf("incr of a held key with the table full: count %d, want 2", got.Count)
	}
}
