package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
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

// kubeCommand is a pattern of a command of docs/kubernetes.md and what
// checks it against the repository.
type kubeCommand struct {
	pattern *regexp.Regexp
	check   func(k *kubeDoc, m []string)
}

// kubeDoc is what docs/kubernetes.md's commands are checked against: the
// shipped manifests by kind, the node's names, the Dockerfile, and the
// Secret's keys and the images that earlier commands made.
type kubeDoc struct {
	t          *testing.T
	c          *checker
	k          map[string]map[string]any
	dockerfile string
	secrets    map[string][]string // name: keys
	images     map[string]bool
	forwarded  map[string]bool // local ports
}

// kubeCommands are the commands docs/kubernetes.md may use, a quoted word
// as "…". curl to the forwarded port is run by TestDeployDocSessions
// (e2e), against nodes.
var kubeCommands = []kubeCommand{
	{regexp.MustCompile(`^docker build((?: --build-arg [A-Z_]+=\S+)*) -t (\S+) (\S+)$`), (*kubeDoc).dockerBuild},
	{regexp.MustCompile(`^docker push (\S+)$`), (*kubeDoc).dockerPush},
	{regexp.MustCompile(`^kubectl create secret generic (\S+)((?: --from-literal=[A-Z_]+=\S+)+)$`), (*kubeDoc).createSecret},
	{regexp.MustCompile(`^kubectl apply -k (\S+)$`), (*kubeDoc).applyDir},
	{regexp.MustCompile(`^kubectl (?:rollout status|rollout restart|scale) statefulset/(\S+)(?: --replicas=\d+)?$`), (*kubeDoc).statefulSet},
	{regexp.MustCompile(`^kubectl set image statefulset/(\S+) ([a-z0-9-]+)=(\S+)$`), (*kubeDoc).setImage},
	{regexp.MustCompile(`^kubectl exec ([a-z0-9-]+)-(\d+) -- (\S+) ([a-z]+)$`), (*kubeDoc).exec},
	{regexp.MustCompile(`^kubectl port-forward svc/(\S+) (\d+):(\d+) &$`), (*kubeDoc).portForward},
	{regexp.MustCompile(`^TOKEN=\$\(kubectl get secret (\S+) -o jsonpath='\{\.data\.([A-Z_]+)\}' \| base64 -d\)$`), (*kubeDoc).secretKey},
	{regexp.MustCompile(`^curl -s -H "…" -d '\{.*\}' localhost:(\d+)/v1/check$`), (*kubeDoc).forwardedPort},
}

// TestKubernetesDocCommands checks every command of docs/kubernetes.md's
// shell blocks against what the repository ships, since this machine has
// no Kubernetes cluster and no Docker daemon: the image's build arguments
// are the Dockerfile's and the pushed image is the one built; the Secret
// the page creates has every key the StatefulSet reads, each a variable of
// the node, and the token the page reads from it is one of them; apply
// gets a kustomization; the StatefulSet, its container, its pods and the
// Service port the commands name exist; the command run in a pod is the
// node binary on the image's path and one of its commands. A command of
// none of these kinds fails the test, so that a new one gets a check.
func TestKubernetesDocCommands(t *testing.T) {
	flags, envs := nodeFlags(t)
	df, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(repoRoot, "deploy", "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes: %v", err)
	}
	var docs []map[string]any
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, yamlDocs(t, f, b)...)
	}
	k := &kubeDoc{t: t, c: &checker{t: t, flags: flags, envs: envs}, k: byKind(docs), dockerfile: string(df),
		secrets: map[string][]string{}, images: map[string]bool{}, forwarded: map[string]bool{}}
	n := 0
	for _, b := range docblocks.Load(t, repoRoot, "docs/kubernetes.md") {
		if b.Lang != "sh" {
			continue
		}
		for _, line := range docblocks.Commands(b.Text) {
			n++
			k.check(line)
		}
	}
	if n < 12 {
		t.Errorf("docs/kubernetes.md: %d commands, the page has more: update this test with the page", n)
	}
	k.secretKeyRefs()
}

var (
	// quoted is a double-quoted word of a command, which kubeCommands'
	// patterns see as "…".
	quoted = regexp.MustCompile(`"[^"]*"`)
	spaces = regexp.MustCompile(`\s+`)
)

// check checks one command line by the first pattern it matches.
func (k *kubeDoc) check(line string) {
	line = spaces.ReplaceAllString(quoted.ReplaceAllString(line, `"…"`), " ")
	for _, kc := range kubeCommands {
		if m := kc.pattern.FindStringSubmatch(line); m != nil {
			kc.check(k, m)
			return
		}
	}
	k.t.Errorf("docs/kubernetes.md: %q is a command TestKubernetesDocCommands does not check: give it a check", line)
}

