package rls

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ratemesh/ratemesh/internal/textcut"
	"github.com/ratemesh/ratemesh/internal/yamlsyntax"
)

// ConfigError is a configuration the loader refuses: the file, the line
// and the descriptor path at fault, and what is wrong.
type ConfigError struct {
	File string // the file, as given to the loader
	Line int    // 1-based; 0 when the error is about the whole file
	Path string // the descriptor's full key ("domain.key_value"), or "" above the descriptors
	Msg  string
}

// Error reads "file:line: path: message", leaving out what is unknown.
func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// nodeBudget bounds the nodes a file of size bytes may expand to, aliases
// included: a file without aliases has far fewer nodes than bytes, so
// only nested aliases reach it, and the loader's work stays linear in the
// file's size.
func nodeBudget(size int) int { return 1024 + 4*size }

// fileParser reads one YAML file into a domain.
type fileParser struct {
	file   string
	budget int // nodes left to visit
	limit  int // the budget at the start
}

func (p *fileParser) fail(n *yaml.Node, path, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &ConfigError{File: p.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// parseFile reads one file: one YAML document holding a domain.
func parseFile(name string, data []byte) (*domain, error) {
	p := &fileParser{file: name, budget: nodeBudget(len(data)), limit: nodeBudget(len(data))}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		return nil, p.fail(nil, "", "config file cannot have empty domain (the file is empty)")
	}
	if err != nil {
		return nil, p.syntaxError(data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, p.fail(&extra, "", "more than one YAML document in the file; put each domain in a file of its own")
	}
	root, err := p.deref(doc.Content[0], "")
	if err != nil {
		return nil, err
	}
	if root.Kind != yaml.MappingNode {
		return nil, p.fail(root, "", "the file must be a mapping with domain and descriptors, found %s", kindName(root))
	}
	return p.domain(root)
}

// syntaxError is the error of a file that is not YAML, at the first line
// where it stops being YAML (the parser's own line is often the one before
// the collection it was reading).
func (p *fileParser) syntaxError(data []byte, err error) error {
	line := yamlsyntax.Line(data)
	if line == 0 {
		return p.fail(nil, "", "error loading config file: %v", err)
	}
	return &ConfigError{File: p.file, Line: line, Msg: "error loading config file: yaml: " + yamlsyntax.Message(err)}
}

// domain reads the top-level mapping.
func (p *fileParser) domain(root *yaml.Node) (*domain, error) {
	d := &domain{file: p.file, root: level{exact: map[entryID]*descNode{}}}
	var descs *yaml.Node
	err := p.fields(root, "", sectionTop, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "domain":
			d.name, err = p.str(v, "", key)
		case "descriptors":
			descs = v
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if d.name == "" {
		return nil, p.fail(root, "", "config file cannot have empty domain")
	}
	return d, p.descriptors(descs, d.name, &d.root)
}

// The sections of the format, each with its own keys.
const (
	sectionTop = iota
	sectionDescriptor
	sectionRateLimit
	sectionReplaces
)

// knownField reports whether key belongs in section. The reference checks
// every key against one flat list; each section's own list also catches a
// key put at the wrong depth.
func knownField(section int, key string) bool {
	switch section {
	case sectionTop:
		return key == "domain" || key == "descriptors"
	case sectionDescriptor:
		switch key {
		case "key", "value", "rate_limit", "descriptors", "shadow_mode", "quota_mode",
			"detailed_metric", "value_to_metric", "share_threshold", "metadata":
			return true
		}
	case sectionRateLimit:
		switch key {
		case "requests_per_unit", "unit", "unlimited", "name", "replaces":
			return true
		}
	case sectionReplaces:
		return key == "name"
	}
	return false
}

// sectionKeys lists a section's keys for error messages.
func sectionKeys(section int) string {
	switch section {
	case sectionTop:
		return "domain, descriptors"
	case sectionDescriptor:
		return "key, value, rate_limit, descriptors, shadow_mode, quota_mode, detailed_metric, value_to_metric, share_threshold, metadata"
	case sectionRateLimit:
		return "requests_per_unit, unit, unlimited, name, replaces"
	}
	return "name"
}

// deref follows an alias and counts the node against the budget.
func (p *fileParser) deref(n *yaml.Node, path string) (*yaml.Node, error) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	p.budget--
	if p.budget < 0 {
		return nil, p.fail(n, path, "aliases expand the file to more than %d YAML nodes (4 per byte of the file)", p.limit)
	}
	return n, nil
}

// fields calls f for each key of mapping n, in file order, after checking
// that the key is a string known in section.
func (p *fileParser) fields(n *yaml.Node, path string, section int, f func(key string, k, v *yaml.Node) error) error {
	seen := make(map[string]int, len(n.Content)/2) // key -> line
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
			return p.fail(k, path, "config error, key is not of type string: %s", shown(k))
		}
		if line, dup := seen[k.Value]; dup {
			return p.fail(k, path, "config error, key '%s' appears twice (first at line %d)", k.Value, line)
		}
		seen[k.Value] = k.Line
		if !knownField(section, k.Value) {
			return p.fail(k, path, "config error, unknown key '%s' (expected one of: %s)", k.Value, sectionKeys(section))
		}
		v, err := p.deref(n.Content[i+1], path)
		if err != nil {
			return err
		}
		if err := f(k.Value, k, v); err != nil {
			return err
		}
	}
	return nil
}

// str reads a scalar as a string: numbers and booleans as written, null
// as "".
func (p *fileParser) str(v *yaml.Node, path, field string) (string, error) {
	if v.Kind != yaml.ScalarNode {
		return "", p.fail(v, path, "%s must be a string, found %s", field, kindName(v))
	}
	if v.Tag == "!!null" {
		return "", nil
	}
	return v.Value, nil
}

// boolean reads true or false; null is false.
func (p *fileParser) boolean(v *yaml.Node, path, field string) (bool, error) {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return false, nil
	}
	var b bool
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || v.Decode(&b) != nil {
		return false, p.fail(v, path, "%s must be true or false, found %s", field, shown(v))
	}
	return b, nil
}

// uint32 reads a whole number from 0 to 2^32-1; null is 0.
func (p *fileParser) uint32(v *yaml.Node, path, field string) (uint32, error) {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return 0, nil
	}
	var n int64
	if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || v.Decode(&n) != nil || n < 0 || n > math.MaxUint32 {
		return 0, p.fail(v, path, "%s must be a whole number from 0 to %d, found %s", field, uint32(math.MaxUint32), shown(v))
	}
	return uint32(n), nil
}

// list returns the items of a sequence, each a mapping; null is empty.
func (p *fileParser) list(v *yaml.Node, path, field string) ([]*yaml.Node, error) {
	if v == nil || (v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
		return nil, nil
	}
	if v.Kind != yaml.SequenceNode {
		return nil, p.fail(v, path, "%s must be a list, found %s", field, kindName(v))
	}
	out := make([]*yaml.Node, len(v.Content))
	for i, item := range v.Content {
		item, err := p.deref(item, path)
		if err != nil {
			return nil, err
		}
		if item.Kind != yaml.MappingNode {
			return nil, p.fail(item, path, "config error, %s[%d] must be a mapping, found %s", field, i, shown(item))
		}
		out[i] = item
	}
	return out, nil
}

// kindName names what a node is, for errors.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return "a scalar"
	}
	return "an alias"
}

// shown quotes a scalar node's text (at most 64 bytes), or names its kind.
func shown(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return kindName(n)
	}
	s := n.Value
	if len(s) > 64 {
		s = textcut.Prefix(s, 64) + "…"
	}
	return fmt.Sprintf("%q", s)
}
