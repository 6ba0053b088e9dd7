package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/suggest"
	"github.com/ratemesh/ratemesh/internal/yamlsyntax"
	"go.yaml.in/yaml/v3"
)

// A policy file (LoadPolicy, ParsePolicy) is YAML that overrides a base
// policy, such as the built-in one of an application. Every key is
// optional. A route is matched by path and method (without a method: every
// entry of the path); only the keys given change it, and routes not yet in
// the policy are added:
//
//	default: "100 per hour"          # routes without limits of their own
//	application: "1000 per minute"   # on top of everything, whole application
//	strategy: fixed-window           # fixed-window, sliding-window-counter, moving-window, token-bucket
//	shared:
//	  - scope: products
//	    limits: "20 per minute"
//	routes:
//	  - method: GET
//	    path: /products
//	    limits: "5 per minute"
//	    strategy: moving-window
//	  - method: GET
//	    path: /rb-products
//	    tiers: {admin: "200 per minute"}   # tier name -> limits; "" unlimited
//	  - path: /health
//	    exempt: true
//	  - method: POST
//	    path: /login
//	    limits: "5 per minute"
//	    count_when: [401]      # count only failed logins (after the handler)
//	    shadow: true           # dry run: allow, count would-be denials
//
// A route may also set shared: [scope, ...], cost: N and count_in_flight: N;
// shadow: true at the top makes every limit a dry run.

// PolicyError is an error in a policy document: what is wrong, and where.
type PolicyError struct {
	File string // the document's name, as given to ParsePolicy
	Line int    // 1-based; 0 when the document's syntax hides the line
	Msg  string
}

// Error is "file:line: msg", or "file: msg" without a line.
func (e *PolicyError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

// policyLoader merges one policy file into a policy, naming the file and
// line of every error.
type policyLoader struct {
	file string
	p    Policy
	seen map[string]int // "METHOD path" of each route of the file -> its line
}

// LoadPolicy reads the YAML policy file file and merges it into base, as
// ParsePolicy does. An error reading the file is the *fs.PathError of
// os.ReadFile; an error in its content is a *PolicyError.
func LoadPolicy(file string, base Policy) (Policy, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return base, err
	}
	return ParsePolicy(file, data, base)
}

// ParsePolicy merges the YAML policy document data into base and returns
// the result; base itself is not changed. Top-level keys replace base's;
// a shared scope or route (matched by path and method; without a method,
// every entry of the path) changes only the keys the document gives, and
// those not in base yet are added. Every limit string, strategy and route
// is validated as New would, and an error is a *PolicyError naming name
// (the file) and the line. An empty document changes nothing.
//
// A route's Go functions (Tier, Dynamic, Key, ...) are not data: attach
// them to the result before New or SetPolicy. Tiers given without a Tier
// function are validated as if one will be attached.
func ParsePolicy(name string, data []byte, base Policy) (Policy, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		if line := yamlsyntax.Line(data); line > 0 {
			return base, &PolicyError{File: name, Line: line, Msg: "yaml: " + yamlsyntax.Message(err)}
		}
		return base, &PolicyError{File: name, Msg: err.Error()}
	}
	l := &policyLoader{file: name, p: base, seen: map[string]int{}}
	l.p.Shared = append([]Shared(nil), base.Shared...)
	l.p.Routes = append([]Route(nil), base.Routes...)
	if len(doc.Content) == 0 {
		return l.p, nil // empty document: nothing overridden
	}
	if err := l.top(doc.Content[0]); err != nil {
		return base, err
	}
	return l.p, nil
}

// errorf is an error at a node of the file.
func (l *policyLoader) errorf(n *yaml.Node, format string, args ...any) error {
	return &PolicyError{File: l.file, Line: n.Line, Msg: fmt.Sprintf(format, args...)}
}

