package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ratemesh/ratemesh/internal/docblocks"
)

// deployDocs are the pages whose code blocks deploy nodes: their YAML
// and their ratemesh-node commands must use the node's real names.
var deployDocs = []string{"docs/envoy.md", "docs/kubernetes.md"}

// flagArg matches a --flag in a command line or a YAML list of arguments.
var flagArg = regexp.MustCompile(`(?:^|[\s"'\[,])--([a-z][a-z0-9-]*)`)

// checkDocs checks the code blocks of deployDocs: every YAML block parses
// (as a whole, indented as the page shows it) and names only variables
// and flags the node has; so does every ratemesh-node command of a shell
// block (lines joined at a trailing backslash), but the subcommands'.
func checkDocs(t *testing.T, c *checker) {
	blocks := 0
	for _, doc := range deployDocs {
		for _, b := range docblocks.Load(t, repoRoot, doc) {
			text := b.Text
			switch b.Lang {
			case "yaml":
				blocks++
				var v any
				if err := yaml.Unmarshal([]byte(text), &v); err != nil {
					t.Errorf("%s: a YAML block does not parse: %v\n%s", doc, err, text)
				}
				c.text(doc, text)
				c.flagsIn(doc, text)
			case "sh":
				for _, line := range strings.Split(strings.ReplaceAll(text, "\\\n", " "), "\n") {
					if cmd, ok := nodeCommand(line); ok {
						blocks++
						c.text(doc, cmd)
						c.flagsIn(doc, cmd)
					}
				}
			}
		}
	}
	if blocks < 8 { // 7 YAML blocks and 1 command today
		t.Errorf("checked %d YAML blocks and ratemesh-node commands in %v; the pages have more", blocks, deployDocs)
	}
}

// nodeCommand is the part of a shell line from "ratemesh-node" on, when it
// runs a node (not a subcommand such as healthcheck or members).
func nodeCommand(line string) (string, bool) {
	_, after, ok := strings.Cut(line, "ratemesh-node ")
	if !ok || !strings.HasPrefix(strings.TrimSpace(after), "--") {
		return "", false
	}
	return after, true
}

// flagsIn checks every --flag of text.
func (c *checker) flagsIn(file, text string) {
	for _, m := range flagArg.FindAllStringSubmatch(text, -1) {
		if !c.flags[m[1]] {
			c.t.Errorf("%s: --%s is not a flag of the node", file, m[1])
		}
	}
}

// envoyEndpoint matches the Kubernetes endpoint of docs/envoy.md's Envoy
// cluster: a Service's DNS name and the port.
var envoyEndpoint = regexp.MustCompile(`address: ([a-z0-9-]+)\.default\.svc\.cluster\.local, port_value: (\d+)`)

// checkEnvoyService checks that docs/envoy.md's Kubernetes endpoint is the
// shipped headless Service: it lists not-ready pods (the nodes join
// through it), selects the StatefulSet's pods by their labels and has the
// gRPC port, which the pods serve.
func checkEnvoyService(t *testing.T, docs []map[string]any) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs/envoy.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := envoyEndpoint.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("docs/envoy.md: no Envoy endpoint on a Service of namespace default")
	}
	k := byKind(docs)
	svc := k["Service/"+m[1]]
	if svc == nil || dig(svc, "spec", "clusterIP") != "None" || dig(svc, "spec", "publishNotReadyAddresses") != true {
		t.Fatalf("docs/envoy.md: Envoy's endpoint %s is not a shipped headless Service listing pods not ready", m[1])
	}
	labels := dig(k["StatefulSet"], "spec", "template", "metadata", "labels")
	if sel := dig(svc, "spec", "selector"); !reflect.DeepEqual(sel, labels) {
		t.Errorf("Service %s selects %v, the StatefulSet's pods are %v", m[1], sel, labels)
	}
	if !slices.ContainsFunc(dig(svc, "spec", "ports").([]any), func(p any) bool { return fmt.Sprint(dig(p, "port")) == m[2] }) {
		t.Errorf("Service %s has no port %s, Envoy's", m[1], m[2])
	}
	if env := dig(k["StatefulSet"], "spec", "template", "spec", "containers", "0", "env"); !strings.Contains(fmt.Sprint(env), m[1]+":7946") {
		t.Errorf("the StatefulSet's pods do not join through %s, Envoy's Service", m[1])
	}
}
