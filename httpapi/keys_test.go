package httpapi_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/httpapi/jwtauth"
	"github.com/ratemesh/ratemesh/internal/fakecluster"
)

// keyOf runs k on a request from peer with the given headers.
func keyOf(t *testing.T, k httpapi.KeyFunc, peer string, header ...string) (string, error) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.RemoteAddr = peer
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	key, _, err := k(req)
	return key, err
}

func TestClientIP(t *testing.T) {
	trusted, err := httpapi.ParseTrustedProxies([]string{"10.0.0.0/8", " 192.0.2.7 ", "", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	proxied := &httpapi.ClientIP{Trusted: trusted}
	direct := &httpapi.ClientIP{}
	for _, tc := range []struct {
		name   string
		ips    *httpapi.ClientIP
		peer   string
		header []string
		want   string
	}{
		{"peer", direct, "203.0.113.5:4000", nil, "ip:203.0.113.5"},
		{"spoofed XFF from untrusted peer", direct, "203.0.113.5:4000", []string{"X-Forwarded-For", "1.2.3.4"}, "ip:203.0.113.5"},
		{"spoofed X-Real-IP from untrusted peer", proxied, "203.0.113.5:4000", []string{"X-Real-IP", "1.2.3.4"}, "ip:203.0.113.5"},
		{"spoofed XFF, untrusted peer, trusted list set", proxied, "203.0.113.5:4000", []string{"X-Forwarded-For", "1.2.3.4"}, "ip:203.0.113.5"},
		{"trusted proxy", proxied, "10.1.2.3:80", []string{"X-Forwarded-For", "198.51.100.9"}, "ip:198.51.100.9"},
		{"rightmost untrusted hop", proxied, "10.1.2.3:80", []string{"X-Forwarded-For", "6.6.6.6, 198.51.100.9, 10.9.9.9"}, "ip:198.51.100.9"},
		{"several XFF headers", proxied, "10.1.2.3:80", []string{"X-Forwarded-For", "6.6.6.6", "X-Forwarded-For", "198.51.100.9,192.0.2.7"}, "ip:198.51.100.9"},
		{"all hops trusted", proxied, "10.1.2.3:80", []string{"X-Forwarded-For", "10.0.0.1, 10.0.0.2"}, "ip:10.0.0.1"},
		{"garbage hop stops the walk", proxied, "10.1.2.3:80", []string{"X-Forwarded-For", "1.1.1.1, junk, 10.0.0.2"}, "ip:10.0.0.2"},
		{"X-Real-IP from trusted proxy", proxied, "192.0.2.7:80", []string{"X-Real-IP", "198.51.100.10"}, "ip:198.51.100.10"},
		{"XFF wins over X-Real-IP", proxied, "192.0.2.7:80", []string{"X-Real-IP", "198.51.100.10", "X-Forwarded-For", "198.51.100.11"}, "ip:198.51.100.11"},
		{"trusted proxy, no headers", proxied, "10.1.2.3:80", nil, "ip:10.1.2.3"},
		{"IPv6 peer: its /64", direct, "[2001:db9:0:7:1:2:3:4]:443", nil, "ip:2001:db9:0:7::/64"},
		{"another address of the /64: the same key", direct, "[2001:db9:0:7:ffff::9]:443", nil, "ip:2001:db9:0:7::/64"},
		{"IPv6 /56 configured", &httpapi.ClientIP{IPv6Prefix: 56}, "[2001:db9:0:7ff:1::1]:443", nil, "ip:2001:db9:0:700::/56"},
		{"IPv6 /128 configured: each address", &httpapi.ClientIP{IPv6Prefix: 128}, "[2001:db9::1]:443", nil, "ip:2001:db9::1"},
		{"zone id dropped", &httpapi.ClientIP{IPv6Prefix: 128}, "[fe80::1%eth0]:443", nil, "ip:fe80::1"},
		{"another zone: the same key", &httpapi.ClientIP{IPv6Prefix: 128}, "[fe80::1%eth7]:443", nil, "ip:fe80::1"},
		{"zone id dropped, /64", direct, "[fe80::1%eth0]:443", nil, "ip:fe80::/64"},
		{"IPv6 trusted proxy, bracketed hop with port", proxied, "[2001:db8::1]:443", []string{"X-Forwarded-For", "[2001:db9::5]:1234"}, "ip:2001:db9::/64"},
		{"IPv4-mapped peer", direct, "[::ffff:203.0.113.5]:1", nil, "ip:203.0.113.5"},
		{"IPv4-mapped hop", proxied, "10.1.2.3:80", []string{"X-Forwarded-For", "::ffff:198.51.100.9"}, "ip:198.51.100.9"},
		{"not an IP peer", direct, "@", nil, "ip:@"},
	} {
		got, err := keyOf(t, tc.ips.Key, tc.peer, tc.header...)
		if err != nil || got != tc.want {
			t.Errorf("%s: key %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := httpapi.ParseTrustedProxies([]string{"10.0.0.0/33"}); err == nil || !strings.Contains(err.Error(), `"10.0.0.0/33"`) {
		t.Errorf("bad CIDR: %v", err)
	}
	if _, err := httpapi.ParseTrustedProxies([]string{"proxy.local"}); err == nil || !strings.Contains(err.Error(), `"proxy.local"`) {
		t.Errorf("bad IP: %v", err)
	}
	// The Echo extractor follows the same rules.
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.RemoteAddr = "203.0.113.5:1"
	req.Header.Set("X-Forwarded-For", "1.2.3.4")
	e := echo.New()
	e.IPExtractor = proxied.Extractor()
	if got := e.NewContext(req, httptest.NewRecorder()).RealIP(); got != "203.0.113.5" {
		t.Errorf("RealIP = %q, want the peer", got)
	}
	if got := proxied.String(req); got != "203.0.113.5" {
		t.Errorf("String = %q", got)
	}
	if a, ok := proxied.Addr(req); !ok || a != netip.MustParseAddr("203.0.113.5") {
		t.Errorf("Addr = %v, %v", a, ok)
	}
}

func TestAPIKey(t *testing.T) {
	ips := &httpapi.ClientIP{}
	k := httpapi.APIKey("X-API-KEY", ips.Key)
	if got, _ := keyOf(t, k, "203.0.113.5:1", "X-Api-Key", "k-123"); got != "apikey:k-123" {
		t.Errorf("with key: %q", got)
	}
	if got, _ := keyOf(t, k, "203.0.113.5:1"); got != "ip:203.0.113.5" {
		t.Errorf("fallback: %q", got)
	}
	long := strings.Repeat("x", 1000)
	got, _ := keyOf(t, k, "203.0.113.5:1", "X-API-KEY", long)
	if !strings.HasPrefix(got, "apikey:sha256:") || len(got) != len("apikey:sha256:")+64 {
		t.Errorf("long key not hashed: %q", got)
	}
	strict := httpapi.APIKey("X-API-KEY", nil)
	if _, err := keyOf(t, strict, "203.0.113.5:1"); err == nil {
		t.Error("missing key without fallback accepted")
	}
}

// sign makes an HS256 token with claims.
func sign(t *testing.T, secret []byte, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// verifier is an HS256 jwtauth.Verifier.
func verifier(t *testing.T, secret []byte, now func() time.Time) *jwtauth.Verifier {
	t.Helper()
	v, err := jwtauth.New(jwtauth.Config{Secret: secret, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestJWTKey covers the key function over a Verifier; the forged tokens
// it must refuse are jwtauth's tests.
func TestJWTKey(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	secret := []byte("s3cret")
	v := verifier(t, secret, func() time.Time { return now })
	valid := sign(t, secret, jwt.MapClaims{"sub": "alice", "tier": "paid", "exp": now.Add(time.Hour).Unix()})
	expired := sign(t, secret, jwt.MapClaims{"sub": "alice", "exp": now.Add(-time.Second).Unix()})
	long := sign(t, secret, jwt.MapClaims{"sub": strings.Repeat("b", 1000), "exp": now.Add(time.Hour).Unix()})
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

	strict := httpapi.JWTKey(v, nil)
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Authorization", "Bearer "+valid)
	key, ctx, err := strict(req)
	if err != nil || key != "user:alice" {
		t.Fatalf("valid token: key %q, %v", key, err)
	}
	if ctx == nil || jwtauth.ClaimString(ctx, "tier") != "paid" {
		t.Fatalf("the claims are not in the returned context")
	}
	if got, _ := keyOf(t, strict, "203.0.113.5:1", bearer(long)...); !strings.HasPrefix(got, "user:sha256:") {
		t.Errorf("long subject not hashed: %q", got)
	}
	for name, header := range map[string][]string{
		"expired":    bearer(expired),
		"garbage":    bearer("a.b.c"),
		"not bearer": {"Authorization", "Basic YTpi"},
		"missing":    nil,
	} {
		got, err := keyOf(t, strict, "203.0.113.5:1", header...)
		var ke *httpapi.KeyError
		if !errors.As(err, &ke) || ke.Status != http.StatusUnauthorized {
			t.Errorf("%s: key %q, err %v; want a 401 KeyError", name, got, err)
		}
	}
	// A missing token may fall back when configured; a bad one never does.
	ips := &httpapi.ClientIP{}
	opt := httpapi.JWTKey(v, ips.Key)
	if got, err := keyOf(t, opt, "203.0.113.5:1"); got != "ip:203.0.113.5" || err != nil {
		t.Errorf("missing with fallback: %q, %v", got, err)
	}
	if _, err := keyOf(t, opt, "203.0.113.5:1", bearer(expired)...); err == nil {
		t.Error("expired token fell back to the IP")
	}
}

func TestKeyErrorAnswers401(t *testing.T) {
	n := fakecluster.New("keyerr")
	j := httpapi.JWTKey(verifier(t, []byte("s"), nil), nil)
	e := server(t, n, httpapi.Config{Key: j, Policy: httpapi.Policy{Default: "5 per minute"}}, "GET", "/me")
	run(t, e, []step{
		{method: "GET", path: "/me", peer: "192.0.2.1:1", code: 401, body: `{"error":"missing bearer token"}` + "\n", want: map[string]string{"WWW-Authenticate": `Bearer`}},
		{method: "GET", path: "/me", peer: "192.0.2.1:1", header: []string{"Authorization", "Bearer x.y.z"}, code: 401, body: `{"error":"invalid token"}` + "\n", want: map[string]string{"WWW-Authenticate": `Bearer error="invalid_token"`}},
	})
}
