package demo_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/demo"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/clustertest"
)

var secret = []byte("demo-test-secret")

const products = `[{"id":1,"name":"Amul Butter","price":50},{"id":2,"name":"Tata Tea","price":200},{"id":3,"name":"Parle-G Biscuits","price":10}]` + "\n"

// tutorial429 is the tutorial's custom 429 body.
func tutorial429(limit string) string {
	return `{"error":"Too many requests. Please try again later.","limit":"` + limit + `"}` + "\n"
}

// servers mounts the demo on one Echo per node, trusting 10.0.0.0/8 as
// proxies.
func servers(t *testing.T, nodes []*ratemesh.Node) *roundRobin {
	t.Helper()
	rr := &roundRobin{}
	for _, n := range nodes {
		e := echo.New()
		err := demo.Register(e, demo.Config{
			Cluster:   n,
			JWTSecret: secret,
			Clients:   httpapi.ClientIP{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		})
		if err != nil {
			t.Fatal(err)
		}
		rr.servers = append(rr.servers, e)
	}
	return rr
}

func TestDemoOneNode(t *testing.T) {
	scenarios(t, servers(t, clustertest.StartNamed(t, 1)))
}

// TestDemoThreeNodes runs the same scenarios with every request going to
// the next of three nodes: the answers must be exactly the same.
func TestDemoThreeNodes(t *testing.T) {
	scenarios(t, servers(t, clustertest.StartNamed(t, 3)))
}

func scenarios(t *testing.T, rr *roundRobin) {
	t.Run("products", func(t *testing.T) { productsScenario(t, rr) })
	t.Run("product detail", func(t *testing.T) { detailScenario(t, rr) })
	t.Run("role based", func(t *testing.T) { roleScenario(t, rr) })
	t.Run("shared scope", func(t *testing.T) { sharedScenario(t, rr) })
	t.Run("flash sale", func(t *testing.T) { flashScenario(t, rr) })
	t.Run("health exempt", func(t *testing.T) { healthScenario(t, rr) })
	t.Run("default limit", func(t *testing.T) { defaultScenario(t, rr) })
	t.Run("jwt tiers", func(t *testing.T) { jwtScenario(t, rr) })
	t.Run("forwarded for", func(t *testing.T) { xffScenario(t, rr) })
}

func productsScenario(t *testing.T, rr *roundRobin) {
	p := "192.0.2.1:5000"
	start := time.Now()
	for i := 0; i < 5; i++ {
		rr.run(t, step{method: "GET", path: "/products", peer: p, code: 200, want: products, headers: map[string]string{
			"X-RateLimit-Limit":     "5",
			"X-RateLimit-Remaining": fmt.Sprint(4 - i),
			"RateLimit-Policy":      `"route";q=5;w=60`,
			"RateLimit":             fmt.Sprintf(`"route";r=%d;t=60`, 4-i),
			"Retry-After":           "",
		}})
	}
	rec := rr.do(t, step{method: "GET", path: "/products", peer: p, code: 429, want: tutorial429("5 per 1 minute"), headers: map[string]string{
		"Retry-After":           "60",
		"X-RateLimit-Limit":     "5",
		"X-RateLimit-Remaining": "0",
		"RateLimit-Policy":      `"route";q=5;w=60`,
		"RateLimit":             `"route";r=0;t=60`,
	}})
	// The window opened at the first request: reset is a minute later,
	// in whole epoch seconds rounded up.
	var epoch int64
	fmt.Sscan(rec.Header().Get("X-RateLimit-Reset"), &epoch)
	if lo, hi := start.Unix()+60, time.Now().Unix()+61; epoch < lo || epoch > hi {
		t.Fatalf("X-RateLimit-Reset %d, want within [%d, %d]", epoch, lo, hi)
	}
	// Another client is unaffected.
	rr.run(t, step{method: "GET", path: "/products", peer: "192.0.2.2:5000", code: 200, headers: map[string]string{"X-RateLimit-Remaining": "4"}})
}

func detailScenario(t *testing.T, rr *roundRobin) {
	p := "192.0.2.3:5000"
	h := map[string]string{"X-RateLimit-Limit": "10"}
	rr.run(t, times(4, step{method: "GET", path: "/products/2", peer: p, code: 200, want: `{"id":2,"name":"Tata Tea","price":200}` + "\n", headers: h}, 10)...)
	// An unknown product is a 404, and counted.
	nf := `{"error":"Product not found"}` + "\n"
	steps := times(6, step{method: "GET", path: "/products/99", peer: p, code: 404, want: nf}, 0)
	steps[5].headers = map[string]string{"X-RateLimit-Remaining": "0"}
	steps = append(steps, step{method: "GET", path: "/products/1", peer: p, code: 429, want: tutorial429("10 per 1 minute"), headers: map[string]string{"Retry-After": "60"}})
	rr.run(t, steps...)
}

func roleScenario(t *testing.T, rr *roundRobin) {
	p := "192.0.2.4:5000"
	rr.run(t, times(10, step{method: "GET", path: "/rb-products", peer: p, code: 200, want: products, headers: map[string]string{"X-RateLimit-Limit": "10"}}, 10)...)
	rr.run(t, step{method: "GET", path: "/rb-products", peer: p, code: 429, want: tutorial429("10 per 1 minute")})
	admin := []string{"X-API-KEY", demo.AdminAPIKey}
	rr.run(t, times(100, step{method: "GET", path: "/rb-products", peer: p, header: admin, code: 200, headers: map[string]string{"X-RateLimit-Limit": "100"}}, 100)...)
	rr.run(t, step{method: "GET", path: "/rb-products", peer: p, header: admin, code: 429, want: tutorial429("100 per 1 minute"), headers: map[string]string{"Retry-After": "60"}})
	user := []string{"X-API-KEY", "user-7"}
	rr.run(t, times(10, step{method: "GET", path: "/rb-products", peer: p, header: user, code: 200, headers: map[string]string{"X-RateLimit-Limit": "10"}}, 10)...)
	rr.run(t, step{method: "GET", path: "/rb-products", peer: p, header: user, code: 429, want: tutorial429("10 per 1 minute")})
}

func sharedScenario(t *testing.T, rr *roundRobin) {
	p := "192.0.2.5:5000"
	for i := 0; i < 20; i++ {
		s := step{method: "GET", path: "/popular", peer: p, code: 200, want: `{"popular":["Amul Butter","Tata Tea"]}` + "\n"}
		if i%2 == 1 {
			s.path, s.want = "/deals", `{"deals":["Parle-G Biscuits"]}`+"\n"
		}
		s.headers = map[string]string{"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": fmt.Sprint(19 - i), "RateLimit-Policy": `"products";q=20;w=60`}
		rr.run(t, s)
	}
	rr.run(t,
		step{method: "GET", path: "/popular", peer: p, code: 429, want: tutorial429("20 per 1 minute")},
		step{method: "GET", path: "/deals", peer: p, code: 429, want: tutorial429("20 per 1 minute")},
	)
}

func flashScenario(t *testing.T, rr *roundRobin) {
	p := "192.0.2.6:5000"
	// Burst (10 per minute) and sustained (200 per day): the minute has
	// least remaining, so the headers describe it.
	rr.run(t, times(10, step{method: "GET", path: "/flash-sale", peer: p, code: 200, want: `{"flash_sale":["Tata Tea"]}` + "\n",
		headers: map[string]string{"X-RateLimit-Limit": "10", "RateLimit-Policy": `"route-60";q=10;w=60`}}, 10)...)
	rr.run(t, step{method: "GET", path: "/flash-sale", peer: p, code: 429, want: tutorial429("10 per 1 minute"), headers: map[string]string{"Retry-After": "60", "RateLimit": `"route-60";r=0;t=60`}})
}

func healthScenario(t *testing.T, rr *roundRobin) {
	rr.run(t, times(150, step{method: "GET", path: "/health", peer: "192.0.2.7:5000", code: 200, want: `{"status":"ok"}` + "\n",
		headers: map[string]string{"X-RateLimit-Limit": "", "RateLimit": "", "RateLimit-Policy": ""}}, 0)...)
}

func defaultScenario(t *testing.T, rr *roundRobin) {
	p := "192.0.2.8:5000"
	rr.run(t, times(100, step{method: "GET", path: "/categories", peer: p, code: 200, want: `{"categories":["Dairy","Beverages","Snacks"]}` + "\n",
		headers: map[string]string{"X-RateLimit-Limit": "100", "RateLimit-Policy": `"default";q=100;w=3600`}}, 100)...)
	rr.run(t, step{method: "GET", path: "/categories", peer: p, code: 429, want: tutorial429("100 per 1 hour"), headers: map[string]string{"Retry-After": "3600"}})
}

// login gets a token through POST /login.
func login(t *testing.T, rr *roundRobin, user, password string) string {
	t.Helper()
	rec := rr.do(t, step{method: "POST", path: "/login", peer: "192.0.2.9:5000", body: fmt.Sprintf(`{"username":%q,"password":%q}`, user, password), code: 200})
	var lr demo.LoginResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &lr); err != nil || lr.TokenType != "Bearer" || lr.ExpiresIn != 3600 {
		t.Fatalf("login %s: %s (%v)", user, rec.Body, err)
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(lr.Token, claims, func(*jwt.Token) (any, error) { return secret, nil }, jwt.WithValidMethods([]string{"HS256"})); err != nil {
		t.Fatal(err)
	}
	if claims["sub"] != user || claims["tier"] != lr.Tier || claims["role"] == nil {
		t.Fatalf("claims %v", claims)
	}
	return lr.Token
}

func jwtScenario(t *testing.T, rr *roundRobin) {
	rr.run(t, step{method: "POST", path: "/login", peer: "192.0.2.9:5000", body: `{"username":"free","password":"wrong"}`, code: 401, want: `{"error":"invalid username or password"}` + "\n"})
	free, paid, admin := login(t, rr, "free", "free-demo"), login(t, rr, "paid", "paid-demo"), login(t, rr, "admin", "admin-demo")
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	ordersBody := func(user, tier string) string {
		return `{"user":"` + user + `","tier":"` + tier + `","orders":[{"id":1,"product_id":1,"quantity":2},{"id":2,"product_id":3,"quantity":10}]}` + "\n"
	}
	// Free: 10 per minute per subject, whatever address it comes from.
	for i := 0; i < 10; i++ {
		rr.run(t, step{method: "GET", path: "/orders", peer: fmt.Sprintf("198.51.100.%d:1", i), header: bearer(free), code: 200, want: ordersBody("free", "free"),
			headers: map[string]string{"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": fmt.Sprint(9 - i)}})
	}
	rr.run(t, step{method: "GET", path: "/orders", peer: "198.51.100.99:1", header: bearer(free), code: 429, want: tutorial429("10 per 1 minute")})
	rr.run(t, times(100, step{method: "GET", path: "/orders", peer: "192.0.2.10:1", header: bearer(paid), code: 200, want: ordersBody("paid", "paid"), headers: map[string]string{"X-RateLimit-Limit": "100"}}, 100)...)
	rr.run(t, step{method: "GET", path: "/orders", peer: "192.0.2.10:1", header: bearer(paid), code: 429, want: tutorial429("100 per 1 minute")})
	rr.run(t, times(150, step{method: "GET", path: "/orders", peer: "192.0.2.11:1", header: bearer(admin), code: 200, want: ordersBody("admin", "admin"), headers: map[string]string{"X-RateLimit-Limit": ""}}, 0)...)

	now := time.Now()
	forged, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "admin", "tier": "admin", "exp": now.Add(time.Hour).Unix()}).SignedString([]byte("guessed"))
	expired, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "free", "tier": "free", "exp": now.Add(-time.Minute).Unix()}).SignedString(secret)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "admin", "tier": "admin", "exp": now.Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	invalid := `{"error":"invalid token"}` + "\n"
	for _, tok := range []string{forged, expired, none} {
		rr.run(t, step{method: "GET", path: "/orders", peer: "192.0.2.12:1", header: bearer(tok), code: 401, want: invalid, headers: map[string]string{"WWW-Authenticate": `Bearer error="invalid_token"`, "X-RateLimit-Limit": ""}})
	}
	rr.run(t, step{method: "GET", path: "/orders", peer: "192.0.2.12:1", code: 401, want: `{"error":"missing bearer token"}` + "\n"})
	rr.run(t, step{method: "GET", path: "/orders", peer: "192.0.2.12:1", header: []string{"X-API-KEY", demo.AdminAPIKey}, code: 401})
}

