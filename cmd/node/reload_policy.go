package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/demo"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/internal/suggest"
)

// registerDemo mounts the demo with policy on e, shows its policy in the
// node's stats, and hands it to the reloader (h.hub), which replaces its
// policy in place (demo.Demo.SetPolicy) when the policy file changes.
func (h *httpOptions) registerDemo(e *echo.Echo, node *ratemesh.Node, policy httpapi.Policy, clients httpapi.ClientIP, headers httpapi.Headers, log *slog.Logger) error {
	d, err := demo.Mount(e, demo.Config{
		Cluster:    node,
		Policy:     &policy,
		JWTSecret:  h.demoJWTSecret(log),
		Clients:    clients,
		Headers:    headers,
		Logger:     log,
		Registerer: node.Registry(),
		Observer:   h.stats,
	})
	if err != nil {
		return err
	}
	h.stats.ShowPolicy(d.Middleware())
	warnUnserved(log, policy, d.Routes())
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
		if near := suggest.Nearest(r.Path, paths); near != "" && near != r.Path {
			msg += fmt.Sprintf("; did you mean %q?", near)
		}
		log.Warn(msg, "route", strings.TrimSpace(r.Method+" "+r.Path))
	}
}
