package httpapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh/httpapi"
)

// keyOf runs k on a request from peer with the given headers.
func keyOf(t *testing.T, k httpapi.KeyFunc, peer string, header ...string) (string, error) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.RemoteAddr = peer
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return k(echo.New().NewContext(req, httptest.NewRecorder()))
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
		{"IPv6 peer", direct, "[2001:db9::1]:443", nil, "ip:2001:db9::1"},
		{"IPv6 trusted proxy, bracketed hop with port", proxied, "[2001:db8::1]:443", []string{"X-Forwarded-For", "[2001:db9::5]:1234"}, "ip:2001:db9::5"},
		{"IPv4-mapped peer", direct, "[::ffff:203.0.113.5]:1", nil, "ip:203.0.113.5"},
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

// sign makes a token with claims signed by method and key.
func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWT(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	secret := []byte("s3cret")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := httpapi.NewJWT(httpapi.JWTConfig{Secret: secret, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := httpapi.NewJWT(httpapi.JWTConfig{PublicKey: &rsaKey.PublicKey, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	es, err := httpapi.NewJWT(httpapi.JWTConfig{PublicKey: &ecKey.PublicKey, Now: clock, Issuer: "ratemesh"})
	if err != nil {
		t.Fatal(err)
	}
	valid := jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix(), "iss": "ratemesh"}
	expired := jwt.MapClaims{"sub": "alice", "exp": now.Add(-time.Second).Unix()}
	noSub := jwt.MapClaims{"exp": now.Add(time.Hour).Unix()}
	noExp := jwt.MapClaims{"sub": "alice"}
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid)
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	for _, tc := range []struct {
		name   string
		j      *httpapi.JWT
		header []string
		want   string // key, or "" for a 401
	}{
		{"HS256", hs, bearer(sign(t, jwt.SigningMethodHS256, secret, valid)), "user:alice"},
		{"RS256", rs, bearer(sign(t, jwt.SigningMethodRS256, rsaKey, valid)), "user:alice"},
		{"ES256", es, bearer(sign(t, jwt.SigningMethodES256, ecKey, valid)), "user:alice"},
		{"other secret", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte("other"), valid)), ""},
		{"expired", hs, bearer(sign(t, jwt.SigningMethodHS256, secret, expired)), ""},
		{"no expiry", hs, bearer(sign(t, jwt.SigningMethodHS256, secret, noExp)), ""},
		{"no subject", hs, bearer(sign(t, jwt.SigningMethodHS256, secret, noSub)), ""},
		{"alg none", hs, bearer(none), ""},
		{"alg none, RSA", rs, bearer(none), ""},
		{"HS384 not accepted", hs, bearer(sign(t, jwt.SigningMethodHS384, secret, valid)), ""},
		// Alg confusion: an HMAC token keyed with the public key's bytes.
		{"HS256 where RS256 is configured", rs, bearer(sign(t, jwt.SigningMethodHS256, rsaKey.PublicKey.N.Bytes(), valid)), ""},
		{"wrong issuer", es, bearer(sign(t, jwt.SigningMethodES256, ecKey, expired)), ""},
		{"not bearer", hs, []string{"Authorization", "Basic YTpi"}, ""},
		{"garbage", hs, bearer("a.b.c"), ""},
		{"missing", hs, nil, ""},
	} {
		got, err := keyOf(t, tc.j.Key, "203.0.113.5:1", tc.header...)
		if tc.want != "" {
			if err != nil || got != tc.want {
				t.Errorf("%s: key %q, %v; want %q", tc.name, got, err, tc.want)
			}
			continue
		}
		ke, ok := err.(*httpapi.KeyError)
		if !ok || ke.Status != http.StatusUnauthorized {
			t.Errorf("%s: key %q, err %v; want a 401 KeyError", tc.name, got, err)
		}
	}
	// A missing token may fall back when configured; a bad one never does.
	ips := &httpapi.ClientIP{}
	opt, err := httpapi.NewJWT(httpapi.JWTConfig{Secret: secret, Now: clock, Missing: ips.Key})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := keyOf(t, opt.Key, "203.0.113.5:1"); got != "ip:203.0.113.5" {
		t.Errorf("missing with fallback: %q", got)
	}
	if _, err := keyOf(t, opt.Key, "203.0.113.5:1", bearer(sign(t, jwt.SigningMethodHS256, secret, expired))...); err == nil {
		t.Error("expired token fell back to the IP")
	}
	for _, cfg := range []httpapi.JWTConfig{{}, {PublicKey: "not a key"}} {
		if _, err := httpapi.NewJWT(cfg); err == nil {
			t.Errorf("NewJWT(%+v) accepted", cfg)
		}
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := httpapi.NewJWT(httpapi.JWTConfig{PublicKey: &p384.PublicKey}); err == nil {
		t.Error("NewJWT accepted a P-384 key for ES256")
	}
}

func TestKeyErrorAnswers401(t *testing.T) {
	n := startNode(t, "keyerr")
	j, err := httpapi.NewJWT(httpapi.JWTConfig{Secret: []byte("s")})
	if err != nil {
		t.Fatal(err)
	}
	e := server(t, n, httpapi.Config{Key: j.Key, Policy: httpapi.Policy{Default: "5 per minute"}}, "GET", "/me")
	run(t, e, []step{
		{method: "GET", path: "/me", peer: "192.0.2.1:1", code: 401, body: `{"error":"missing bearer token"}` + "\n", want: map[string]string{"WWW-Authenticate": `Bearer`}},
		{method: "GET", path: "/me", peer: "192.0.2.1:1", header: []string{"Authorization", "Bearer x.y.z"}, code: 401, body: `{"error":"invalid token"}` + "\n", want: map[string]string{"WWW-Authenticate": `Bearer error="invalid_token"`}},
	})
}