// fields walks the keys of mapping n.
func (l *policyLoader) fields(n *yaml.Node, what string, f func(k, v *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return l.errorf(n, "%s: want a mapping", what)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if err := f(n.Content[i], n.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// str reads a scalar string ("" for null).
func (l *policyLoader) str(k, v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode {
		return "", l.errorf(v, "%s: want a string", k.Value)
	}
	if v.Tag == "!!null" {
		return "", nil
	}
	return v.Value, nil
}

// limits reads a limit string and checks its grammar.
func (l *policyLoader) limits(k, v *yaml.Node) (string, error) {
	s, err := l.str(k, v)
	if err != nil || strings.TrimSpace(s) == "" {
		return s, err
	}
	if _, err := bucket.Parse(s); err != nil {
		return "", l.errorf(v, "%s %q: %v", k.Value, s, err)
	}
	return s, nil
}

// strategy reads a strategy name and checks it.
func (l *policyLoader) strategy(k, v *yaml.Node) (string, error) {
	s, err := l.str(k, v)
	if err != nil {
		return "", err
	}
	if _, err := bucket.ParseStrategy(s); err != nil {
		return "", l.errorf(v, "%s %q: %v", k.Value, s, err)
	}
	return s, nil
}

// top reads the document's mapping.
func (l *policyLoader) top(n *yaml.Node) error {
	return l.fields(n, "policy", func(k, v *yaml.Node) (err error) {
		switch k.Value {
		case "default":
			l.p.Default, err = l.limits(k, v)
		case "application":
			l.p.Application, err = l.limits(k, v)
		case "strategy":
			l.p.Strategy, err = l.strategy(k, v)
		case "shared":
			err = l.seq(k, v, l.shared)
		case "routes":
			err = l.seq(k, v, l.route)
		case "shadow":
			err = l.boolean(k, v, &l.p.Shadow)
		default:
			err = l.errorf(k, "unknown key %q (want default, application, strategy, shared, routes or shadow)", k.Value)
		}
		if err == nil && k.Value != "routes" && k.Value != "shared" {
			err = l.check(v, Policy{Default: l.p.Default, Application: l.p.Application, Strategy: l.p.Strategy})
		}
		return err
	})
}

// seq walks the items of sequence v.
func (l *policyLoader) seq(k, v *yaml.Node, item func(*yaml.Node) error) error {
	if v.Kind != yaml.SequenceNode {
		return l.errorf(v, "%s: want a list", k.Value)
	}
	for _, it := range v.Content {
		if err := item(it); err != nil {
			return err
		}
	}
	return nil
}

// shared merges one shared scope.
func (l *policyLoader) shared(n *yaml.Node) error {
	var s Shared
	set := map[string]bool{}
	err := l.fields(n, "shared item", func(k, v *yaml.Node) (err error) {
		set[k.Value] = true
		switch k.Value {
		case "scope":
			s.Scope, err = l.str(k, v)
		case "limits":
			s.Limits, err = l.limits(k, v)
		case "strategy":
			s.Strategy, err = l.strategy(k, v)
		default:
			err = l.errorf(k, "unknown key %q (want scope, limits or strategy)", k.Value)
		}
		return err
	})
	if err != nil {
		return err
	}
	if s.Scope == "" {
		return l.errorf(n, "shared item: scope is missing")
	}
	i := 0
	for i < len(l.p.Shared) && l.p.Shared[i].Scope != s.Scope {
		i++
	}
	if i == len(l.p.Shared) {
		l.p.Shared = append(l.p.Shared, Shared{Scope: s.Scope})
	}
	cur := &l.p.Shared[i]
	if set["limits"] {
		cur.Limits = s.Limits
	}
	if set["strategy"] {
		cur.Strategy = s.Strategy
	}
	return l.check(n, Policy{Strategy: l.p.Strategy, Shared: []Shared{*cur}})
}

// route merges one route.
func (l *policyLoader) route(n *yaml.Node) error {
	var r Route
	set := map[string]bool{}
	err := l.fields(n, "route", func(k, v *yaml.Node) (err error) {
		set[k.Value] = true
		switch k.Value {
		case "method":
			r.Method, err = l.method(k, v)
		case "path":
			r.Path, err = l.str(k, v)
		case "limits":
			r.Limits, err = l.limits(k, v)
		case "strategy":
			r.Strategy, err = l.strategy(k, v)
		case "shared":
			err = v.Decode(&r.Shared)
		case "exempt":
			err = v.Decode(&r.Exempt)
		case "cost":
			if err = v.Decode(&r.Cost); err == nil && r.Cost < 0 {
				err = fmt.Errorf("%d is negative", r.Cost)
			}
		case "tiers":
			err = l.tiers(k, v, &r)
		case "shadow":
			err = l.boolean(k, v, &r.Shadow)
		case "count_when":
			err = v.Decode(&r.CountStatuses)
		case "count_in_flight":
			err = v.Decode(&r.CountInFlight)
		default:
			err = l.errorf(k, "unknown key %q (want method, path, limits, strategy, shared, exempt, cost, tiers, shadow, count_when or count_in_flight)", k.Value)
		}
		var placed *PolicyError
		if err != nil && !errors.As(err, &placed) {
			err = l.errorf(v, "%s %q: %v", k.Value, v.Value, err)
		}
		return err
	})
	if err != nil {
		return err
	}
	if r.Path == "" {
		return l.errorf(n, "route: path is missing")
	}
	if err := l.once(n, r); err != nil {
		return err
	}
	// A route without a method changes every entry of its path (the demo's
	// are per method); with one, the entry of that method.
	var matched []*Route
	for i := range l.p.Routes {
		cur := &l.p.Routes[i]
		if cur.Path == r.Path && (r.Method == "" || strings.EqualFold(cur.Method, r.Method)) {
			matched = append(matched, cur)
		}
	}
	if len(matched) == 0 {
		l.p.Routes = append(l.p.Routes, Route{Method: r.Method, Path: r.Path})
		matched = append(matched, &l.p.Routes[len(l.p.Routes)-1])
	}
	for _, cur := range matched {
		merge(cur, &r, set)
		check := *cur
		if len(check.Tiers) > 0 && check.Tier == nil {
			check.Tier = func(*http.Request) string { return "" } // the application attaches the real one
		}
		if err := l.check(n, Policy{Strategy: l.p.Strategy, Shared: l.p.Shared, Routes: []Route{check}}); err != nil {
			return err
		}
	}
	return nil
}

// once refuses a route (method and path) the file gave before: the later
// entry would silently replace the earlier's keys.
func (l *policyLoader) once(n *yaml.Node, r Route) error {
	key := r.Method + " " + r.Path
	name := strings.TrimSpace(key)
	if r.Method == "" {
		name += " (every method)"
	}
	if line, dup := l.seen[key]; dup {
		return l.errorf(n, "route %s is given twice, at lines %d and %d: merge the two entries", name, line, n.Line)
	}
	l.seen[key] = n.Line
	return nil
}

// method reads an HTTP method (upper-cased) and refuses a word that is
// none, suggesting the nearest.
func (l *policyLoader) method(k, v *yaml.Node) (string, error) {
	s, err := l.str(k, v)
	s = strings.ToUpper(strings.TrimSpace(s))
	methods := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace}
	if err != nil || s == "" || slices.Contains(methods, s) {
		return s, err
	}
	msg := fmt.Sprintf("method %q: not an HTTP method (want %s)", v.Value, strings.Join(methods, ", "))
	if near := suggest.Nearest(s, methods); near != "" {
		msg += fmt.Sprintf("; did you mean %q?", near)
	}
	return "", l.errorf(v, "%s", msg)
}

// merge copies the keys of r the file set into cur.
func merge(cur, r *Route, set map[string]bool) {
	for key := range set {
		switch key {
		case "limits":
			cur.Limits = r.Limits
		case "strategy":
			cur.Strategy = r.Strategy
		case "shared":
			cur.Shared = r.Shared
		case "exempt":
			cur.Exempt = r.Exempt
		case "cost":
			cur.Cost = r.Cost
		case "tiers":
			cur.Tiers = r.Tiers
		case "shadow":
			cur.Shadow = r.Shadow
		case "count_when":
			cur.CountStatuses = r.CountStatuses
		case "count_in_flight":
			cur.CountInFlight = r.CountInFlight
		}
	}
}

// boolean reads true or false.
func (l *policyLoader) boolean(k, v *yaml.Node, dst *bool) error {
	if err := v.Decode(dst); err != nil || v.Kind != yaml.ScalarNode {
		return l.errorf(v, "%s: want true or false", k.Value)
	}
	return nil
}

// tiers reads a tier map, checking every limit string.
func (l *policyLoader) tiers(k, v *yaml.Node, r *Route) error {
	r.Tiers = map[string]string{}
	return l.fields(v, k.Value, func(tk, tv *yaml.Node) error {
		s, err := l.limits(&yaml.Node{Value: k.Value + "." + tk.Value}, tv)
		r.Tiers[tk.Value] = s
		return err
	})
}

// check validates p (the part of the policy node n set) as the middleware
// will, so that errors such as a strategy that cannot take a limit carry
// the line too.
func (l *policyLoader) check(n *yaml.Node, p Policy) error {
	if err := p.Validate(); err != nil {
		return l.errorf(n, "%s", strings.TrimPrefix(err.Error(), "policy: "))
	}
	return nil
}
