package main

import (
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/demo"
	"github.com/ratemesh/ratemesh/httpapi"
)

// demoSwitch serves a node's demo through an inner Echo instance that a
// policy reload replaces whole: the demo's middleware compiles its policy
// once, so a new policy is a new middleware. Requests in flight finish on
// the instance they started on. The metrics of the new middleware are the
// old one's (the registry hands back the collectors already there).
type demoSwitch struct {
	cur   atomic.Pointer[echo.Echo]
	build func(httpapi.Policy) (*echo.Echo, error)
}

// demoBuild is a demo built for a new policy, not serving yet.
type demoBuild struct {
	sw    *demoSwitch
	inner *echo.Echo
}

// prepare builds the demo for p without serving it.
func (d *demoSwitch) prepare(p httpapi.Policy) (*demoBuild, error) {
	inner, err := d.build(p)
	if err != nil {
		return nil, err
	}
	return &demoBuild{sw: d, inner: inner}, nil
}

// commit serves the new demo from the next request on.
func (b *demoBuild) commit() { b.sw.cur.Store(b.inner) }

// serve hands a request to the current demo.
func (d *demoSwitch) serve(c echo.Context) error {
	d.cur.Load().ServeHTTP(c.Response(), c.Request())
	return nil
}

// registerDemo mounts the demo with policy on e behind a demoSwitch that
// the reloader (h.hub) can replace. The demo's routes do not depend on the
// policy, so e routes them once to whichever demo is current.
func (h *httpOptions) registerDemo(e *echo.Echo, node *ratemesh.Node, policy httpapi.Policy, clients httpapi.ClientIP, headers httpapi.Headers, log *slog.Logger) error {
	// Computed once: a random secret drawn again at each reload would
	// void the tokens handed out before it.
	secret := h.demoJWTSecret(log)
	d := &demoSwitch{build: func(p httpapi.Policy) (*echo.Echo, error) {
		inner := echo.New()
		inner.IPExtractor = clients.Extractor()
		return inner, demo.Register(inner, demo.Config{
			Cluster:    node,
			Policy:     &p,
			JWTSecret:  secret,
			Clients:    clients,
			Headers:    headers,
			Logger:     log,
			Registerer: node.Registry(),
			Stats:      h.stats,
		})
	}}
	b, err := d.prepare(policy)
	if err != nil {
		return err
	}
	b.commit()
	for _, r := range b.inner.Routes() {
		e.Add(r.Method, r.Path, d.serve)
	}
	warnUnserved(log, policy, b.inner.Routes())
	h.hub.addDemo(d)
	return nil
}

// warnUnserved warns, once a line, about each route of the policy that
// matches no route of the app it limits (the demo's): it limits nothing.
func warnUnserved(log *slog.Logger, p httpapi.Policy, served []*echo.Route) {
	var paths []string
	for _, s := range served {
		paths = append(paths, s.Path)
	}
	for _, r := range httpapi.UnservedRoutes(p, served) {
		msg := "a route of the policy matches no route the node serves: it limits nothing"
		if near := nearest(r.Path, paths); near != "" && near != r.Path {
			msg += fmt.Sprintf("; did you mean %q?", near)
		}
		log.Warn(msg, "route", strings.TrimSpace(r.Method+" "+r.Path))
	}
}
