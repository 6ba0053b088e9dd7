package nodeapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/fakecluster"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// serviceFor serves the service API of node.
func serviceFor(t *testing.T, node nodeapi.Node, reg *prometheus.Registry, admin string) *echo.Echo {
	t.Helper()
	e := echo.New()
	if err := nodeapi.RegisterService(e, node, nodeapi.ServiceConfig{AdminToken: admin, Registry: reg, MaxBody: 4096, MaxBatch: 3}); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestServiceCheck(t *testing.T) {
	n := fakecluster.New("svc")
	e := serviceFor(t, n, nil, "")
	before := time.Now()
	var got nodeapi.CheckResponse
	for i := 0; i < 3; i++ {
		rec := testkit.Send(e, "POST", "/v1/check", `{"key":"user:42","limits":"2 per minute; 5 per hour"}`)
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		got = nodeapi.CheckResponse{}
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			checkReset(t, got.Limits[0].Reset, before, time.Minute)
			checkReset(t, got.Limits[1].Reset, before, time.Hour)
		}
	}
	want := nodeapi.CheckResponse{Allowed: false, Key: "user:42", Node: "svc", Limits: []nodeapi.CheckLimit{
		{Limit: "2 per 1 minute", Remaining: 0, Reset: got.Limits[0].Reset, RetryAfter: 60},
		{Limit: "5 per 1 hour", Remaining: 3, Reset: got.Limits[1].Reset, RetryAfter: 0},
	}}
	if !testkit.EqualJSON(got, want) {
		t.Fatalf("third check = %+v, want %+v", got, want)
	}
	// Batch, with cost, strategy and scope; a peek (cost 0) consumes nothing.
	rec := testkit.Send(e, "POST", "/v1/check", `[
		{"key":"user:42","limits":"2 per minute; 5 per hour"},
		{"key":"user:42","limits":"10/hour","cost":4,"strategy":"token-bucket","scope":"uploads"},
		{"key":"user:43","limits":"1/minute","cost":0}]`)
	var batch []nodeapi.CheckResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &batch); err != nil || rec.Code != 200 || len(batch) != 3 {
		t.Fatalf("batch: %d %s %v", rec.Code, rec.Body, err)
	}
	if batch[0].Allowed || !batch[1].Allowed || batch[1].Limits[0].Remaining != 6 || !batch[2].Allowed || batch[2].Limits[0].Remaining != 1 {
		t.Fatalf("batch = %+v", batch)
	}
}

// checkReset checks an epoch-seconds reset one window after a first hit
// made after before (and before now).
func checkReset(t *testing.T, reset int64, before time.Time, window time.Duration) {
	t.Helper()
	lo, hi := before.Add(window).Unix(), time.Now().Add(window).Unix()+1
	if reset < lo || reset > hi {
		t.Fatalf("reset %d, want within [%d, %d]", reset, lo, hi)
	}
}

