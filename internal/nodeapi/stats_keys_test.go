package nodeapi_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh/internal/fakecluster"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// GET /v1/stats shows a denied client's key as it is only to a caller
// presenting an API token or the admin token; anyone else sees
// HideKey of it, and the key appears nowhere in the body. A wrong token
// shows hashes, and so does the right admin token once its sender spent
// its 5 failures of the second: /v1/stats is no faster way to guess it.
func TestStatsHidesKeysWithoutToken(t *testing.T) {
	const admin, api = "admin-0123456789abcdef", "api-0123456789abcdef"
	n := fakecluster.New("hide-keys")
	tokens, err := nodeapi.NewTokens([]string{api})
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("cluster-wide key hash secret")
	now := time.Unix(1_700_000_000, 0)
	e := echo.New()
	cfg := nodeapi.ServiceConfig{Stats: nodeapi.NewStats(), AdminToken: admin, APITokens: tokens, KeyHashSecret: secret, Now: func() time.Time { return now }}
	if err := nodeapi.RegisterService(e, n, cfg); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{`"allowed":true`, `"allowed":false`} {
		if rec := testkit.Send(e, "POST", "/v1/check", `{"key":"victim-secret-key","limits":"1 per minute"}`); rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
			t.Fatalf("check %d: %d %s, want 200 and %s", i, rec.Code, rec.Body, want)
		}
	}
	raw := nodeapi.CheckKeyPrefix + "victim-secret-key"
	hidden := nodeapi.HideKey(secret, raw)
	top := func(peer, auth string) (string, string) {
		rec := testkit.Do(e, "GET", "/v1/stats", peer, "Authorization", auth)
		var st nodeapi.StatsResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != 200 || len(st.TopDenied) != 1 || len(st.Nodes[0].TopDenied) != 1 {
			t.Fatalf("GET /v1/stats (%q): %d %v %.300s", auth, rec.Code, err, rec.Body)
		}
		if st.TopDenied[0].Key != st.Nodes[0].TopDenied[0].Key {
			t.Fatalf("cluster top %q, node top %q: want the same", st.TopDenied[0].Key, st.Nodes[0].TopDenied[0].Key)
		}
		return st.TopDenied[0].Key, rec.Body.String()
	}
	for _, c := range []struct{ auth, want string }{{"", hidden}, {"Bearer wrong-0123456789abcdef", hidden}, {"Bearer " + admin, raw}, {"Bearer " + api, raw}} {
		key, body := top("192.0.2.1:1", c.auth)
		if key != c.want || (c.want == hidden && strings.Contains(body, "victim")) {
			t.Fatalf("Authorization %q: top key %q, want %q, and the raw key nowhere when hidden:\n%.500s", c.auth, key, c.want, body)
		}
	}
	if len(hidden) != 13 || !strings.HasPrefix(hidden, "#") {
		t.Fatalf("hidden key %q, want # and 12 hex digits", hidden)
	}
	for i := range 5 {
		if key, _ := top("192.0.2.2:1", fmt.Sprint("Bearer guess-", i)); key != hidden {
			t.Fatalf("guess %d: %q", i, key)
		}
	}
	if key, _ := top("192.0.2.2:1", "Bearer "+admin); key != hidden {
		t.Fatalf("the admin token after 5 wrong ones in the second: %q, want %q", key, hidden)
	}
	now = now.Add(time.Second)
	if key, _ := top("192.0.2.2:1", "Bearer "+admin); key != raw {
		t.Fatalf("the admin token the next second: %q, want %q", key, raw)
	}
}
