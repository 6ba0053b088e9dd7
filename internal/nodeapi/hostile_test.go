package nodeapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/fakecluster"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// Attacks from the hostile-clients review, each against a real node.

// Filling an API key's counter table through /v1/check (8 × 32 limits of
// N per 10 year) used to make every new counter of the key fail, and the
// middleware let those requests through: 8 of 8 with a limit of 5. The
// check API's counters live under their own routing key now; the period
// cap is raised here so that the key namespace alone is what stops it.
func TestCheckAPICannotExhaustMiddlewareKey(t *testing.T) {
	n := fakecluster.New("exhaust")
	mw, err := httpapi.New(httpapi.Config{Cluster: n, Policy: httpapi.Policy{Default: "5 per minute"}, Key: httpapi.APIKey("X-API-KEY", nil)})
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	if err := nodeapi.RegisterService(e, n, nodeapi.ServiceConfig{MaxPeriod: 3600 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	e.GET("/products", func(c echo.Context) error { return c.String(http.StatusOK, "ok") }, mw.Handler)
	for i := range 8 {
		var ls []string
		for j := range 32 {
			ls = append(ls, fmt.Sprintf("%d per 10 year", 1000+i*32+j))
		}
		if rec := testkit.Send(e, "POST", "/v1/check", fmt.Sprintf(`{"key":"apikey:X","limits":%q}`, strings.Join(ls, "; "))); rec.Code != 200 {
			t.Fatalf("filling post %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	allowed := 0
	for range 8 {
		if rec := testkit.Do(e, "GET", "/products", "192.0.2.1:1", "X-API-KEY", "X"); rec.Code == 200 {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("after 256 API counters on apikey:X: %d of 8 allowed on the route, want exactly 5", allowed)
	}
}

// checkJSON is the body of a /v1/check of key "k" against limits.
func checkJSON(t *testing.T, limits string) string {
	t.Helper()
	b, err := json.Marshal(nodeapi.CheckRequest{Key: "k", Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// 200 distinct 1 MB bad limit strings used to be cached with errors that
// quoted them twice (3.27 GB kept) and answered 10 × the request. Now the
// heap keeps nothing of them and each 400 is short.
func TestBadLimitStringsKeepNothing(t *testing.T) {
	n := fakecluster.New("badlimits")
	e := echo.New()
	if err := nodeapi.RegisterService(e, n, nodeapi.ServiceConfig{}); err != nil {
		t.Fatal(err)
	}
	strs := 200
	if testkit.RaceEnabled || testing.Short() {
		strs = 20 // decoding 200 MB of JSON takes half a minute under -race, 4 s without
	}
	before := heapInUse()
	for i := range strs {
		bad := fmt.Sprintf("%d", i) + strings.Repeat("A", 1_000_000)
		rec := testkit.Send(e, "POST", "/v1/check", checkJSON(t, bad))
		if rec.Code != 400 || rec.Body.Len() > 1024 || !strings.Contains(rec.Body.String(), "longer than 1024 bytes") {
			t.Fatalf("bad string %d: %d, %d-byte body %.200s", i, rec.Code, rec.Body.Len(), rec.Body)
		}
	}
	if grew := int64(heapInUse()) - int64(before); grew > 4<<20 {
		t.Fatalf("the heap kept %d MB after 200 bad 1 MB limit strings, want under 4", grew>>20)
	}
	// A bad string short enough to parse is quoted in part only, however
	// its bytes escape.
	rec := testkit.Send(e, "POST", "/v1/check", checkJSON(t, "5 per "+strings.Repeat("\x7f", 1000)))
	if rec.Code != 400 || rec.Body.Len() > 512 {
		t.Fatalf("a bad 1 KB string: %d, %d-byte body %s", rec.Code, rec.Body.Len(), rec.Body)
	}
}

// An error quotes little of what the client sent, whichever field it is
// about: a 100 KB unknown field name came back twice in the 400 (1 MB),
// a strategy quoted with its bytes escaped (500 KB).
func TestCheckAPIErrorsQuoteLittle(t *testing.T) {
	n := fakecluster.New("quote")
	e := echo.New()
	if err := nodeapi.RegisterService(e, n, nodeapi.ServiceConfig{}); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("\x7f", 100_000) // %q makes each byte four
	for _, tc := range []struct{ name, body, want string }{
		{"unknown-field", `{"key":"k","limits":"1 per minute","` + long + `":1}`, "unknown field"},
		{"unknown-field-in-batch", `[{"key":"k","limits":"1 per minute","` + long + `":1}]`, "unknown field"},
		{"strategy", `{"key":"k","limits":"1 per minute","strategy":"` + long + `"}`, "strategy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := testkit.Send(e, "POST", "/v1/check", tc.body)
			if rec.Code != 400 || rec.Body.Len() > 1024 || !strings.Contains(rec.Body.String(), tc.want) {
				t.Fatalf("%d, %d-byte body %.300s; want 400 under 1 KB saying %q", rec.Code, rec.Body.Len(), rec.Body, tc.want)
			}
		})
	}
}

// A batch is refused at its 1,001st check, before the rest is decoded
// (here: before the invalid JSON that follows), and the moving-window hits
// of a batch share one check's budget; client windows are at most a day
// and scopes short.
func TestCheckAPIBudgets(t *testing.T) {
	n := fakecluster.New("budgets")
	e := echo.New()
	if err := nodeapi.RegisterService(e, n, nodeapi.ServiceConfig{MaxBody: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	item := `{"key":"k","limits":"5 per minute"}`
	over := "[" + strings.Repeat(item+",", 1001) + "this is not JSON]"
	for _, tc := range []struct {
		name, body, want string
	}{
		{"batch-cap", over, "batch of more than 1000 checks (the cap)"},
		{"moving-hits", `[{"key":"a","limits":"4000 per minute","strategy":"moving-window","cost":9000},{"key":"b","limits":"4000 per minute","strategy":"moving-window","cost":9000}]`, "more than 16384 moving-window hits"},
		{"moving-hits-overflow", `{"key":"a","limits":"1 per minute; 2 per minute; 3 per minute; 4 per minute","strategy":"moving-window","cost":4611686018427387904}`, "more than 16384 moving-window hits"},
		{"period", `{"key":"k","limits":"5 per 2 day"}`, "at most 24h0m0s is allowed"},
		{"scope", `{"key":"k","limits":"5 per minute","scope":"` + strings.Repeat("s", 251) + `"}`, "scope: longer than 250 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := testkit.Send(e, "POST", "/v1/check", tc.body)
			if rec.Code != 400 || !strings.Contains(rec.Body.String(), tc.want) {
				t.Fatalf("%d %s, want 400 saying %q", rec.Code, rec.Body, tc.want)
			}
		})
	}
}

// The moving-window budget of a request is the operator's to choose:
// with ServiceConfig.MaxMovingWindowHits 100, two checks of 60 hits are
// refused together and each alone is counted. (Before: the budget was
// fixed and both were counted.)
func TestCheckAPIMovingWindowBudgetConfigurable(t *testing.T) {
	n := fakecluster.New("budget-cfg")
	e := echo.New()
	if err := nodeapi.RegisterService(e, n, nodeapi.ServiceConfig{MaxMovingWindowHits: 100}); err != nil {
		t.Fatal(err)
	}
	item := `{"key":"k","limits":"1000 per minute","strategy":"moving-window","cost":60}`
	if rec := testkit.Send(e, "POST", "/v1/check", "["+item+","+item+"]"); rec.Code != 400 || !strings.Contains(rec.Body.String(), "more than 100 moving-window hits") {
		t.Fatalf("120 hits with a budget of 100: %d %s, want 400 naming the budget", rec.Code, rec.Body)
	}
	for i := range 2 {
		if rec := testkit.Send(e, "POST", "/v1/check", item); rec.Code != 200 || !strings.Contains(rec.Body.String(), fmt.Sprintf(`"remaining":%d`, 1000-60*(i+1))) {
			t.Fatalf("60 hits, check %d: %d %s", i, rec.Code, rec.Body)
		}
	}
}

// Guessing the admin token: of 1,000 wrong tries in one window, 5 are
// evaluated (401) and the rest refused unevaluated (429), the right token
// included; the next window it works.
func TestAdminTokenThrottled(t *testing.T) {
	e, now := guessAdminToken(t, "throttle", func(int) string { return "192.0.2.8:1" })
	if rec := testkit.Do(e, "DELETE", "/v1/keys/k", "192.0.2.8:1", "Authorization", "Bearer right"); rec.Code != 429 || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("the right token while throttled: %d %v", rec.Code, rec.Header())
	}
	*now = now.Add(nodeapi.AdminFailureWindow)
	if rec := testkit.Do(e, "DELETE", "/v1/keys/k", "192.0.2.8:1", "Authorization", "Bearer right"); rec.Code != http.StatusOK {
		t.Fatalf("the right token in the next window: %d %s", rec.Code, rec.Body)
	}
}

// 1,000 wrong tokens from 1,000 addresses of one IPv6 /64 (its holder has
// 2^64 of them), zone ids varied, get one client's budget, not the global
// one: 5 evaluated. Before, each address counted apart and 50 were.
func TestAdminTokenThrottledPerSubnet(t *testing.T) {
	e, _ := guessAdminToken(t, "throttle-v6", func(i int) string { return fmt.Sprintf("[2001:db8:0:7::%x%%eth%d]:1", i, i%3) })
	if rec := testkit.Do(e, "DELETE", "/v1/keys/k", "[2001:db8:0:8::1]:1", "Authorization", "Bearer right"); rec.Code != http.StatusOK {
		t.Fatalf("the right token from another /64: %d %s", rec.Code, rec.Body)
	}
}

// Guessing from many addresses does not lock the admin out: 12 clients
// sending 100 wrong tokens each get 5 evaluated apiece (60 × 401, 1,140 ×
// 429), and the right token from a 13th is answered 200. Before, the 50
// failures in all a second were spent by the twelve and the admin got 429.
// The global budget still holds above that: 200 clients at 5 spend its
// 1,000, and a new client is refused; the client that presented the admin
// token before is spared it.
func TestAdminTokenPerClientNotGlobal(t *testing.T) {
	n := fakecluster.New("throttle-many")
	now := time.Unix(1_700_000_000, 0)
	e := echo.New()
	if err := nodeapi.RegisterService(e, n, nodeapi.ServiceConfig{AdminToken: "right", Now: func() time.Time { return now }}); err != nil {
		t.Fatal(err)
	}
	guess := func(clients, tries int) map[int]int {
		codes := map[int]int{}
		for i := range clients * tries {
			codes[testkit.Do(e, "DELETE", "/v1/keys/k", fmt.Sprintf("198.51.100.%d:1", i%clients), "Authorization", fmt.Sprint("Bearer guess-", i)).Code]++
		}
		return codes
	}
	if codes := guess(12, 100); codes[401] != 60 || codes[429] != 1140 {
		t.Fatalf("12 clients × 100 guesses: %v, want 60 × 401 and 1,140 × 429", codes)
	}
	if rec := testkit.Do(e, "DELETE", "/v1/keys/k", "192.0.2.9:1", "Authorization", "Bearer right"); rec.Code != http.StatusOK {
		t.Fatalf("the right token from a 13th client: %d %s", rec.Code, rec.Body)
	}
	now = now.Add(nodeapi.AdminFailureWindow)
	if codes := guess(nodeapi.AdminFailuresTotal/nodeapi.AdminFailuresPerIP, nodeapi.AdminFailuresPerIP); codes[401] != nodeapi.AdminFailuresTotal {
		t.Fatalf("200 clients × 5 guesses: %v, want 1,000 × 401", codes)
	}
	if rec := testkit.Do(e, "DELETE", "/v1/keys/k", "192.0.2.10:1", "Authorization", "Bearer right"); rec.Code != 429 || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("the right token from a new client once the global budget is spent: %d %v, want 429 for 1 s", rec.Code, rec.Header())
	}
	if rec := testkit.Do(e, "DELETE", "/v1/keys/k", "192.0.2.9:1", "Authorization", "Bearer right"); rec.Code != http.StatusOK {
		t.Fatalf("the right token from the client that presented it before: %d %s, want 200", rec.Code, rec.Body)
	}
}

// guessAdminToken sends 1,000 wrong admin tokens, the i-th from peer(i),
// to a node whose clock stands still at the returned time, and requires
// AdminFailuresPerIP of them evaluated (401) and the rest refused (429).
func guessAdminToken(t *testing.T, name string, peer func(i int) string) (*echo.Echo, *time.Time) {
	t.Helper()
	n := fakecluster.New(name)
	now := time.Unix(1_700_000_000, 0)
	e := echo.New()
	if err := nodeapi.RegisterService(e, n, nodeapi.ServiceConfig{AdminToken: "right", Now: func() time.Time { return now }}); err != nil {
		t.Fatal(err)
	}
	codes := map[int]int{}
	for i := range 1000 {
		codes[testkit.Do(e, "DELETE", "/v1/keys/k", peer(i), "Authorization", fmt.Sprint("Bearer guess-", i)).Code]++
	}
	if codes[401] != nodeapi.AdminFailuresPerIP || codes[429] != 1000-nodeapi.AdminFailuresPerIP {
		t.Fatalf("1,000 guesses: %v, want %d × 401 and the rest 429", codes, nodeapi.AdminFailuresPerIP)
	}
	return e, &now
}

// The batch that pinned 1.05 GB (1,000 checks × 32 moving-window limits
// at cost 4,096) is refused whole; the heap keeps nothing of it, and the
// node answers /healthz after each. (How fast it answers is no test's
// business here: served in the test's goroutine, a wall-clock bound would
// measure the machine.)
func TestMovingWindowBatchPinsNothing(t *testing.T) {
	n := fakecluster.New("moving")
	e := echo.New()
	if err := nodeapi.RegisterService(e, n, nodeapi.ServiceConfig{}); err != nil {
		t.Fatal(err)
	}
	var ls []string
	for j := range 32 {
		ls = append(ls, fmt.Sprintf("4096 per %d minute", j+1))
	}
	item, _ := json.Marshal(map[string]any{"key": "victim", "limits": strings.Join(ls, "; "), "strategy": "moving-window", "cost": 1})
	batch := "[" + strings.TrimSuffix(strings.Repeat(string(item)+",", 1000), ",") + "]"
	before := heapInUse()
	for range 3 {
		rec := testkit.Send(e, "POST", "/v1/check", batch)
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), "moving-window hits") {
			t.Fatalf("%d-byte batch: %d %.300s, want 400 naming the moving-window budget", len(batch), rec.Code, rec.Body)
		}
		if rec := testkit.Send(e, "GET", "/healthz", ""); rec.Code != 200 {
			t.Fatalf("/healthz after the refused batch: %d %s", rec.Code, rec.Body)
		}
	}
	if grew := int64(heapInUse()) - int64(before); grew > 4<<20 {
		t.Fatalf("the heap kept %d MB after three 1 GB batches, want under 4", grew>>20)
	}
}