func TestServiceCheckBadInput(t *testing.T) {
	n := fakecluster.New("svcbad")
	e := serviceFor(t, n, nil, "")
	for _, tc := range []struct {
		body, field string
	}{
		{`{"key":"k","limits":"1/minute"`, "body"},
		{``, "body"},
		{`nonsense`, "body"},
		{`{"key":"k","limits":"1/minute"} {}`, "body"},
		{`{"limits":"1/minute"}`, "key"},
		{`{"key":"` + strings.Repeat("k", 600) + `","limits":"1/minute"}`, "key"},
		{`{"key":"k"}`, "limits"},
		{`{"key":"k","limits":"5 per fortnight"}`, "limits"},
		{`{"key":"k","limits":"5000 per minute","strategy":"moving-window"}`, "limits"},
		{`{"key":"k","limits":"1/minute","cost":-1}`, "cost"},
		{`{"key":"k","limits":"1/minute","cost":"one"}`, "cost"},
		{`{"key":"k","limits":"1/minute","cost":1.5}`, "cost"},
		{`{"key":"k","limits":"1/minute","strategy":"leaky-bucket"}`, "strategy"},
		{`{"key":"k","limits":"1/minute","colour":"red"}`, "colour"},
		{`{"key":7,"limits":"1/minute"}`, "key"},
		{`[]`, "body"},
		{`[{"key":"k","limits":"1/minute"},{"key":"k","limits":"1/minute","cost":-2}]`, "[1].cost"},
		{`[{"key":"k","limits":"1/minute"},{"key":"k","limits":"bad"}]`, "[1].limits"},
		{`[{"key":"k","limits":"1/minute","cost":"x"}]`, "[0].cost"},
		{`[{"key":"k","limits":"1/minute","extra":1}]`, "[0].extra"},
		{`[1]`, "[0]"},
		{`[{},{},{},{}]`, "body"},
	} {
		rec := testkit.Send(e, "POST", "/v1/check", tc.body)
		var fe struct{ Error, Field string }
		if err := json.Unmarshal(rec.Body.Bytes(), &fe); err != nil || rec.Code != 400 || fe.Field != tc.field || !strings.HasPrefix(fe.Error, tc.field) {
			t.Errorf("%.60s: %d %s; want 400 naming %q", tc.body, rec.Code, rec.Body, tc.field)
		}
	}
	// A bad check in a batch counts none of the batch.
	rec := testkit.Send(e, "POST", "/v1/check", `{"key":"k","limits":"1/minute","cost":0}`)
	if !strings.Contains(rec.Body.String(), `"remaining":1`) {
		t.Fatalf("a rejected batch consumed: %s", rec.Body)
	}
	rec = testkit.Send(e, "POST", "/v1/check", `{"key":"`+strings.Repeat("k", 5000)+`","limits":"1/minute"}`)
	if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), `"field":"body"`) {
		t.Fatalf("large body: %d %s", rec.Code, rec.Body)
	}
}

func TestServiceClusterAndAdmin(t *testing.T) {
	nodes := clustertest.StartNamed(t, 3)
	services := make([]*echo.Echo, len(nodes))
	for i, n := range nodes {
		services[i] = serviceFor(t, n, n.Registry(), "adm1n-token")
	}
	for i, e := range services {
		rec := testkit.Send(e, "GET", "/v1/cluster/members", "")
		var ms nodeapi.MembersResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &ms); err != nil || rec.Code != 200 {
			t.Fatalf("members: %d %s", rec.Code, rec.Body)
		}
		if ms.Node != nodes[i].Name() || len(ms.Members) != 3 {
			t.Fatalf("node %d members = %+v", i, ms)
		}
		self := 0
		for _, m := range ms.Members {
			if m.Self {
				self++
				if m.Name != nodes[i].Name() {
					t.Fatalf("node %d: self is %s", i, m.Name)
				}
			}
			if m.State != "alive" || m.RPCAddr == "" {
				t.Fatalf("member %+v", m)
			}
		}
		if self != 1 {
			t.Fatalf("node %d: %d members marked self", i, self)
		}
	}
	// Every node names the same owner.
	var owner string
	for i, e := range services {
		rec := testkit.Send(e, "GET", "/v1/cluster/owner?key=ip:198.51.100.1", "")
		var o nodeapi.OwnerResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &o); err != nil || rec.Code != 200 || o.Key != "ip:198.51.100.1" || o.Node != nodes[i].Name() {
			t.Fatalf("owner: %d %s", rec.Code, rec.Body)
		}
		if i == 0 {
			owner = o.Owner.Name
		} else if o.Owner.Name != owner {
			t.Fatalf("node %d says owner %s, node 0 says %s", i, o.Owner.Name, owner)
		}
	}
	if rec := testkit.Send(services[0], "GET", "/v1/cluster/owner", ""); rec.Code != 400 || !strings.Contains(rec.Body.String(), `"field":"key"`) {
		t.Fatalf("owner without key: %d %s", rec.Code, rec.Body)
	}

	// Use up a key on node 1, reset it through node 2, and it is whole on node 0.
	check := `{"key":"ip:198.51.100.1","limits":"1 per hour"}`
	if rec := testkit.Send(services[1], "POST", "/v1/check", check); !strings.Contains(rec.Body.String(), `"allowed":true`) {
		t.Fatalf("first check: %s", rec.Body)
	}
	if rec := testkit.Send(services[0], "POST", "/v1/check", check); !strings.Contains(rec.Body.String(), `"allowed":false`) {
		t.Fatalf("second check: %s", rec.Body)
	}
	for _, tc := range []struct {
		header []string
		code   int
		body   string
	}{
		{nil, 401, `{"error":"admin token required"}` + "\n"},
		{[]string{"Authorization", "Bearer wrong"}, 401, `{"error":"admin token wrong: it is not this node's admin token"}` + "\n"},
		{[]string{"Authorization", "adm1n-token"}, 401, `{"error":"admin token required"}` + "\n"},
		{[]string{"Authorization", "Bearer adm1n-token"}, 200, `{"node":"` + nodes[2].Name() + `","reset":"ip:198.51.100.1"}` + "\n"},
	} {
		rec := testkit.Send(services[2], "DELETE", "/v1/keys/ip:198.51.100.1", "", tc.header...)
		if rec.Code != tc.code || rec.Body.String() != tc.body {
			t.Fatalf("DELETE with %v: %d %s, want %d %s", tc.header, rec.Code, rec.Body, tc.code, tc.body)
		}
		if tc.code == 401 && rec.Header().Get("WWW-Authenticate") == "" {
			t.Fatal("401 without a challenge")
		}
	}
	if rec := testkit.Send(services[0], "POST", "/v1/check", check); !strings.Contains(rec.Body.String(), `"allowed":true`) {
		t.Fatalf("after reset: %s", rec.Body)
	}
}

