// Package demo is the products API of the Flask-Limiter tutorial the
// project started from, served through ratemesh on every node of a cluster
// so that its limits hold cluster-wide.
//
// Clients are identified by their X-API-KEY header, else by IP address;
// GET /orders by the subject of a token from POST /login (see Users for
// the accounts and their passwords). The limits are Policy's.
package demo

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/httpapi/jwtauth"
)

// Product is one item of the catalogue.
type Product struct {
	ID    int    `json:"id"`
	Name  string `json:"name"`
	Price int    `json:"price"`
}

// Products returns the tutorial's catalogue.
func Products() []Product {
	return []Product{
		{ID: 1, Name: "Amul Butter", Price: 50},
		{ID: 2, Name: "Tata Tea", Price: 200},
		{ID: 3, Name: "Parle-G Biscuits", Price: 10},
	}
}

// Config configures the demo.
type Config struct {
	// Cluster decides the checks; usually the node. Required.
	Cluster httpapi.Cluster
	// Policy replaces Policy(); nil means the tutorial's.
	Policy *httpapi.Policy
	// JWTSecret signs and verifies the HS256 tokens of /login and /orders;
	// every node of a cluster needs the same. Required.
	JWTSecret []byte
	// Clients finds the client address behind trusted proxies; the zero
	// value uses the TCP peer.
	Clients httpapi.ClientIP
	// Headers switches rate-limit header families off.
	Headers httpapi.Headers
	// Logger, Registerer and Observer go to the middleware.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Observer   httpapi.Observer
	// Now is the clock of token issue and expiry; nil means time.Now.
	Now func() time.Time
}

// DenyHandler is the tutorial's custom 429 handler:
// {"error":"Too many requests. Please try again later.","limit":"5 per 1 minute"}.
func DenyHandler(w http.ResponseWriter, _ *http.Request, d httpapi.Denial) {
	httpapi.WriteJSON(w, http.StatusTooManyRequests, denyBody{
		Error: "Too many requests. Please try again later.",
		Limit: d.Limit.String(),
	})
}

// denyBody is DenyHandler's JSON. A struct rather than the tutorial's dict:
// encoding/json writes it in field order without sorting map keys, about
// a quarter of the time and none of the allocations.
type denyBody struct {
	Error string `json:"error"`
	Limit string `json:"limit"`
}

// Register mounts the demo's routes on r, each behind the rate-limit
// middleware it builds from cfg.
func Register(r httpapi.Routes, cfg Config) error {
	_, err := Mount(r, cfg)
	return err
}

// Demo is the demo as mounted by Mount.
type Demo struct {
	mw     *httpapi.Middleware
	jwtKey httpapi.KeyFunc
	routes []*echo.Route
}

// Mount is Register, and returns the mounted demo, whose policy SetPolicy
// replaces while it serves.
func Mount(r httpapi.Routes, cfg Config) (*Demo, error) {
	if len(cfg.JWTSecret) == 0 {
		return nil, errors.New("demo: Config.JWTSecret is empty")
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	verifier, err := jwtauth.New(jwtauth.Config{Secret: cfg.JWTSecret, Now: now})
	if err != nil {
		return nil, err
	}
	d := &Demo{jwtKey: httpapi.JWTKey(verifier, nil)}
	p := Policy()
	if cfg.Policy != nil {
		p = *cfg.Policy
	}
	clients := cfg.Clients
	d.mw, err = httpapi.New(httpapi.Config{
		Cluster:    cfg.Cluster,
		Policy:     d.withFuncs(p),
		Key:        httpapi.APIKey("X-API-KEY", clients.Key),
		Headers:    cfg.Headers,
		OnDeny:     DenyHandler,
		Logger:     cfg.Logger,
		Registerer: cfg.Registerer,
		Observer:   cfg.Observer,
	})
	if err != nil {
		return nil, err
	}
	a := &auth{secret: cfg.JWTSecret, now: now, users: Users()}
	limited := d.mw.Handler
	d.routes = []*echo.Route{
		r.GET("/products", listProducts, limited),
		r.GET("/products/:id", getProduct, limited),
		r.GET("/rb-products", listProducts, limited),
		r.GET("/popular", popular, limited),
		r.GET("/deals", deals, limited),
		r.GET("/flash-sale", flashSale, limited),
		r.GET("/categories", categories, limited),
		r.GET("/health", health, limited),
		r.POST("/login", a.login, limited),
		r.GET("/orders", orders(d.jwtKey), limited),
	}
	return d, nil
}

// SetPolicy makes p the demo's policy from the next request on, with the
// demo's functions attached to it as Mount attaches them (the tier of
// /rb-products, the token subject and tier of /orders); see
// httpapi.Middleware.SetPolicy. On an error the policy stays as it was.
func (d *Demo) SetPolicy(p httpapi.Policy) error {
	return d.mw.SetPolicy(d.withFuncs(p))
}

// Middleware is the demo's rate-limit middleware, for what reads its
// policy (a node's stats).
func (d *Demo) Middleware() *httpapi.Middleware { return d.mw }

// Routes are the routes the demo mounted.
func (d *Demo) Routes() []*echo.Route { return d.routes }

// withFuncs is a copy of p with the demo's functions attached.
func (d *Demo) withFuncs(p httpapi.Policy) httpapi.Policy {
	p = clonePolicy(p)
	attach(&p, http.MethodGet, "/rb-products", func(r *httpapi.Route) { r.Tier = apiKeyTier })
	attach(&p, http.MethodGet, "/orders", func(r *httpapi.Route) {
		r.Key = d.jwtKey
		r.Tier = func(r *http.Request) string { return jwtauth.ClaimString(r.Context(), "tier") }
	})
	return p
}

// apiKeyTier is the tutorial's role_based_limit: the admin key is "admin".
func apiKeyTier(r *http.Request) string {
	if r.Header.Get("X-API-KEY") == AdminAPIKey {
		return "admin"
	}
	return ""
}

// clonePolicy copies p deeply enough that attaching functions does not
// touch the caller's routes.
func clonePolicy(p httpapi.Policy) httpapi.Policy {
	p.Shared = append([]httpapi.Shared(nil), p.Shared...)
	p.Routes = append([]httpapi.Route(nil), p.Routes...)
	return p
}

func listProducts(c echo.Context) error {
	return c.JSON(http.StatusOK, Products())
}

func getProduct(c echo.Context) error {
	id, err := strconv.Atoi(c.Param("id"))
	if err == nil {
		for _, p := range Products() {
			if p.ID == id {
				return c.JSON(http.StatusOK, p)
			}
		}
	}
	return c.JSON(http.StatusNotFound, map[string]string{"error": "Product not found"})
}

func popular(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string][]string{"popular": {"Amul Butter", "Tata Tea"}})
}

func deals(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string][]string{"deals": {"Parle-G Biscuits"}})
}

func flashSale(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string][]string{"flash_sale": {"Tata Tea"}})
}

func categories(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string][]string{"categories": {"Dairy", "Beverages", "Snacks"}})
}

func health(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}
