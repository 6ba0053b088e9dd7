// Package httpapi puts a ratemesh cluster in front of HTTP handlers: a
// rate-limit middleware written on net/http (Middleware.Serve and
// Middleware.HTTP) with a thin Echo adapter (Middleware.Handler), a store
// for Echo's own RateLimiter, and the YAML policy files of LoadPolicy and
// ParsePolicy. A policy can be replaced while the middleware serves
// (Middleware.SetPolicy), and every decision can be reported to an
// Observer. JWT verification is in the subpackage jwtauth. (A node's own
// HTTP API, which ratemesh-node serves beside the middleware, is not part
// of this package.)
//
// The model is Flask-Limiter's. A Policy names default limits (replaced by a
// route's own), application limits (always on top), per-route and per-method
// limits, shared scopes counted across routes, exempt routes, dynamic limits
// and costs. It is data, so it can come from a file; the functions that make
// limits dynamic (a role, a tier) are Go fields next to it.
//
//	ips := &httpapi.ClientIP{} // the TCP peer; set Trusted behind a proxy
//	mw, err := httpapi.New(httpapi.Config{
//		Cluster: node,
//		Key:     httpapi.APIKey("X-API-KEY", ips.Key),
//		Policy: httpapi.Policy{
//			Default: "100 per hour",
//			Routes: []httpapi.Route{
//				{Method: "GET", Path: "/products", Limits: "5 per minute"},
//				{Path: "/health", Exempt: true},
//			},
//		},
//	})
//	e.Use(mw.Handler)
//
// Every counter of one request travels in one Cluster.Check, under one
// routing key (the client identity), so a request under three limits costs
// one round trip to the key's owner, which decides them all-or-nothing.
package httpapi
