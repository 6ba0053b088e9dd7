package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/ratemesh/ratemesh/httpapi/jwtauth"
)

// KeyFunc returns the routing key of a request: the client identity every
// counter of the request is kept under, such as "ip:192.0.2.1",
// "apikey:k-123" or "user:alice". An error refuses the request (see
// KeyError); it never falls back to another identity.
//
// ctx is nil, or r's context with values the function wants later code
// to see, such as the claims of a verified token (see JWTKey): Route.Tier,
// Dynamic and CostFunc and the handler then get the request with it. nil
// keeps the request as it is and costs nothing, which is why it is not
// r.Context().
type KeyFunc func(r *http.Request) (key string, ctx context.Context, err error)

// Routing key prefixes of the built-in key functions.
const (
	PrefixIP     = "ip:"
	PrefixAPIKey = "apikey:"
	PrefixUser   = "user:"
)

// KeyError is a client identification failure with the HTTP status to
// answer it with (401 for a bad token).
type KeyError struct {
	Status  int
	Message string
	Err     error // the cause, for logs; never sent to the client
}

// Error implements error.
func (e *KeyError) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// Unwrap returns the cause.
func (e *KeyError) Unwrap() error { return e.Err }

// maxKeyPart bounds the client-chosen part of a routing key (an API key or
// a token subject). Longer values are replaced by their SHA-256, so that a
// client cannot make the owner store kilobytes per key.
const maxKeyPart = 128

// keyPart bounds v as described at maxKeyPart.
func keyPart(prefix, v string) string {
	if len(v) <= maxKeyPart {
		return prefix + v
	}
	sum := sha256.Sum256([]byte(v))
	return prefix + "sha256:" + hex.EncodeToString(sum[:])
}

// ClientIP finds the client address of a request. The zero value trusts no
// proxy: the key is the TCP peer's address, whatever the headers say.
//
// Echo's default RealIP believes X-Forwarded-For from anyone, which lets a
// client choose its own rate-limit key; ClientIP reads the forwarding
// headers only when the peer is a trusted proxy.
type ClientIP struct {
	// Trusted are the proxies whose X-Forwarded-For and X-Real-IP are
	// believed. A request from one of them is attributed to the rightmost
	// X-Forwarded-For hop that is not itself trusted (the leftmost when
	// all are), else to X-Real-IP, else to the proxy.
	Trusted []netip.Prefix
	// IPv6Prefix is how many leading bits of an IPv6 client address make
	// its key: one holder of a /64 has 2^64 addresses to choose from, so
	// keying each address would give it that many quotas. 0 means
	// DefaultIPv6Prefix; 128 keys every address. Zone ids are dropped, and
	// IPv4-mapped addresses are keyed as IPv4.
	IPv6Prefix int
}

// DefaultIPv6Prefix is ClientIP's IPv6Prefix when it is 0: the /64 an ISP
// gives one subscriber.
const DefaultIPv6Prefix = 64

// ParseTrustedProxies reads CIDRs ("10.0.0.0/8") and bare addresses
// ("192.0.2.7") into prefixes for ClientIP.Trusted.
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", s, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", s, err)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// trusted reports whether a is a trusted proxy.
func (x *ClientIP) trusted(a netip.Addr) bool {
	for _, p := range x.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Addr returns the client address of r; ok is false when the peer address
// cannot be parsed (a Unix socket).
func (x *ClientIP) Addr(r *http.Request) (addr netip.Addr, ok bool) {
	peer, ok := parseHost(r.RemoteAddr)
	if !ok || len(x.Trusted) == 0 || !x.trusted(peer) {
		return peer, ok
	}
	// Walk X-Forwarded-For from the right: each hop was appended by the
	// proxy to its right, so hops stay believable while they are trusted.
	client, found := peer, false
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		v := xff[i]
		for v != "" {
			hop := v
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				hop, v = v[j+1:], v[:j]
			} else {
				v = ""
			}
			hop = strings.TrimSpace(hop)
			if hop == "" {
				continue
			}
			a, ok := parseHop(hop)
			if !ok {
				return client, true // garbage left of here came from the client
			}
			client, found = a, true
			if !x.trusted(a) {
				return client, true
			}
		}
	}
	if found {
		return client, true
	}
	if a, ok := parseHop(strings.TrimSpace(r.Header.Get("X-Real-Ip"))); ok {
		return a, true
	}
	return peer, true
}

