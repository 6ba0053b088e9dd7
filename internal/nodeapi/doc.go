// Package nodeapi is a ratemesh node's own HTTP API, which the node
// command (cmd/node) serves beside the rate-limit middleware of package
// httpapi: the check API (POST /v1/check), the cluster's members and key
// owners, the admin reset, health and readiness, Prometheus metrics, the
// node's and cluster's activity (GET /v1/stats, recorded by Stats), the
// policy's limits (GET /v1/limits) and the dashboard (/ui/); and the
// bearer tokens (Tokens, BearerAuth) that guard the check API.
//
// It reads the middleware only through PolicySource, a read-only view of
// its policy, and the middleware reports its decisions to Stats through
// httpapi.Observer, which Stats implements; httpapi does not import it.
package nodeapi
