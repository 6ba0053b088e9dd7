package nodeapi

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh/httpapi"
)

// hiddenKeyBytes is how many bytes of a key's HMAC stand for it in
// /v1/stats: 12 hex digits, enough to tell the ten keys shown apart.
const hiddenKeyBytes = 6

// HideKey is what GET /v1/stats shows in place of client key key to a
// caller without a token: "#" and 12 hex digits of the key's HMAC-SHA256
// under secret. The same key under the same secret is always shown the
// same, so that a key denied on several members is one row.
func HideKey(secret []byte, key string) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(key))
	return "#" + hex.EncodeToString(mac.Sum(nil)[:hiddenKeyBytes])
}

// keyHashSecret is cfg's secret for HideKey, or a random one: without a
// secret of its own a node's hashes differ from its peers', but a hash of
// a key from a small space (an IPv4 address) cannot be reversed by
// hashing every candidate.
func keyHashSecret(cfg []byte) []byte {
	if len(cfg) > 0 {
		return cfg
	}
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

// showsKeys reports whether the caller of r may see client keys as they
// are: it presents one of the check API's tokens, or the admin token.
// The admin token is tried under the admin-token throttle, so that
// /v1/stats cannot be used to guess it faster than DELETE /v1/keys; a
// caller over its budget is shown hashes.
func (s *service) showsKeys(now time.Time, c echo.Context) bool {
	auth := c.Request().Header.Get(echo.HeaderAuthorization)
	if auth == "" {
		return false
	}
	if s.apiTokens != nil && s.apiTokens.Check(auth) == AuthOK {
		return true
	}
	if s.admin == ([sha256.Size]byte{}) {
		return false
	}
	client := s.adminClient(c)
	if ok, _ := s.adminFailures.allow(now, client); !ok {
		return false
	}
	if !s.authorized(c.Request()) {
		return false
	}
	s.adminFailures.succeeded(now, client)
	return true
}

// adminClient is the client c's request is throttled as: its IPv4
// address or IPv6 prefix, else the address as given.
func (s *service) adminClient(c echo.Context) string {
	addr := c.RealIP()
	if client, isIP := httpapi.IPKey(addr, s.ipv6Prefix); isIP {
		return client
	}
	return addr
}

// hideKeys returns the nodes' stats with each client key replaced by its
// HideKey under s's secret; nodes is not changed (it is shared).
func (s *service) hideKeys(nodes []NodeStats) []NodeStats {
	out := make([]NodeStats, len(nodes))
	for i, n := range nodes {
		n.TopDenied = append([]TopKey(nil), n.TopDenied...)
		for j := range n.TopDenied {
			n.TopDenied[j].Key = HideKey(s.keySecret, n.TopDenied[j].Key)
		}
		out[i] = n
	}
	return out
}