func TestServiceAdminOffHealthMetrics(t *testing.T) {
	n := clustertest.StartNode(t, "svcmisc", nil)
	e := serviceFor(t, n, n.Registry(), "")
	if rec := testkit.Send(e, "DELETE", "/v1/keys/ip:1.2.3.4", "", "Authorization", "Bearer "); rec.Code != 404 ||
		rec.Body.String() != `{"error":"admin endpoint off: this node has no admin token, so keys cannot be reset through it"}`+"\n" {
		t.Fatalf("admin endpoint without a token configured: %d %s", rec.Code, rec.Body)
	}
	if rec := testkit.Send(e, "GET", "/healthz", ""); rec.Code != 200 || rec.Body.String() != `{"status":"ok","node":"svcmisc"}`+"\n" {
		t.Fatalf("healthz: %d %s", rec.Code, rec.Body)
	}
	if rec := testkit.Send(e, "GET", "/readyz", ""); rec.Code != 200 || rec.Body.String() != `{"status":"ready","node":"svcmisc"}`+"\n" {
		t.Fatalf("readyz: %d %s", rec.Code, rec.Body)
	}
	testkit.Send(e, "POST", "/v1/check", `{"key":"k","limits":"1/minute"}`)
	rec := testkit.Send(e, "GET", "/metrics", "")
	for _, want := range []string{
		`ratemesh_http_service_requests_total{code="200",endpoint="check"} 1`,
		`ratemesh_checks_total{path="local"} 1`,
	} {
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
			t.Fatalf("metrics lack %q:\n%s", want, rec.Body)
		}
	}
	// A node not started is not ready.
	idle, err := ratemesh.New(ratemesh.LocalConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close(t.Context())
	ie := echo.New()
	if err := nodeapi.RegisterService(ie, idle, nodeapi.ServiceConfig{}); err != nil {
		t.Fatal(err)
	}
	if rec := testkit.Send(ie, "GET", "/readyz", ""); rec.Code != 503 {
		t.Fatalf("readyz of an idle node: %d %s", rec.Code, rec.Body)
	}
	if rec := testkit.Send(ie, "GET", "/metrics", ""); rec.Code != 404 {
		t.Fatalf("metrics without a registry: %d", rec.Code)
	}
}
