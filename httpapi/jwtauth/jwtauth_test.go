package jwtauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/ratemesh/ratemesh/httpapi/jwtauth"
)

// sign makes a token with claims signed by method and key.
func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// request is a GET carrying header (name, value pairs).
func request(header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

func newVerifier(t *testing.T, cfg jwtauth.Config) *jwtauth.Verifier {
	t.Helper()
	v, err := jwtauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifierRefusesForgedTokens(t *testing.T) {
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
	hs := newVerifier(t, jwtauth.Config{Secret: secret, Now: clock})
	rs := newVerifier(t, jwtauth.Config{PublicKey: &rsaKey.PublicKey, Now: clock})
	es := newVerifier(t, jwtauth.Config{PublicKey: &ecKey.PublicKey, Now: clock, Issuer: "ratemesh"})
	aud := newVerifier(t, jwtauth.Config{Secret: secret, Now: clock, Audience: "orders"})
	own := newVerifier(t, jwtauth.Config{Secret: secret, Now: clock, Header: "X-Token"})
	valid := jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix(), "iss": "ratemesh"}
	expired := jwt.MapClaims{"sub": "alice", "exp": now.Add(-time.Second).Unix()}
	noSub := jwt.MapClaims{"exp": now.Add(time.Hour).Unix()}
	noExp := jwt.MapClaims{"sub": "alice"}
	forOrders := jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix(), "aud": "orders"}
	forBilling := jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix(), "aud": "billing"}
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid)
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	for _, tc := range []struct {
		name   string
		v      *jwtauth.Verifier
		header []string
		ok     bool
		is     error // the error, when it is one of the package's
	}{
		{"HS256", hs, bearer(sign(t, jwt.SigningMethodHS256, secret, valid)), true, nil},
		{"RS256", rs, bearer(sign(t, jwt.SigningMethodRS256, rsaKey, valid)), true, nil},
		{"ES256", es, bearer(sign(t, jwt.SigningMethodES256, ecKey, valid)), true, nil},
		{"lower-case bearer", hs, []string{"Authorization", "bearer " + sign(t, jwt.SigningMethodHS256, secret, valid)}, true, nil},
		{"audience", aud, bearer(sign(t, jwt.SigningMethodHS256, secret, forOrders)), true, nil},
		{"own header", own, []string{"X-Token", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, valid)}, true, nil},
		{"other secret", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte("other"), valid)), false, nil},
		{"expired", hs, bearer(sign(t, jwt.SigningMethodHS256, secret, expired)), false, nil},
		{"no expiry", hs, bearer(sign(t, jwt.SigningMethodHS256, secret, noExp)), false, nil},
		{"no subject", hs, bearer(sign(t, jwt.SigningMethodHS256, secret, noSub)), false, jwtauth.ErrNoSubject},
		{"alg none", hs, bearer(none), false, nil},
		{"alg none, RSA", rs, bearer(none), false, nil},
		{"HS384 not accepted", hs, bearer(sign(t, jwt.SigningMethodHS384, secret, valid)), false, nil},
		// Alg confusion: an HMAC token keyed with the public key's bytes.
		{"HS256 where RS256 is configured", rs, bearer(sign(t, jwt.SigningMethodHS256, rsaKey.PublicKey.N.Bytes(), valid)), false, nil},
		{"wrong issuer", es, bearer(sign(t, jwt.SigningMethodES256, ecKey, jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix(), "iss": "other"})), false, nil},
		{"no issuer", es, bearer(sign(t, jwt.SigningMethodES256, ecKey, noExp)), false, nil},
		{"wrong audience", aud, bearer(sign(t, jwt.SigningMethodHS256, secret, forBilling)), false, nil},
		{"no audience", aud, bearer(sign(t, jwt.SigningMethodHS256, secret, valid)), false, nil},
		{"not bearer", hs, []string{"Authorization", "Basic YTpi"}, false, jwtauth.ErrNotBearer},
		{"garbage", hs, bearer("a.b.c"), false, nil},
		{"missing", hs, nil, false, jwtauth.ErrNoToken},
		{"empty", hs, []string{"Authorization", ""}, false, jwtauth.ErrNoToken},
		{"token in the other header", own, bearer(sign(t, jwt.SigningMethodHS256, secret, valid)), false, jwtauth.ErrNoToken},
	} {
		claims, err := tc.v.Request(request(tc.header...))
		switch {
		case tc.ok && (err != nil || claims["sub"] != "alice"):
			t.Errorf("%s: claims %v, %v; want alice's", tc.name, claims, err)
		case !tc.ok && (err == nil || claims != nil):
			t.Errorf("%s: claims %v accepted", tc.name, claims)
		case tc.is != nil && !errors.Is(err, tc.is):
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.is)
		}
	}
}

func TestNewRefusesBadKeys(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]jwtauth.Config{
		"no key":     {},
		"not a key":  {PublicKey: "not a key"},
		"P-384 key":  {PublicKey: &p384.PublicKey},
		"empty byte": {Secret: []byte{}},
	} {
		if _, err := jwtauth.New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

func TestClaimsInContext(t *testing.T) {
	ctx := context.Background()
	if jwtauth.Claims(ctx) != nil || jwtauth.ClaimString(ctx, "sub") != "" {
		t.Fatal("a bare context carries claims")
	}
	ctx = jwtauth.WithClaims(ctx, jwt.MapClaims{"sub": "alice", "tier": "paid", "n": 3.0})
	if got := jwtauth.ClaimString(ctx, "tier"); got != "paid" {
		t.Errorf("tier = %q, want paid", got)
	}
	if got := jwtauth.ClaimString(ctx, "n"); got != "" {
		t.Errorf("a number claim read as string %q", got)
	}
	if got := jwtauth.Claims(ctx)["sub"]; got != "alice" {
		t.Errorf("sub = %v", got)
	}
}
