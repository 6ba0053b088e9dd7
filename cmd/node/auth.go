package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
)

// authOptions are the check API's bearer tokens (--api-token,
// --api-token-file). Without either the check API is open.
type authOptions struct {
	token     string // comma-separated
	tokenFile string
	// tokens is the running set, built by load; nil: the API is open. It
	// is shared by every node of --nodes and replaced when the file
	// changes.
	tokens *nodeapi.Tokens
}

// register adds the token flags.
func (a *authOptions) register(e *envFlags) {
	e.String(&a.token, "api-token", "RATEMESH_API_TOKEN", "", "comma-separated bearer tokens (several for rotation, at least 16 characters each) that /v1/check, every other /v1/ route but DELETE /v1/keys, /json, /rlconfig and the gRPC rate limit service require; empty (and no --api-token-file): open to anyone who reaches the port")
	e.String(&a.tokenFile, "api-token-file", "RATEMESH_API_TOKEN_FILE", "", "file of more bearer tokens for the check API (one a line or comma-separated, # comments), read again on SIGHUP and every --reload-interval; a file that disappears keeps the last tokens")
}

// guarded reports whether the check API needs a token.
func (a *authOptions) guarded() bool { return a.token != "" || a.tokenFile != "" }

// load reads the tokens of the flag and the file into a.tokens; a missing
// or empty file, or a short token, stops the node.
func (a *authOptions) load() error {
	if !a.guarded() {
		return nil
	}
	list, err := a.read()
	if err != nil {
		return err
	}
	a.tokens, err = nodeapi.NewTokens(list)
	if err != nil {
		return fmt.Errorf("--api-token: %w", err)
	}
	return nil
}

// read lists the tokens of --api-token and of the file as it is now.
func (a *authOptions) read() ([]string, error) {
	list := nodeapi.ParseTokens(a.token)
	if a.tokenFile == "" {
		return list, nil
	}
	b, err := os.ReadFile(a.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("--api-token-file: %w", err)
	}
	fromFile := nodeapi.ParseTokens(string(b))
	if len(fromFile) == 0 {
		return nil, fmt.Errorf("--api-token-file %s: no tokens in the file", a.tokenFile)
	}
	return append(list, fromFile...), nil
}

// reloadFile re-reads the token file into the running set; on an error
// the set stays as it was.
func (a *authOptions) reloadFile() error {
	list, err := a.read()
	if err != nil {
		return err
	}
	if err := a.tokens.Replace(list); err != nil {
		return fmt.Errorf("--api-token-file %s: %w", a.tokenFile, err)
	}
	return nil
}

// announce logs, once per process, whether the check API is open.
func (a *authOptions) announce(log *slog.Logger) {
	if a.tokens == nil {
		log.Warn("the check API (/v1/check, /v1/cluster/*, /v1/stats, /v1/limits, /json, gRPC) is open to anyone who reaches its ports: set --api-token or --api-token-file")
		return
	}
	log.Info("the check API requires a bearer token", "tokens", a.tokens.Len())
}

// guardedPath reports whether a route of the node's HTTP API needs the
// token: every /v1/ route (the checks, the cluster's read endpoints, the
// stats and a key's limits, and any added later: the API fails closed)
// but DELETE /v1/keys, which has the admin token; and the rate limit
// service's /json and /rlconfig. Health, readiness, metrics, the
// dashboard's page and the demo stay open.
func guardedPath(c echo.Context) bool {
	switch p := c.Path(); p {
	case "/json", "/rlconfig":
		return true
	case "/v1/keys/:key":
		return false
	default:
		return strings.HasPrefix(p, "/v1/")
	}
}

// use guards the routes of e that need the token; nothing when the API is
// open. Echo runs Use middleware after routing, so it sees the route.
func (a *authOptions) use(e *echo.Echo, reg prometheus.Registerer) error {
	if a.tokens == nil {
		return nil
	}
	refused, err := nodeapi.NewAuthRefusals(reg)
	if err != nil {
		return err
	}
	mw, err := nodeapi.BearerAuth(nodeapi.BearerAuthConfig{Tokens: a.tokens, Guard: guardedPath, Refused: refused})
	if err != nil {
		return err
	}
	e.Use(mw)
	return nil
}
