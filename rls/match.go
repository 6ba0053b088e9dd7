package rls

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"

	"github.com/ratemesh/ratemesh/internal/textcut"
)

// lookup finds the limit of a descriptor as the reference does: at each
// depth the entry's key and value, else a wildcard value of that key (in
// config order), else the key alone; the limit applies only when it is
// configured at the descriptor's last entry. nodes receives the matched
// descriptor of each entry (nil past the last match); it must have room
// for every entry.
func (c *Config) lookup(domainName string, entries []*rlv3.RateLimitDescriptor_Entry, nodes []*descNode) *Rule {
	d := c.domains[domainName]
	if d == nil {
		return nil
	}
	lv := &d.root
	var rule *Rule
	for i, e := range entries {
		n := lv.find(e.GetKey(), e.GetValue())
		if n == nil {
			break
		}
		nodes[i] = n
		if n.rule != nil && i == len(entries)-1 {
			rule = n.rule
		}
		if len(n.children.exact) == 0 {
			break
		}
		lv = &n.children
	}
	return rule
}

// find matches one entry at this level.
func (lv *level) find(key, value string) *descNode {
	if n := lv.exact[entryID{key, value}]; n != nil {
		return n
	}
	for _, w := range lv.wild {
		if w.id.key == key && wildcardMatch(w.parts, value) {
			return w
		}
	}
	return lv.exact[entryID{key: key}]
}

// wildcardMatch reports whether value matches a pattern split on '*':
// each '*' stands for any run of bytes, possibly empty.
func wildcardMatch(parts []string, value string) bool {
	first, last := parts[0], parts[len(parts)-1]
	if len(value) < len(first)+len(last) || !strings.HasPrefix(value, first) || !strings.HasSuffix(value, last) {
		return false
	}
	rest := value[len(first) : len(value)-len(last)]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(rest, p)
		if i < 0 {
			return false
		}
		rest = rest[i+len(p):]
	}
	return true
}

// maxRoutingKey bounds a routing key as kept in a node's store: longer
// keys (a long path value) are cut and made unique with their hash.
const maxRoutingKey = 512

// routingKey is the ratemesh key of a descriptor's counter: the domain
// and every entry, each length-prefixed so that no two descriptors share
// a key. An entry matched by a share_threshold wildcard contributes the
// pattern instead of its value, so every matching value shares the
// counter.
func routingKey(buf []byte, domainName string, entries []*rlv3.RateLimitDescriptor_Entry, nodes []*descNode) string {
	b := append(buf[:0], "rls:"...)
	b = appendField(b, domainName)
	for i, e := range entries {
		v := e.GetValue()
		if n := nodes[i]; n != nil && n.shareThreshold && n.parts != nil {
			v = n.id.value
		}
		b = append(b, '|')
		b = appendField(b, e.GetKey())
		b = append(b, '=')
		b = appendField(b, v)
	}
	if len(b) <= maxRoutingKey {
		return string(b)
	}
	sum := sha256.Sum256(b)
	return textcut.Prefix(string(b), 128) + "#" + hex.EncodeToString(sum[:])
}

func appendField(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

// metricKey names a descriptor in metrics as the reference does: the
// rule's path, or, with detailed_metric, the request's own entries, or,
// with value_to_metric on a matched descriptor, the path with the
// request's values in place of that descriptor's.
func metricKey(r *Rule, domainName string, entries []*rlv3.RateLimitDescriptor_Entry, nodes []*descNode) string {
	perValue := false
	for _, n := range nodes[:len(entries)] {
		perValue = perValue || (n != nil && n.valueToMetric)
	}
	if !r.DetailedMetric && !perValue {
		return r.Path
	}
	n := len(domainName)
	for i, e := range entries {
		n += 2 + len(e.GetKey()) + len(metricValue(r.DetailedMetric, e.GetValue(), nodes[i]))
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(domainName)
	for i, e := range entries {
		b.WriteByte('.')
		b.WriteString(e.GetKey())
		v := metricValue(r.DetailedMetric, e.GetValue(), nodes[i])
		if v != "" {
			b.WriteByte('_')
			b.WriteString(v)
		}
	}
	return b.String()
}

// metricValue is what an entry contributes to a metric name after its
// key.
func metricValue(detailed bool, value string, n *descNode) string {
	switch {
	case n != nil && n.parts != nil && n.shareThreshold:
		return n.id.value // every matching value is one counter, one series
	case detailed:
		return value
	case n == nil:
		return ""
	case n.parts != nil && !n.valueToMetric:
		return n.id.value
	case n.id.value == "" && !n.valueToMetric:
		return ""
	}
	return value
}

// Match is the rule a descriptor of domainName with entries gets, as in a
// request; nil: none matches, and the descriptor is not limited. Tests and
// tools use it to check that a gateway's actions meet the config's rules.
func (c *Config) Match(domainName string, entries []*rlv3.RateLimitDescriptor_Entry) *Rule {
	return c.lookup(domainName, entries, make([]*descNode, len(entries)))
}
