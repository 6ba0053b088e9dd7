package demo

import (
	"net/http"

	"github.com/ratemesh/ratemesh/httpapi"
)

// AdminAPIKey is the tutorial's admin API key: X-API-KEY: admin123 lifts
// /rb-products from 10 to 100 requests per minute.
const AdminAPIKey = "admin123"

// LoginFailures is how many failed logins a client may make.
const LoginFailures = "5 per minute"

// SharedProducts is the scope /popular and /deals count in together.
const SharedProducts = "products"

// Policy returns the tutorial's policy as data. A policy file may override any
// of it; Register then attaches the Go parts (tier functions, the JWT key)
// to the /rb-products and /orders entries.
//
//	default (no own limit, e.g. /categories)          100 per hour
//	GET /products                                      5 per minute
//	GET /products/:id                                  10 per minute
//	GET /rb-products                                   10 per minute; X-API-KEY admin123: 100 per minute
//	GET /popular, GET /deals                           20 per minute, shared scope "products"
//	GET /flash-sale                                    10 per minute; 200 per day
//	GET /health                                        exempt
//	GET /orders (per JWT subject)                      free 10, paid 100 per minute; admin unlimited
//	POST /login                                        5 failed logins (401) per minute; good ones never count
func Policy() httpapi.Policy {
	get := http.MethodGet
	return httpapi.Policy{
		Default: "100 per hour",
		Shared:  []httpapi.Shared{{Scope: SharedProducts, Limits: "20 per minute"}},
		Routes: []httpapi.Route{
			{Method: get, Path: "/products", Limits: "5 per minute"},
			{Method: get, Path: "/products/:id", Limits: "10 per minute"},
			{Method: get, Path: "/rb-products", Limits: "10 per minute", Tiers: map[string]string{"admin": "100 per minute"}},
			{Method: get, Path: "/popular", Shared: []string{SharedProducts}},
			{Method: get, Path: "/deals", Shared: []string{SharedProducts}},
			{Method: get, Path: "/flash-sale", Limits: "10 per minute; 200 per day"},
			{Method: get, Path: "/health", Exempt: true},
			{Method: get, Path: "/orders", Limits: "10 per minute", Tiers: map[string]string{
				TierFree:  "10 per minute",
				TierPaid:  "100 per minute",
				TierAdmin: "",
			}},
			// Counts only failures: a brute force is limited, a user who
			// logs in is not. See httpapi's countwhen.go for the bound on
			// parallel failures.
			{Method: http.MethodPost, Path: "/login", Limits: LoginFailures, CountStatuses: []int{http.StatusUnauthorized}},
		},
	}
}

// attach finds the entry of method and path in p (adding one if a policy
// file dropped it) and lets f set its Go fields.
func attach(p *httpapi.Policy, method, path string, f func(r *httpapi.Route)) {
	for i := range p.Routes {
		if p.Routes[i].Path == path && (p.Routes[i].Method == method || p.Routes[i].Method == "") {
			f(&p.Routes[i])
			return
		}
	}
	p.Routes = append(p.Routes, httpapi.Route{Method: method, Path: path})
	f(&p.Routes[len(p.Routes)-1])
}