// parseHost parses the host of a host:port peer address.
func parseHost(hostport string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap.Addr().Unmap(), true
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// parseHop parses one forwarding-header address: a bare or bracketed IP,
// with or without a port.
func parseHop(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// String returns the client address of r as text; the raw peer address
// when it is not an IP.
func (x *ClientIP) String(r *http.Request) string {
	a, ok := x.Addr(r)
	if !ok {
		return r.RemoteAddr
	}
	var buf [48]byte
	return string(a.AppendTo(buf[:0]))
}

// Key is a KeyFunc: "ip:" and the client address.
func (x *ClientIP) Key(r *http.Request) (string, context.Context, error) {
	a, ok := x.Addr(r)
	if !ok {
		return keyPart(PrefixIP, r.RemoteAddr), nil, nil
	}
	var buf [64]byte
	return string(appendIPKey(append(buf[:0], PrefixIP...), a, x.IPv6Prefix)), nil, nil
}

// appendIPKey appends what identifies client address a to b: an IPv4
// address (IPv4-mapped ones included) as itself, an IPv6 address as its
// first bits bits (DefaultIPv6Prefix when bits is not 1 to 128), without
// its zone id. Each thing keyed by client address (limits, the admin-token
// throttle) keys it so, or a client could mint keys from its own /64.
func appendIPKey(b []byte, a netip.Addr, bits int) []byte {
	a = a.Unmap().WithZone("")
	if !a.Is6() {
		return a.AppendTo(b)
	}
	if bits <= 0 || bits > 128 {
		bits = DefaultIPv6Prefix
	}
	if bits == 128 {
		return a.AppendTo(b)
	}
	p, _ := a.Prefix(bits)
	return p.AppendTo(b)
}

// ipKey is appendIPKey of the address in s, a bare or bracketed IP with
// or without a port; ok is false when s holds none.
func ipKey(prefix, s string, bits int) (key string, ok bool) {
	a, ok := parseHop(s)
	if !ok {
		return "", false
	}
	var buf [64]byte
	return string(appendIPKey(append(buf[:0], prefix...), a, bits)), true
}

// IPKey is what identifies the client at addr (a bare or bracketed IP,
// with or without a port) when clients are keyed by address: an IPv4
// address as itself, an IPv6 address as its first ipv6Prefix bits
// (DefaultIPv6Prefix when not 1 to 128), as ClientIP.Key keys it without
// its "ip:" prefix. ok is false when addr holds no IP. Anything else keyed
// by client address (an admin-token throttle) should key it so, or a
// client could mint keys from its own /64.
func IPKey(addr string, ipv6Prefix int) (key string, ok bool) {
	return ipKey("", addr, ipv6Prefix)
}

// APIKey returns a KeyFunc that identifies clients by the API key in
// header (the tutorial's "X-API-KEY"): "apikey:" and the key; requests without
// one fall back to fallback (usually ClientIP.Key).
func APIKey(header string, fallback KeyFunc) KeyFunc {
	header = http.CanonicalHeaderKey(header)
	return func(r *http.Request) (string, context.Context, error) {
		if v := r.Header[header]; len(v) > 0 && v[0] != "" {
			return keyPart(PrefixAPIKey, v[0]), nil, nil
		}
		if fallback == nil {
			return "", nil, &KeyError{Status: http.StatusUnauthorized, Message: "missing " + header + " header"}
		}
		return fallback(r)
	}
}

// JWTKey returns a KeyFunc that identifies clients by the subject of the
// bearer token v verifies: "user:" and the subject. It attaches the
// claims to the request's context (jwtauth.Claims reads them), for
// Route.Tier and the handlers. A request without a token goes to missing,
// or is answered 401 when missing is nil; a bad, expired or unsigned token
// is always a KeyError with status 401, never another identity.
func JWTKey(v *jwtauth.Verifier, missing KeyFunc) KeyFunc {
	return func(r *http.Request) (string, context.Context, error) {
		claims, err := v.Request(r)
		switch {
		case errors.Is(err, jwtauth.ErrNoToken):
			if missing != nil {
				return missing(r)
			}
			return "", nil, &KeyError{Status: http.StatusUnauthorized, Message: "missing bearer token"}
		case err != nil:
			return "", nil, &KeyError{Status: http.StatusUnauthorized, Message: "invalid token", Err: err}
		}
		sub, _ := claims.GetSubject() // Request verified it is a non-empty string
		return keyPart(PrefixUser, sub), jwtauth.WithClaims(r.Context(), claims), nil
	}
}