func xffScenario(t *testing.T, rr *roundRobin) {
	// From an untrusted peer, X-Forwarded-For is ignored: five different
	// spoofed addresses still share the peer's five requests.
	for i := 0; i < 5; i++ {
		rr.run(t, step{method: "GET", path: "/products", peer: "192.0.2.13:1", header: []string{"X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i)}, code: 200})
	}
	rr.run(t, step{method: "GET", path: "/products", peer: "192.0.2.13:1", header: []string{"X-Forwarded-For", "203.0.113.200", "X-Real-IP", "203.0.113.201"}, code: 429})
	// From a trusted proxy it names the client.
	for i := 0; i < 5; i++ {
		rr.run(t, step{method: "GET", path: "/products", peer: fmt.Sprintf("10.0.0.%d:1", i), header: []string{"X-Forwarded-For", "203.0.113.50"}, code: 200, headers: map[string]string{"X-RateLimit-Remaining": fmt.Sprint(4 - i)}})
	}
	rr.run(t,
		step{method: "GET", path: "/products", peer: "10.0.0.9:1", header: []string{"X-Forwarded-For", "203.0.113.50"}, code: 429},
		step{method: "GET", path: "/products", peer: "10.0.0.9:1", header: []string{"X-Forwarded-For", "203.0.113.51"}, code: 200},
		step{method: "GET", path: "/products", peer: "10.0.0.9:1", code: 200, headers: map[string]string{"X-RateLimit-Remaining": "4"}},
	)
}
