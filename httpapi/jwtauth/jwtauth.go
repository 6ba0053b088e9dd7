// Package jwtauth verifies the JSON Web Tokens of HTTP requests and carries
// their claims in the request's context, so that a rate-limit key function
// can verify a token once and later handlers can read who called.
//
// Exactly the algorithms the configured keys can verify are accepted:
// "none", and an HS256 token presented where an RSA or ECDSA key is
// configured, never are.
package jwtauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Config configures a Verifier.
type Config struct {
	// Secret verifies HS256 tokens.
	Secret []byte
	// PublicKey verifies RS256 (*rsa.PublicKey) or ES256 (*ecdsa.PublicKey
	// on P-256) tokens.
	PublicKey crypto.PublicKey
	// Header carries the token as "Bearer <token>". Empty means
	// "Authorization".
	Header string
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer, Audience string
	// Leeway tolerates clock skew on exp, nbf and iat.
	Leeway time.Duration
	// Now is the clock tokens are checked against; nil means time.Now.
	Now func() time.Time
}

// ErrNoToken reports a request that carries no token at all, as opposed to
// a bad one: callers may let such requests fall back to another identity.
var ErrNoToken = errors.New("jwtauth: no bearer token")

// ErrNotBearer reports a token header that does not hold "Bearer <token>".
var ErrNotBearer = errors.New("jwtauth: not a bearer token")

// ErrNoSubject reports a verified token without a subject (sub).
var ErrNoSubject = errors.New("jwtauth: token has no subject")

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	parser *jwt.Parser
	secret []byte
	public crypto.PublicKey
	header string
}

// New checks cfg and returns its Verifier. Tokens must carry an expiry
// (exp) and a subject (sub).
func New(cfg Config) (*Verifier, error) {
	algs, err := algorithms(cfg)
	if err != nil {
		return nil, err
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(algs), jwt.WithExpirationRequired(), jwt.WithLeeway(cfg.Leeway)}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(cfg.Now))
	}
	h := cfg.Header
	if h == "" {
		h = "Authorization"
	}
	return &Verifier{
		parser: jwt.NewParser(opts...),
		secret: cfg.Secret,
		public: cfg.PublicKey,
		header: http.CanonicalHeaderKey(h),
	}, nil
}

// algorithms lists the algorithms the keys of cfg verify.
func algorithms(cfg Config) ([]string, error) {
	var algs []string
	if len(cfg.Secret) > 0 {
		algs = append(algs, jwt.SigningMethodHS256.Alg())
	}
	switch k := cfg.PublicKey.(type) {
	case nil:
	case *rsa.PublicKey:
		algs = append(algs, jwt.SigningMethodRS256.Alg())
	case *ecdsa.PublicKey:
		if k.Curve.Params().BitSize != 256 {
			return nil, fmt.Errorf("jwtauth: ES256 needs a P-256 key, not %s", k.Curve.Params().Name)
		}
		algs = append(algs, jwt.SigningMethodES256.Alg())
	default:
		return nil, fmt.Errorf("jwtauth: public key type %T: want *rsa.PublicKey or *ecdsa.PublicKey", cfg.PublicKey)
	}
	if len(algs) == 0 {
		return nil, errors.New("jwtauth: neither a secret nor a public key is configured")
	}
	return algs, nil
}

// keyFor picks the verification key by algorithm family, so that a token
// can never be checked with a key of another kind.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if len(v.secret) > 0 {
			return v.secret, nil
		}
	case *jwt.SigningMethodRSA, *jwt.SigningMethodECDSA:
		if v.public != nil {
			return v.public, nil
		}
	}
	return nil, fmt.Errorf("jwtauth: algorithm %s not accepted", t.Method.Alg())
}

// Verify parses and verifies a token and returns its claims.
func (v *Verifier) Verify(token string) (jwt.MapClaims, error) {
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(token, claims, v.keyFor); err != nil {
		return nil, err
	}
	sub, err := claims.GetSubject()
	if err != nil {
		return nil, err
	}
	if sub == "" {
		return nil, ErrNoSubject
	}
	return claims, nil
}

// Request verifies the bearer token in r's header and returns its claims:
// ErrNoToken when there is none, ErrNotBearer when the header holds
// something else, Verify's error when the token is bad.
func (v *Verifier) Request(r *http.Request) (jwt.MapClaims, error) {
	h := r.Header[v.header]
	if len(h) == 0 || h[0] == "" {
		return nil, ErrNoToken
	}
	tok, ok := strings.CutPrefix(h[0], "Bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(h[0], "bearer ")
	}
	if !ok {
		return nil, ErrNotBearer
	}
	return v.Verify(strings.TrimSpace(tok))
}

// claimsKey is the context key of verified claims.
type claimsKey struct{}

// WithClaims returns ctx carrying claims, for Claims to find.
func WithClaims(ctx context.Context, claims jwt.MapClaims) context.Context {
	return context.WithValue(ctx, claimsKey{}, claims)
}

// Claims returns the claims WithClaims put in ctx, or nil.
func Claims(ctx context.Context) jwt.MapClaims {
	m, _ := ctx.Value(claimsKey{}).(jwt.MapClaims)
	return m
}

// ClaimString returns a string claim carried by ctx, or "".
func ClaimString(ctx context.Context, name string) string {
	s, _ := Claims(ctx)[name].(string)
	return s
}
