package rls

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/testkit"
	"github.com/ratemesh/ratemesh/internal/testlog"
)

// TestReloader: a changed file is put in force, unchanged files are not
// parsed again, a bad file is refused with one log line and the config
// in force stays, and a fixed file is taken again.
func TestReloader(t *testing.T) {
	node := clustertest.StartNode(t, "reload", nil)
	dir := t.TempDir()
	write(t, dir, "a.yaml", "domain: a\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 1}\n")
	cfg, err := LoadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(node, cfg, Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	var logs testlog.Buffer
	r := NewReloader(svc, dir, slog.New(slog.NewTextHandler(&logs, nil)))
	step := func(what string, wantChanged bool, wantErr string) {
		t.Helper()
		changed, err := r.Check()
		if changed != wantChanged || (err == nil) != (wantErr == "") || (err != nil && !strings.Contains(err.Error(), wantErr)) {
			t.Fatalf("%s: changed %v, error %v; want %v, %q", what, changed, err, wantChanged, wantErr)
		}
	}
	step("unchanged", false, "")
	write(t, dir, "a.yaml", "domain: a\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 7}\n")
	step("a new limit", true, "")
	if got := svc.Config().Dump(); !strings.Contains(got, "requests_per_unit=7") {
		t.Fatalf("config in force:\n%s", got)
	}
	bad := write(t, dir, "b.yaml", "domain: a\n")
	step("a duplicate domain", false, "b.yaml: duplicate domain 'a'")
	step("the same bad files", false, "")
	if n := strings.Count(logs.String(), "new config refused"); n != 1 {
		t.Fatalf("%d log lines of the refusal, want 1:\n%s", n, logs.String())
	}
	if got := svc.Config().Dump(); !strings.Contains(got, "requests_per_unit=7") {
		t.Fatalf("the bad files replaced the config:\n%s", got)
	}
	os.Remove(bad)
	step("fixed", true, "")
	os.RemoveAll(dir)
	step("the directory gone", false, "cannot read: no such file or directory")
	if got := svc.Config().Dump(); !strings.Contains(got, "requests_per_unit=7") {
		t.Fatalf("a missing directory replaced the config:\n%s", got)
	}
	loads := func(result string) float64 { return testutil.ToFloat64(svc.metrics.loads.WithLabelValues(result)) }
	if loads("success") != 2 || loads("error") != 2 {
		t.Fatalf("config loads: %v success, %v error; want 2 and 2", loads("success"), loads("error"))
	}
}

// TestReloaderRun: Run reloads on its own and stops with its context.
func TestReloaderRun(t *testing.T) {
	node := clustertest.StartNode(t, "run", nil)
	path := write(t, t.TempDir(), "a.yaml", "domain: a\n")
	cfg, err := LoadPath(path)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(node, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		NewReloader(svc, path, nil).Run(ctx, 10*time.Millisecond)
	}()
	os.WriteFile(path, []byte("domain: b\n"), 0o644)
	testkit.Eventually(t, 10*time.Second, "the reload", func() bool {
		return strings.Join(svc.Config().Domains(), ",") == "b"
	})
	cancel()
	<-done
}

// TestHTTPHandlers: GET /rlconfig dumps the config, as text or with
// ?format=json as a list of every rule (400 for another format); POST /json answers 200
// or 429 with the response as JSON, 400 for a body that does not decode
// or validate, 413 past MaxJSONBody.
func TestHTTPHandlers(t *testing.T) {
	node := clustertest.StartNode(t, "http", nil)
	svc, err := New(node, mustConfig(t, serviceConfig), Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	svc.ConfigHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/rlconfig", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "edge.user: unit=MINUTE requests_per_unit=2, shadow_mode: false, quota_mode: false\n") {
		t.Fatalf("/rlconfig: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	svc.ConfigHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/rlconfig?format=json", nil))
	wantJSON := `[{"path":"edge.free","limit":"unlimited"},{"path":"edge.generic","limit":"5 per 1 minute","name":"generic"},` +
		`{"path":"edge.hundred","limit":"100 per 1 hour"},{"path":"edge.path_/api/*","limit":"2 per 1 minute"},` +
		`{"path":"edge.quota","limit":"1 per 1 minute","quota_mode":true},{"path":"edge.shadow","limit":"2 per 1 minute","shadow_mode":true},` +
		`{"path":"edge.special","limit":"1 per 1 minute","replaces":["generic"]},{"path":"edge.ten","limit":"10 per 1 minute"},` +
		`{"path":"edge.three","limit":"3 per 1 minute"},{"path":"edge.user","limit":"2 per 1 minute"}]` + "\n"
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" || rec.Body.String() != wantJSON {
		t.Fatalf("/rlconfig?format=json: %d %s %s\nwant %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body, wantJSON)
	}
	rec = httptest.NewRecorder()
	svc.ConfigHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/rlconfig?format=yaml", nil))
	if rec.Code != 400 || rec.Body.String() != "rls: format \"yaml\": want json, or none for text\n" {
		t.Fatalf("/rlconfig?format=yaml: %d %q", rec.Code, rec.Body)
	}
	one := `{"domain":"edge","descriptors":[{"entries":[{"key":"user","value":"json"}]}]}`
	cases := []struct {
		body string
		code int
		want string
	}{
		{one, 200, `"overallCode":"OK"`},
		{one, 200, `"overallCode":"OK"`},
		{one, 429, `"overallCode":"OVER_LIMIT","statuses":[{"code":"OVER_LIMIT","currentLimit":{"requestsPerUnit":2,"unit":"MINUTE"}`},
		{`{"domain":"edge","descriptors":[]}`, 400, "rls: descriptors: rate limit descriptor list must not be empty"},
		{`{"domain":"edge","descriptor":[]}`, 400, `rls: body: proto:`},
		{`not json`, 400, `rls: body: proto:`},
		{`"` + strings.Repeat("x", MaxJSONBody) + `"`, 413, "rls: body: http: request body too large"},
	}
	for i, tc := range cases {
		rec := httptest.NewRecorder()
		svc.JSONHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/json", strings.NewReader(tc.body)))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("case %d: %d %.300s, want %d with %s", i, rec.Code, rec.Body, tc.code, tc.want)
		}
	}
}

