package httpapi

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
)

// JWTConfig configures a JWT key function. Exactly the algorithms the
// configured keys can verify are accepted: "none", and an HS256 token
// presented where an RSA or ECDSA key is configured, never are.
type JWTConfig struct {
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
	// Missing identifies requests that carry no token at all; nil answers
	// them 401. A token that is present but bad is always 401.
	Missing KeyFunc
	// Now is the clock tokens are checked against; nil means time.Now.
	Now func() time.Time
}

// JWT identifies clients by the subject of a verified JSON Web Token.
type JWT struct {
	parser  *jwt.Parser
	secret  []byte
	public  crypto.PublicKey
	header  string
	missing KeyFunc
}

// claimsKey is where JWT.Key leaves the verified claims in echo.Context.
const claimsKey = "ratemesh.jwt.claims"

// NewJWT checks cfg and returns the key function's owner. Tokens must carry
// an expiry (exp) and a subject (sub).
func NewJWT(cfg JWTConfig) (*JWT, error) {
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
			return nil, fmt.Errorf("jwt: ES256 needs a P-256 key, not %s", k.Curve.Params().Name)
		}
		algs = append(algs, jwt.SigningMethodES256.Alg())
	default:
		return nil, fmt.Errorf("jwt: public key type %T: want *rsa.PublicKey or *ecdsa.PublicKey", cfg.PublicKey)
	}
	if len(algs) == 0 {
		return nil, errors.New("jwt: neither a secret nor a public key is configured")
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
		h = echo.HeaderAuthorization
	}
	return &JWT{
		parser:  jwt.NewParser(opts...),
		secret:  cfg.Secret,
		public:  cfg.PublicKey,
		header:  http.CanonicalHeaderKey(h),
		missing: cfg.Missing,
	}, nil
}

// keyFor picks the verification key by algorithm family, so that a token
// can never be checked with a key of another kind.
func (j *JWT) keyFor(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if len(j.secret) > 0 {
			return j.secret, nil
		}
	case *jwt.SigningMethodRSA, *jwt.SigningMethodECDSA:
		if j.public != nil {
			return j.public, nil
		}
	}
	return nil, fmt.Errorf("jwt: algorithm %s not accepted", t.Method.Alg())
}

// Verify parses and verifies a token and returns its claims.
func (j *JWT) Verify(token string) (jwt.MapClaims, error) {
	claims := jwt.MapClaims{}
	if _, err := j.parser.ParseWithClaims(token, claims, j.keyFor); err != nil {
		return nil, err
	}
	sub, err := claims.GetSubject()
	if err != nil {
		return nil, err
	}
	if sub == "" {
		return nil, errors.New("jwt: token has no subject")
	}
	return claims, nil
}

// Key is a KeyFunc: "user:" and the verified token's subject. It leaves the
// claims for handlers and Route.Tier functions (see Claims). A missing
// token goes to JWTConfig.Missing; a bad, expired or unsigned one is a
// KeyError with status 401.
func (j *JWT) Key(c echo.Context) (string, error) {
	v := c.Request().Header[j.header]
	if len(v) == 0 || v[0] == "" {
		if j.missing != nil {
			return j.missing(c)
		}
		return "", &KeyError{Status: http.StatusUnauthorized, Message: "missing bearer token"}
	}
	tok, ok := strings.CutPrefix(v[0], "Bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(v[0], "bearer ")
	}
	if !ok {
		return "", &KeyError{Status: http.StatusUnauthorized, Message: "invalid token", Err: errors.New("not a bearer token")}
	}
	claims, err := j.Verify(strings.TrimSpace(tok))
	if err != nil {
		return "", &KeyError{Status: http.StatusUnauthorized, Message: "invalid token", Err: err}
	}
	c.Set(claimsKey, claims)
	sub, _ := claims.GetSubject()
	return keyPart(PrefixUser, sub), nil
}

// Claims returns the claims JWT.Key verified for this request, or nil.
func Claims(c echo.Context) jwt.MapClaims {
	m, _ := c.Get(claimsKey).(jwt.MapClaims)
	return m
}

// ClaimString returns a string claim verified for this request, or "".
func ClaimString(c echo.Context, name string) string {
	s, _ := Claims(c)[name].(string)
	return s
}
