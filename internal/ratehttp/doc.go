// Package ratehttp holds what the rate-limit middleware (httpapi) and the
// node's own HTTP API (internal/nodeapi) both need, so that neither
// imports the other: the numbers a bucket.Status is reported with, a
// bounded cache of parsed limit strings, and collector registration that
// several middlewares and services may share.
package ratehttp
