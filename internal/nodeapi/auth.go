package nodeapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/ratehttp"
)

// MinTokenLen is the shortest bearer token Tokens accepts: a shorter one
// can be guessed by a client allowed to try it often enough.
const MinTokenLen = 16

// ErrTokenTooShort reports a bearer token shorter than MinTokenLen.
var ErrTokenTooShort = errors.New("nodeapi: token shorter than 16 characters")

// AuthResult is what Tokens.Check made of an Authorization header.
type AuthResult int

// The results of Tokens.Check. The names are the "reason" label of the
// refusal metric.
const (
	AuthOK      AuthResult = iota // a token of the set
	AuthMissing                   // no "Bearer" credentials at all
	AuthInvalid                   // a token that is not in the set
)

// String is the result's metric label: ok, missing or invalid.
func (r AuthResult) String() string {
	switch r {
	case AuthOK:
		return "ok"
	case AuthMissing:
		return "missing"
	}
	return "invalid"
}

// Tokens is a set of bearer tokens, any of which opens the API it guards.
// Several at once let clients move from an old token to a new one without
// a moment when either is refused. Replace swaps the set while requests
// are checked against it; it is safe for concurrent use.
type Tokens struct {
	sums atomic.Pointer[[][sha256.Size]byte]
}

// NewTokens returns the set of tokens; see Replace for what is refused.
func NewTokens(tokens []string) (*Tokens, error) {
	t := &Tokens{}
	return t, t.Replace(tokens)
}

// Replace makes tokens the set. An empty list or a token shorter than
// MinTokenLen is refused and the set stays as it was.
func (t *Tokens) Replace(tokens []string) error {
	if len(tokens) == 0 {
		return errors.New("nodeapi: no tokens")
	}
	sums := make([][sha256.Size]byte, len(tokens))
	for i, tok := range tokens {
		if len(tok) < MinTokenLen {
			return fmt.Errorf("token %d of %d: %w", i+1, len(tokens), ErrTokenTooShort)
		}
		sums[i] = sha256.Sum256([]byte(tok))
	}
	t.sums.Store(&sums)
	return nil
}

// Len is how many tokens the set holds.
func (t *Tokens) Len() int {
	if s := t.sums.Load(); s != nil {
		return len(*s)
	}
	return 0
}

// Check reads an Authorization header value ("Bearer <token>"). The token
// is compared with every token of the set in constant time, over hashes,
// so that neither which token nor its length leaks through timing.
func (t *Tokens) Check(authorization string) AuthResult {
	scheme, tok, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return AuthMissing
	}
	sum := sha256.Sum256([]byte(tok))
	match := 0
	if s := t.sums.Load(); s != nil {
		for i := range *s {
			match |= subtle.ConstantTimeCompare(sum[:], (*s)[i][:])
		}
	}
	if match == 1 {
		return AuthOK
	}
	return AuthInvalid
}

// ParseTokens splits a token list: tokens separated by commas or line
// breaks, blanks around them and empty entries ignored, and lines starting
// with # skipped (so that a token file may carry comments).
func ParseTokens(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, tok := range strings.Split(line, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				out = append(out, tok)
			}
		}
	}
	return out
}

// NewAuthRefusals registers ratemesh_auth_refused_total with reg (nil:
// kept but not exported), or returns the one already there: refused
// requests by API ("http", "grpc") and reason ("missing", "invalid").
func NewAuthRefusals(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	return ratehttp.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ratemesh_auth_refused_total",
		Help: "Requests to the check API refused for want of a valid bearer token (--api-token), by API (http, grpc) and reason (missing, invalid).",
	}, []string{"api", "reason"}))
}

// BearerAuthConfig configures BearerAuth.
type BearerAuthConfig struct {
	// Tokens are the accepted tokens. Required.
	Tokens *Tokens
	// Guard picks the requests that need a token, by route; nil: every
	// request. Echo middleware added with Use runs after routing, so
	// c.Path() is the route pattern.
	Guard func(c echo.Context) bool
	// Refused counts refusals under api="http"; nil: not counted.
	Refused *prometheus.CounterVec
}

// BearerAuth is Echo middleware that answers the requests Guard picks with
// 401 and a JSON error unless they carry "Authorization: Bearer <token>"
// with a token of cfg.Tokens.
func BearerAuth(cfg BearerAuthConfig) (echo.MiddlewareFunc, error) {
	if cfg.Tokens == nil {
		return nil, errors.New("nodeapi: BearerAuthConfig.Tokens is nil")
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if cfg.Guard != nil && !cfg.Guard(c) {
				return next(c)
			}
			res := cfg.Tokens.Check(c.Request().Header.Get(echo.HeaderAuthorization))
			if res == AuthOK {
				return next(c)
			}
			if cfg.Refused != nil {
				cfg.Refused.WithLabelValues("http", res.String()).Inc()
			}
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="ratemesh"`)
			msg := "api token required: send Authorization: Bearer <token>"
			if res == AuthInvalid {
				msg = "api token not valid"
			}
			return c.JSON(http.StatusUnauthorized, httpapi.ErrorResponse{Error: msg})
		}
	}, nil
}
