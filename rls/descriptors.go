package rls

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ratemesh/ratemesh/bucket"
)

// descFields are a descriptor's YAML fields, gathered before they are
// read because the path (from key and value) names every error.
type descFields struct {
	item                 *yaml.Node
	key, value, rateLine *yaml.Node
	rateLimit, children  *yaml.Node
	flags                []flagField // in file order, so the first bad one is reported
}

// flagField is one of a descriptor's boolean keys.
type flagField struct {
	key  string
	node *yaml.Node
}

// descriptors reads a list of descriptors into lv. parent is the path of
// the level's owner ("domain" at the top).
func (p *fileParser) descriptors(v *yaml.Node, parent string, lv *level) error {
	items, err := p.list(v, parent, "descriptors")
	if err != nil {
		return err
	}
	for i, item := range items {
		n, err := p.descriptor(item, parent, i)
		if err != nil {
			return err
		}
		if _, dup := lv.exact[n.id]; dup {
			return p.fail(item, n.path, "duplicate descriptor composite key '%s'", n.path)
		}
		lv.exact[n.id] = n
		if n.parts != nil {
			lv.wild = append(lv.wild, n)
		}
	}
	return nil
}

// gather checks a descriptor's keys and collects its fields.
func (p *fileParser) gather(item *yaml.Node, where string) (*descFields, error) {
	f := &descFields{item: item}
	err := p.fields(item, where, sectionDescriptor, func(key string, k, v *yaml.Node) error {
		switch key {
		case "key":
			f.key = v
		case "value":
			f.value = v
		case "rate_limit":
			f.rateLimit, f.rateLine = v, k
		case "descriptors":
			f.children = v
		case "metadata":
			// Free-form, as in the reference; ratemesh does not answer
			// with dynamic metadata.
		default:
			f.flags = append(f.flags, flagField{key, v})
		}
		return nil
	})
	return f, err
}

// descriptor reads descriptor number i of the level under parent.
func (p *fileParser) descriptor(item *yaml.Node, parent string, i int) (*descNode, error) {
	where := fmt.Sprintf("%s.descriptors[%d]", parent, i)
	f, err := p.gather(item, where)
	if err != nil {
		return nil, err
	}
	n := &descNode{children: level{exact: map[entryID]*descNode{}}}
	if f.key != nil {
		if n.id.key, err = p.str(f.key, where, "key"); err != nil {
			return nil, err
		}
	}
	if n.id.key == "" {
		return nil, p.fail(item, where, "descriptor has empty key")
	}
	if f.value != nil {
		if n.id.value, err = p.str(f.value, where, "value"); err != nil {
			return nil, err
		}
	}
	n.path = parent + "." + n.id.key
	if n.id.value != "" {
		n.path += "_" + n.id.value
	}
	if strings.Contains(n.id.value, "*") {
		n.parts = strings.Split(n.id.value, "*")
	}
	flags, err := p.flags(f.flags, n.path)
	if err != nil {
		return nil, err
	}
	n.shareThreshold, n.valueToMetric = flags.shareThreshold, flags.valueToMetric
	if n.shareThreshold && n.parts == nil {
		return nil, p.fail(f.item, n.path,
			"share_threshold can only be used with wildcard values (containing '*'), but found key '%s'", n.path)
	}
	if f.rateLimit != nil && !(f.rateLimit.Kind == yaml.ScalarNode && f.rateLimit.Tag == "!!null") {
		if n.rule, err = p.rateLimit(f.rateLimit, f.rateLine, n.path, flags); err != nil {
			return nil, err
		}
	}
	return n, p.descriptors(f.children, n.path, &n.children)
}

// descFlags are a descriptor's booleans.
type descFlags struct {
	shadowMode, quotaMode, detailedMetric, valueToMetric, shareThreshold bool
}

func (p *fileParser) flags(fields []flagField, path string) (descFlags, error) {
	var f descFlags
	for _, ff := range fields {
		b, err := p.boolean(ff.node, path, ff.key)
		if err != nil {
			return f, err
		}
		*f.field(ff.key) = b
	}
	return f, nil
}

// field is the flag named key; gather passes only the five flag keys.
func (f *descFlags) field(key string) *bool {
	switch key {
	case "shadow_mode":
		return &f.shadowMode
	case "quota_mode":
		return &f.quotaMode
	case "detailed_metric":
		return &f.detailedMetric
	case "value_to_metric":
		return &f.valueToMetric
	}
	return &f.shareThreshold
}

// rateLimit reads a descriptor's rate_limit.
func (p *fileParser) rateLimit(v, keyNode *yaml.Node, path string, flags descFlags) (*Rule, error) {
	if v.Kind != yaml.MappingNode {
		return nil, p.fail(v, path, "rate_limit must be a mapping, found %s", kindName(v))
	}
	r := &Rule{Path: path, File: p.file, Line: keyNode.Line, ShadowMode: flags.shadowMode,
		QuotaMode: flags.quotaMode, DetailedMetric: flags.detailedMetric}
	var unit string
	var unitNode *yaml.Node
	err := p.fields(v, path, sectionRateLimit, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "requests_per_unit":
			r.RequestsPerUnit, err = p.uint32(v, path, key)
		case "unit":
			unitNode = k
			unit, err = p.str(v, path, key)
		case "unlimited":
			r.Unlimited, err = p.boolean(v, path, key)
		case "name":
			r.Name, err = p.str(v, path, key)
		case "replaces":
			r.Replaces, err = p.replaces(v, path)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := p.checkUnit(r, unit, unitNode, v); err != nil {
		return nil, err
	}
	for _, name := range r.Replaces {
		if name == "" {
			return nil, p.fail(v, path, "should not have an empty replaces entry")
		}
		if name == r.Name {
			return nil, p.fail(v, path, "replaces should not contain name of same descriptor (%q)", name)
		}
	}
	if !r.Unlimited {
		period, _ := unitPeriod(r.Unit)
		r.counters = []bucket.Counter{newCounter(counterScope("rls:", path), r.RequestsPerUnit, period)}
	}
	return r, nil
}

// checkUnit sets r.Unit from unit: a valid unit unless the limit is
// unlimited, then none at all.
func (p *fileParser) checkUnit(r *Rule, unit string, unitNode, v *yaml.Node) error {
	if r.Unlimited {
		if unit != "" {
			return p.fail(unitNode, r.Path, "should not specify rate limit unit when unlimited (found unit '%s')", unit)
		}
		return nil
	}
	if unit == "" {
		return p.fail(v, r.Path, "rate_limit has no unit; expected second, minute, hour, day, week, month or year (or unlimited: true)")
	}
	u, ok := parseUnit(unit)
	if !ok {
		return p.fail(unitNode, r.Path, "invalid rate limit unit '%s'; expected second, minute, hour, day, week, month or year", unit)
	}
	r.Unit = u
	return nil
}

// replaces reads a rate_limit's replaces: a list of {name: ...}.
func (p *fileParser) replaces(v *yaml.Node, path string) ([]string, error) {
	items, err := p.list(v, path, "replaces")
	if err != nil {
		return nil, err
	}
	out := make([]string, len(items))
	for i, item := range items {
		err := p.fields(item, path, sectionReplaces, func(_ string, _, v *yaml.Node) error {
			var err error
			out[i], err = p.str(v, path, "replaces name")
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
