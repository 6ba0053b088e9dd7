package rls

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/textcut"
)

// Config is a loaded rate limit configuration: the domains of one or more
// YAML files in envoyproxy/ratelimit's format. It is immutable once
// loaded, so a Service swaps whole configs on reload and a request in
// flight keeps the one it started with.
type Config struct {
	domains map[string]*domain
	files   []string // the files it was read from, in load order
	digest  [sha256.Size]byte
}

// domain is one file's tree of descriptors.
type domain struct {
	name string
	file string
	root level
}

// level is the descriptors at one depth below a parent.
type level struct {
	exact map[entryID]*descNode // key+value, or key alone (value "")
	wild  []*descNode           // values with a '*', in config order
}

// entryID names a descriptor inside its level: the reference's
// "key_value" composite, kept apart so that key "a_b" with value "c" and
// key "a" with value "b_c" are different descriptors.
type entryID struct{ key, value string }

// descNode is one configured descriptor.
type descNode struct {
	id       entryID
	path     string   // "domain.key_value.key", the reference's full key
	parts    []string // the value split on '*', for wildcard values
	rule     *Rule    // nil: no limit at this depth
	children level
	// shareThreshold makes every value matching the wildcard share one
	// counter; valueToMetric puts the request's value into metric names.
	shareThreshold, valueToMetric bool
}

// Rule is one configured limit: a descriptor's rate_limit and the flags
// that go with it.
type Rule struct {
	// Path is the descriptor's full key as the reference names it,
	// "domain.key_value.key": the metric name and, prefixed, the
	// counter's scope.
	Path            string
	Unit            pb.RateLimitResponse_RateLimit_Unit // UNKNOWN when Unlimited
	RequestsPerUnit uint32
	Unlimited       bool
	Name            string   // rate_limit.name, what others' replaces refer to
	Replaces        []string // names of the limits this one removes from a request
	ShadowMode      bool     // over the limit still answers OK
	QuotaMode       bool     // over the limit fails the request only if every quota descriptor is over
	DetailedMetric  bool     // metrics per request value rather than per descriptor
	File            string   // where it is configured
	Line            int
	counters        []bucket.Counter // the one counter, built once at load; read only
	override        bool             // the request's own limit, not the config's
}

// unitPeriod is the length of unit, as the reference counts it: a month
// is 30 days and a year 365.
func unitPeriod(u pb.RateLimitResponse_RateLimit_Unit) (time.Duration, bool) {
	const day = 24 * time.Hour
	switch u {
	case pb.RateLimitResponse_RateLimit_SECOND:
		return time.Second, true
	case pb.RateLimitResponse_RateLimit_MINUTE:
		return time.Minute, true
	case pb.RateLimitResponse_RateLimit_HOUR:
		return time.Hour, true
	case pb.RateLimitResponse_RateLimit_DAY:
		return day, true
	case pb.RateLimitResponse_RateLimit_WEEK:
		return 7 * day, true
	case pb.RateLimitResponse_RateLimit_MONTH:
		return 30 * day, true
	case pb.RateLimitResponse_RateLimit_YEAR:
		return 365 * day, true
	}
	return 0, false
}

// parseUnit reads a config's unit, case-insensitively as the reference
// does.
func parseUnit(s string) (pb.RateLimitResponse_RateLimit_Unit, bool) {
	v, ok := pb.RateLimitResponse_RateLimit_Unit_value[strings.ToUpper(s)]
	u := pb.RateLimitResponse_RateLimit_Unit(v)
	if !ok || u == pb.RateLimitResponse_RateLimit_UNKNOWN {
		return 0, false
	}
	return u, true
}

// counterScope is the scope of a configured limit's counter: the
// descriptor's path, so that a reload that keeps a descriptor and its
// limit keeps its counter. Paths longer than a scope may be are cut and
// made unique with their hash.
func counterScope(prefix, path string) string {
	s := prefix + path
	if len(s) <= bucket.MaxScopeLen {
		return s
	}
	sum := sha256.Sum256([]byte(path))
	tag := "#" + hex.EncodeToString(sum[:16])
	return textcut.Prefix(s, bucket.MaxScopeLen-len(tag)) + tag
}

// newCounter builds the counter of rpu requests per period.
func newCounter(scope string, rpu uint32, period time.Duration) bucket.Counter {
	return bucket.Counter{Scope: scope, Limit: bucket.Limit{Amount: int64(rpu), Period: period}, Strategy: bucket.FixedWindow}
}

// Domains lists the configured domains, sorted.
func (c *Config) Domains() []string {
	out := make([]string, 0, len(c.domains))
	for d := range c.domains {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// Files lists the files the config was read from.
func (c *Config) Files() []string { return append([]string(nil), c.files...) }

// Rules lists every configured limit, sorted by path.
func (c *Config) Rules() []*Rule {
	var out []*Rule
	for _, d := range c.domains {
		d.root.rules(&out)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func (l *level) rules(out *[]*Rule) {
	for _, n := range l.exact {
		if n.rule != nil {
			*out = append(*out, n.rule)
		}
		n.children.rules(out)
	}
}

// Dump renders the config as the reference's /rlconfig does: one line
// per limit, sorted.
func (c *Config) Dump() string {
	var b strings.Builder
	for _, r := range c.Rules() {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// String is the rule's /rlconfig line.
func (r *Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Path)
	b.WriteString(": ")
	if r.Unlimited {
		b.WriteString("unlimited")
	} else {
		fmt.Fprintf(&b, "unit=%s requests_per_unit=%d", r.Unit, r.RequestsPerUnit)
	}
	fmt.Fprintf(&b, ", shadow_mode: %t, quota_mode: %t", r.ShadowMode, r.QuotaMode)
	if r.Name != "" {
		b.WriteString(", name: " + strconv.Quote(r.Name))
	}
	if len(r.Replaces) > 0 {
		b.WriteString(", replaces: " + strings.Join(r.Replaces, ","))
	}
	return b.String()
}