func (k *kubeDoc) dockerBuild(m []string) {
	for _, arg := range regexp.MustCompile(`--build-arg ([A-Z_]+)=`).FindAllStringSubmatch(m[1], -1) {
		if !regexp.MustCompile(`(?m)^ARG ` + arg[1] + `(=|$)`).MatchString(k.dockerfile) {
			k.t.Errorf("docs/kubernetes.md: docker build --build-arg %s: the Dockerfile has no ARG %s", arg[1], arg[1])
		}
	}
	if _, err := os.Stat(filepath.Join(repoRoot, m[3], "Dockerfile")); err != nil {
		k.t.Errorf("docs/kubernetes.md: docker build from %s: %v", m[3], err)
	}
	k.images[m[2]] = true
}

func (k *kubeDoc) dockerPush(m []string) {
	if !k.images[m[1]] {
		k.t.Errorf("docs/kubernetes.md: docker push %s, an image the page did not build", m[1])
	}
}

func (k *kubeDoc) createSecret(m []string) {
	for _, lit := range regexp.MustCompile(`--from-literal=([A-Z_]+)=`).FindAllStringSubmatch(m[2], -1) {
		k.c.text("docs/kubernetes.md", lit[1])
		k.secrets[m[1]] = append(k.secrets[m[1]], lit[1])
	}
}

// secretKeyRefs checks that the Secret the page creates has every key the
// StatefulSet reads from a Secret.
func (k *kubeDoc) secretKeyRefs() {
	for _, e := range dig(k.k["StatefulSet"], "spec", "template", "spec", "containers", "0", "env").([]any) {
		ref := dig(e, "valueFrom", "secretKeyRef")
		if ref == nil {
			continue
		}
		name, key := dig(ref, "name").(string), dig(ref, "key").(string)
		if !slices.Contains(k.secrets[name], key) {
			k.t.Errorf("docs/kubernetes.md: the StatefulSet reads %s of Secret %s, which the page does not create (it creates %v)", key, name, k.secrets)
		}
	}
}

func (k *kubeDoc) applyDir(m []string) {
	if _, err := os.Stat(filepath.Join(repoRoot, m[1], "kustomization.yaml")); err != nil {
		k.t.Errorf("docs/kubernetes.md: kubectl apply -k %s: %v", m[1], err)
	}
}

func (k *kubeDoc) statefulSet(m []string) {
	if name := dig(k.k["StatefulSet"], "metadata", "name"); name != m[1] {
		k.t.Errorf("docs/kubernetes.md: statefulset/%s, the StatefulSet is %v", m[1], name)
	}
}

func (k *kubeDoc) setImage(m []string) {
	k.statefulSet(m)
	if name := dig(k.k["StatefulSet"], "spec", "template", "spec", "containers", "0", "name"); name != m[2] {
		k.t.Errorf("docs/kubernetes.md: set image of container %s, the StatefulSet's is %v", m[2], name)
	}
}

// exec checks a command run in a pod: the pod is one of the StatefulSet's,
// and the command is one of the node binary's, which the image puts on
// the path.
func (k *kubeDoc) exec(m []string) {
	k.statefulSet(m)
	if ord, _ := strconv.Atoi(m[2]); ord >= dig(k.k["StatefulSet"], "spec", "replicas").(int) {
		k.t.Errorf("docs/kubernetes.md: pod %s-%s: the StatefulSet has fewer replicas", m[1], m[2])
	}
	if !strings.Contains(k.dockerfile, " /usr/local/bin/"+m[3]+"\n") {
		k.t.Errorf("docs/kubernetes.md: the image has no %s in /usr/local/bin", m[3])
	}
	if _, ok := cliCommands()[m[4]]; !ok {
		k.t.Errorf("docs/kubernetes.md: %s %s: not a command of the node binary", m[3], m[4])
	}
}

func (k *kubeDoc) portForward(m []string) {
	ports := dig(k.k["Service/"+m[1]], "spec", "ports")
	ok := false
	for _, p := range asList(ports) {
		ok = ok || fmt.Sprint(dig(p, "port")) == m[3]
	}
	if !ok {
		k.t.Errorf("docs/kubernetes.md: port-forward svc/%s %s: the Service has no port %s", m[1], m[3], m[3])
	}
	k.forwarded[m[2]] = true
}

func (k *kubeDoc) secretKey(m []string) {
	if !slices.Contains(k.secrets[m[1]], m[2]) {
		k.t.Errorf("docs/kubernetes.md: the page reads %s of Secret %s, which it did not create with it", m[2], m[1])
	}
}

func (k *kubeDoc) forwardedPort(m []string) {
	if !k.forwarded[m[1]] {
		k.t.Errorf("docs/kubernetes.md: curl to localhost:%s, a port the page did not forward", m[1])
	}
}

// asList is v as a list (nil if it is none).
func asList(v any) []any {
	l, _ := v.([]any)
	return l
}