// TestMetricSeriesBounded: per-request metric names stop growing at
// maxMetricSeries; past it they count under the rule's path.
func TestMetricSeriesBounded(t *testing.T) {
	node := clustertest.StartNode(t, "series", nil)
	cfg := mustConfig(t, "domain: d\ndescriptors:\n  - key: u\n    detailed_metric: true\n    rate_limit: {unit: hour, requests_per_unit: 5}\n")
	svc, err := New(node, cfg, Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	m := svc.metrics
	m.named = maxMetricSeries - 1 // room for one more name
	ctx := context.Background()
	for _, v := range []string{"first", "second", "first"} {
		if _, err := svc.ShouldRateLimit(ctx, request("d", desc("u", v))); err != nil {
			t.Fatal(err)
		}
	}
	got := []float64{testutil.ToFloat64(m.hits.WithLabelValues("d.u_first")), testutil.ToFloat64(m.hits.WithLabelValues("d.u_second")),
		testutil.ToFloat64(m.hits.WithLabelValues("d.u"))}
	if got[0] != 2 || got[1] != 0 || got[2] != 1 {
		t.Fatalf("hits of d.u_first, d.u_second, d.u = %v, want [2 0 1]", got)
	}
}

// TestNoMetricsWithoutRegisterer: a service without a Registerer records
// nothing and works.
func TestNoMetricsWithoutRegisterer(t *testing.T) {
	node := clustertest.StartNode(t, "nometrics", nil)
	svc, err := New(node, mustConfig(t, serviceConfig), Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := svc.ShouldRateLimit(context.Background(), request("edge", desc("user", "x")))
	if err != nil || codesOf(r) != "OK[OK]" || svc.metrics != nil {
		t.Fatalf("%v %v, metrics %v", r, err, svc.metrics)
	}
	if _, err := New(node, nil, Options{}); err == nil {
		t.Fatal("New accepted a nil config")
	}
}

// failing is a Checker whose checks of keys holding bad fail, and whose
// others wait for their context.
type failing struct{ bad string }

func (f failing) Check(ctx context.Context, req ratemesh.Request) (ratemesh.Result, error) {
	if strings.Contains(req.Key, f.bad) {
		return ratemesh.Result{}, errors.New("owner unreachable")
	}
	<-ctx.Done()
	return ratemesh.Result{}, ctx.Err()
}

// panicking is a Checker whose checks of keys holding bad panic, and
// whose others are allowed.
type panicking struct{ bad string }

func (p panicking) Check(_ context.Context, req ratemesh.Request) (ratemesh.Result, error) {
	if strings.Contains(req.Key, p.bad) {
		panic("check of " + req.Key)
	}
	return ratemesh.Result{Allowed: true, Statuses: append(req.StatusBuf[:0], bucket.Status{})}, nil
}

// TestCheckPanicRaisedInCaller: a check that panics, whichever worker
// makes it (the caller's goroutine or another), panics in the caller's
// goroutine, where a server's recovery can answer it, once the other
// checks are done.
func TestCheckPanicRaisedInCaller(t *testing.T) {
	svc, err := New(panicking{bad: "boom"}, mustConfig(t, serviceConfig), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		descs := []*rlv3.RateLimitDescriptor{desc("user", "a"), desc("ten", "b"), desc("hundred", "c")}
		descs[i] = desc("user", "boom")
		got := func() (r any) {
			defer func() { r = recover() }()
			svc.ShouldRateLimit(context.Background(), request("edge", descs...))
			return nil
		}()
		if s, _ := got.(string); !strings.Contains(s, "check of") {
			t.Fatalf("descriptor %d panicking: recovered %v, want its panic", i, got)
		}
	}
}

// TestCheckFailure: a failed check fails the request with Unavailable and
// cancels its other checks; a request out of time gets DeadlineExceeded.
func TestCheckFailure(t *testing.T) {
	svc, err := New(failing{bad: "boom"}, mustConfig(t, serviceConfig), Options{})
	if err != nil {
		t.Fatal(err)
	}
	descs := []*rlv3.RateLimitDescriptor{desc("user", "a"), desc("user", "boom"), desc("ten", "c")}
	_, err = svc.ShouldRateLimit(context.Background(), request("edge", descs...))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "owner unreachable") {
		t.Fatalf("error %v, want Unavailable naming the cause", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = svc.ShouldRateLimit(ctx, request("edge", desc("user", "a")))
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("error %v, want DeadlineExceeded", err)
	}
}
