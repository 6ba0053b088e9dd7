package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/ratehttp"
)

// Headers switches the header families the middleware writes. The zero
// value writes all of them.
type Headers struct {
	// NoLegacy drops X-RateLimit-Limit, X-RateLimit-Remaining and
	// X-RateLimit-Reset (epoch seconds).
	NoLegacy bool
	// NoRetryAfter drops Retry-After (seconds) on 429 responses.
	NoRetryAfter bool
	// NoDraft drops the IETF fields of draft-ietf-httpapi-ratelimit-headers-11:
	// RateLimit-Policy and RateLimit.
	NoDraft bool
}

// ParseHeaders reads a comma-separated list of the families to write:
// "legacy", "retry-after", "draft"; "all" is every one, "none" (or "")
// none.
func ParseHeaders(s string) (Headers, error) {
	h := Headers{NoLegacy: true, NoRetryAfter: true, NoDraft: true}
	for _, f := range strings.Split(s, ",") {
		switch strings.TrimSpace(f) {
		case "", "none":
		case "all":
			h = Headers{}
		case "legacy":
			h.NoLegacy = false
		case "retry-after":
			h.NoRetryAfter = false
		case "draft":
			h.NoDraft = false
		default:
			return Headers{}, fmt.Errorf("header family %q: want legacy, retry-after, draft, all or none", f)
		}
	}
	return h, nil
}

// Canonical header names, so that the map writes need no canonicalization.
const (
	hdrLimit      = "X-Ratelimit-Limit"
	hdrRemaining  = "X-Ratelimit-Remaining"
	hdrReset      = "X-Ratelimit-Reset"
	hdrRetryAfter = "Retry-After"
	hdrPolicy     = "Ratelimit-Policy"
	hdrRateLimit  = "Ratelimit"
)

// meta is what the headers say about one counter, precomputed when the
// policy is built.
type meta struct {
	name   string // the quoted draft item name, e.g. `"route"`
	amount string // X-RateLimit-Limit
	policy string // RateLimit-Policy
	// limit and denyBody are for DefaultDenyHandler: its JSON body up to
	// the retry_after value, for this limit.
	limit    bucket.Limit
	denyBody string
}

// newMeta prepares the headers of limit l in a group of kind. Draft item
// names are the kind ("app", "default", "route" or the shared scope), with
// the window in seconds appended when the group holds several limits, so
// that "10 per minute; 200 per day" reads "route-60" and "route-86400".
func newMeta(kind string, l bucket.Limit, several bool) meta {
	w := ratehttp.CeilSeconds(l.Period)
	if several {
		kind += "-" + strconv.FormatInt(w, 10)
	}
	name := quoteSF(kind)
	return meta{
		name:     name,
		amount:   strconv.FormatInt(l.Amount, 10),
		policy:   name + ";q=" + strconv.FormatInt(l.Amount, 10) + ";w=" + strconv.FormatInt(w, 10),
		limit:    l,
		denyBody: denyBodyPrefix(l),
	}
}

// quoteSF renders s as a structured-field string (RFC 8941): quoted, with
// backslash and quote escaped and anything outside printable ASCII
// replaced, since sf-strings cannot carry it.
func quoteSF(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '"' || ch == '\\':
			b.WriteByte('\\')
			b.WriteByte(ch)
		case ch < 0x20 || ch > 0x7e:
			b.WriteByte('_')
		default:
			b.WriteByte(ch)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// write sets the headers of status s (described by m) on h. The numbers
// are formatted with strconv into one buffer that becomes one string, and
// every header value is a substring of it or a precomputed one: two
// allocations in all (the text and the header values' backing array), no
// fmt. The remaining count is formatted once: X-RateLimit-Remaining is the
// digits after "r=" in RateLimit. now is read only for RateLimit.
func (hs Headers) write(h http.Header, m *meta, s *bucket.Status, allowed bool, now func() time.Time) {
	remaining := max(s.Remaining, 0)
	var buf [128]byte
	b := buf[:0]
	// b holds, in order: reset, retry-after, then the RateLimit value
	// (name;r=<remaining>;t=<seconds>) or, without it, the bare remaining.
	var resetEnd, retryEnd, remStart, remEnd int
	if !hs.NoLegacy {
		b = strconv.AppendInt(b, ratehttp.EpochCeil(s.Reset), 10)
	}
	resetEnd = len(b)
	if !allowed && !hs.NoRetryAfter {
		b = strconv.AppendInt(b, ratehttp.CeilSeconds(ratehttp.RetryAfter(s)), 10)
	}
	retryEnd = len(b)
	if !hs.NoDraft {
		b = append(b, m.name...)
		b = append(b, ";r="...)
		remStart = len(b)
		b = strconv.AppendInt(b, remaining, 10)
		remEnd = len(b)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, ratehttp.CeilSeconds(s.Reset.Sub(now())), 10)
	} else if !hs.NoLegacy {
		remStart = len(b)
		b = strconv.AppendInt(b, remaining, 10)
		remEnd = len(b)
	}
	all := string(b)
	n := 0
	if !hs.NoLegacy {
		n += 3
	}
	if retryEnd > resetEnd {
		n++
	}
	if !hs.NoDraft {
		n += 2
	}
	vals := make([]string, 0, n)
	add := func(key, v string) {
		vals = append(vals, v)
		h[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if !hs.NoLegacy {
		add(hdrLimit, m.amount)
		add(hdrRemaining, all[remStart:remEnd])
		add(hdrReset, all[:resetEnd])
	}
	if retryEnd > resetEnd {
		add(hdrRetryAfter, all[resetEnd:retryEnd])
	}
	if !hs.NoDraft {
		add(hdrPolicy, m.policy)
		add(hdrRateLimit, all[retryEnd:])
	}
}
