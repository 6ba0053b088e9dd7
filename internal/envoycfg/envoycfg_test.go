package envoycfg

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ratemesh/ratemesh/rls"
)

// example is the directory of the shipped Envoy example.
var example = filepath.Join("..", "..", "examples", "envoy")

// TestExampleDescriptorsMeetRules: every descriptor envoy.yaml's actions
// send for the documented requests gets the rule of ratelimit/edge.yaml
// the docs name (every user limited, whatever the plan), in the filter's
// domain; the filter sends the token as metadata and fails closed.
func TestExampleDescriptorsMeetRules(t *testing.T) {
	bs := loadExample(t)
	cfg, err := rls.LoadPath(filepath.Join(example, "ratelimit"))
	if err != nil {
		t.Fatal(err)
	}
	if bs.Domain != "edge" || !slices.Equal(cfg.Domains(), []string{bs.Domain}) {
		t.Fatalf("domain: envoy.yaml %q, ratelimit %v", bs.Domain, cfg.Domains())
	}
	if got := bs.Metadata["authorization"]; got != "Bearer ${RATEMESH_API_TOKEN}" || len(bs.Metadata) != 1 {
		t.Errorf("initial_metadata %v, want only authorization: Bearer ${RATEMESH_API_TOKEN}", bs.Metadata)
	}
	if !bs.FailureModeDeny {
		t.Error("failure_mode_deny: false; the example fails closed")
	}
	for _, tc := range []struct {
		req  Request
		want []string // each descriptor's rule, "" none
	}{
		{Request{RemoteAddress: "10.0.0.1", Headers: map[string]string{"x-user-id": "bob", "x-plan": "silver", ":path": "/products"}},
			[]string{"edge.remote_address MINUTE/100", "edge.user.plan MINUTE/5", ""}},
		{Request{RemoteAddress: "10.0.0.2", Headers: map[string]string{"x-user-id": "alice", "x-plan": "gold", ":path": "/search?q=x"}},
			[]string{"edge.remote_address MINUTE/100", "edge.user.plan_gold MINUTE/10", "edge.path_/search* SECOND/200 shadow"}},
		{Request{RemoteAddress: "10.0.0.3", Headers: map[string]string{"x-user-id": "carol", ":path": "/"}},
			[]string{"edge.remote_address MINUTE/100", ""}},
	} {
		var got []string
		for _, d := range bs.Descriptors(tc.req) {
			got = append(got, describe(cfg.Match(bs.Domain, d.GetEntries())))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%+v: rules %q, want %q", tc.req, got, tc.want)
		}
	}
}

// loadExample loads the example's envoy.yaml.
func loadExample(t *testing.T) *Bootstrap {
	t.Helper()
	bs, err := Load(filepath.Join(example, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

// describe names a rule and its limit; "" for nil.
func describe(r *rls.Rule) string {
	if r == nil {
		return ""
	}
	s := r.Path + " " + r.Unit.String() + "/" + strconv.FormatUint(uint64(r.RequestsPerUnit), 10)
	if r.ShadowMode {
		s += " shadow"
	}
	return s
}

// TestExampleComposeServesEndpoints: the service's endpoints in
// envoy.yaml are compose.yaml's nodes, on the gRPC port they serve, with
// the ratelimit directory mounted where --rls-config points, the demo off
// and the token Envoy sends.
func TestExampleComposeServesEndpoints(t *testing.T) {
	bs := loadExample(t)
	b, err := os.ReadFile(filepath.Join(example, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	var want []string
	for name, svc := range c.Services {
		env := svc.Environment
		if env["RATEMESH_RLS_CONFIG"] == "" {
			continue
		}
		want = append(want, name+":"+env["RATEMESH_GRPC_PORT"])
		if env["RATEMESH_DEMO"] != "false" || !strings.HasPrefix(env["RATEMESH_API_TOKEN"], "${RATEMESH_API_TOKEN") ||
			!slices.Contains(svc.Volumes, "./ratelimit:"+env["RATEMESH_RLS_CONFIG"]+":ro") || env["RATEMESH_NAME"] != name {
			t.Errorf("compose.yaml: service %s: environment %v, volumes %v", name, env, svc.Volumes)
		}
	}
	slices.Sort(want)
	if !slices.Equal(bs.Endpoints, want) {
		t.Errorf("envoy.yaml's cluster %s: endpoints %v, compose.yaml's nodes serve %v", bs.Cluster, bs.Endpoints, want)
	}
	if env := c.Services["envoy"].Environment; env["RATEMESH_API_TOKEN"] != "${RATEMESH_API_TOKEN}" {
		t.Errorf("compose.yaml: envoy gets RATEMESH_API_TOKEN %q", env["RATEMESH_API_TOKEN"])
	}
}

// TestParseErrors: a bootstrap without what Envoy needs to call the
// service is refused with what is missing.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"static_resources: {}", "no envoy.filters.http.ratelimit filter with a domain"},
		{"static_resources: [", "yaml"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q): %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// TestExpandMetadata: ${VAR} comes from the lookup; an unset one is named.
func TestExpandMetadata(t *testing.T) {
	bs := &Bootstrap{Metadata: map[string]string{"authorization": "Bearer ${TOKEN}"}}
	md, err := bs.ExpandMetadata(func(k string) (string, bool) { return map[string]string{"TOKEN": "t0"}[k], k == "TOKEN" })
	if err != nil || md["authorization"] != "Bearer t0" {
		t.Errorf("ExpandMetadata: %v, %v", md, err)
	}
	_, err = bs.ExpandMetadata(func(string) (string, bool) { return "", false })
	if err == nil || err.Error() != "initial_metadata needs [TOKEN] set" {
		t.Errorf("ExpandMetadata without TOKEN: %v", err)
	}
}

// TestDocShowsExample: docs/envoy.md shows envoy.yaml from
// static_resources on and ratelimit/edge.yaml from its domain on, as the
// files are.
func TestDocShowsExample(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(example, "..", "..", "docs", "envoy.md"))
	if err != nil {
		t.Fatal(err)
	}
	for file, from := range map[string]string{"envoy.yaml": "static_resources:", "ratelimit/edge.yaml": "domain:"} {
		b, err := os.ReadFile(filepath.Join(example, file))
		if err != nil {
			t.Fatal(err)
		}
		_, body, ok := strings.Cut(string(b), from)
		if !ok || !strings.Contains(string(doc), "```yaml\n"+from+body+"```\n") {
			t.Errorf("docs/envoy.md does not show %s from %q on as it is", file, from)
		}
	}
}
