package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ratemesh/ratemesh/internal/docblocks"
)

// envoyDocBlock is the YAML block of docs/envoy.md that contains marker,
// dedented.
func envoyDocBlock(t *testing.T, marker string) string {
	t.Helper()
	for _, b := range docblocks.Load(t, repoRoot, "docs/envoy.md") {
		if b.Lang == "yaml" && strings.Contains(b.Text, marker) {
			return b.Text
		}
	}
	t.Fatalf("docs/envoy.md has no YAML block with %q", marker)
	return ""
}

// runCommand runs argv with env added, in at most 30 s, and returns its
// output.
func runCommand(t *testing.T, env []string, argv ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%q: %v\n%s", argv, err, stderr.String())
	}
	return out
}

// TestEnvoyTokenRendered: the two commands that put the token into
// Envoy's config, compose.yaml's entrypoint (after compose's own $$
// escape) and the init container of envoy.md's Kubernetes steps, run with
// sh on the example's envoy.yaml, write it with the placeholder replaced
// by the token and nothing else changed.
func TestEnvoyTokenRendered(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef"
	tmpl, err := os.ReadFile(filepath.Join(envoyExample, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const placeholder = "${RATEMESH_API_TOKEN}"
	if strings.Count(string(tmpl), placeholder) != 2 { // the header comment's, and the metadata's
		t.Fatalf("envoy.yaml has %d %s, want 2", strings.Count(string(tmpl), placeholder), placeholder)
	}
	want := strings.ReplaceAll(string(tmpl), placeholder, token)

	var compose struct {
		Services map[string]struct {
			Entrypoint  []string          `yaml:"entrypoint"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	b, err := os.ReadFile(filepath.Join(envoyExample, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	var pod struct {
		InitContainers []struct {
			Command []string `yaml:"command"`
		} `yaml:"initContainers"`
	}
	if err := yaml.Unmarshal([]byte(envoyDocBlock(t, "initContainers:")), &pod); err != nil || len(pod.InitContainers) != 1 {
		t.Fatalf("docs/envoy.md's init container: %v %+v", err, pod)
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.yaml"), filepath.Join(dir, "out.yaml")
	if err := os.WriteFile(in, tmpl, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		where          string
		argv           []string
		from, to, tail string
		compose        bool // compose reads $$ as a literal $
	}{
		{"compose.yaml's envoy entrypoint", compose.Services["envoy"].Entrypoint, "/etc/envoy/envoy.tmpl.yaml", "/tmp/envoy.yaml", " && exec envoy -c /tmp/envoy.yaml", true},
		{"docs/envoy.md's init container", pod.InitContainers[0].Command, "/etc/envoy-template/envoy.yaml", "/etc/envoy/envoy.yaml", "", false},
	} {
		if len(tc.argv) != 3 || tc.argv[0] != "/bin/sh" || tc.argv[1] != "-c" {
			t.Fatalf("%s: %q, want /bin/sh -c and a script", tc.where, tc.argv)
		}
		script := tc.argv[2]
		if tc.compose {
			script = strings.ReplaceAll(script, "$$", "$")
		}
		script, ok := strings.CutSuffix(script, tc.tail)
		if !ok || strings.Count(script, tc.from) != 1 || strings.Count(script, tc.to) != 1 {
			t.Fatalf("%s: %q does not read %s and write %s%s", tc.where, script, tc.from, tc.to, tc.tail)
		}
		script = strings.Replace(strings.Replace(script, tc.from, in, 1), tc.to, out, 1)
		os.Remove(out)
		runCommand(t, []string{"RATEMESH_API_TOKEN=" + token}, "/bin/sh", "-c", script)
		got, err := os.ReadFile(out)
		if err != nil || string(got) != want {
			t.Errorf("%s renders envoy.yaml wrong (%v):\n%s", tc.where, err, got)
		}
	}
	if env := compose.Services["envoy"].Environment; env["RATEMESH_API_TOKEN"] != placeholder {
		t.Errorf("compose.yaml: envoy's RATEMESH_API_TOKEN is %q, want %s", env["RATEMESH_API_TOKEN"], placeholder)
	}
	// The nodes: rl-0 starts the cluster, the others join it on the
	// gossip port, 7946 by default.
	for name, s := range compose.Services {
		if !strings.HasPrefix(name, "rl-") {
			continue
		}
		if want := map[bool]string{true: "", false: "rl-0:7946"}[name == "rl-0"]; s.Environment["RATEMESH_JOIN"] != want {
			t.Errorf("compose.yaml: %s joins %q, want %q", name, s.Environment["RATEMESH_JOIN"], want)
		}
	}
}

// TestKustomizeEnvoyOverlay builds deploy/kubernetes with the additions
// step 1 of envoy.md's Kubernetes section makes to kustomization.yaml
// (with edge.yaml beside it, as it says), using kubectl's kustomize: the
// StatefulSet's pods get RATEMESH_RLS_CONFIG, the config mounted there
// from the generated ConfigMap (whose name kustomize suffixes, and the
// volume follows), holding the example's edge.yaml. Skipped without
// kubectl; it needs no cluster.
func TestKustomizeEnvoyOverlay(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: envoy.md's kustomization is not built")
	}
	dir := t.TempDir()
	src := filepath.Join(repoRoot, "deploy", "kubernetes")
	files, err := filepath.Glob(filepath.Join(src, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", src, err)
	}
	edge, err := os.ReadFile(filepath.Join(envoyExample, "ratelimit", "edge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range append(files, "edge.yaml") {
		b := edge
		if f != "edge.yaml" {
			if b, err = os.ReadFile(f); err != nil {
				t.Fatal(err)
			}
		}
		if filepath.Base(f) == "kustomization.yaml" {
			b = append(b, envoyDocBlock(t, "configMapGenerator:")...)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out := runCommand(t, nil, kubectl, "kustomize", dir)
	k := map[string]map[string]any{}
	for _, d := range yamlDocs(t, "kubectl kustomize", out) {
		k[fmt.Sprint(d["kind"], "/", dig(d, "metadata", "name"))] = d
	}
	var cm map[string]any
	for name, d := range k {
		if strings.HasPrefix(name, "ConfigMap/ratemesh-ratelimit-") {
			cm = d
		}
	}
	if cm == nil || dig(cm, "data", "edge.yaml") != string(edge) {
		t.Fatalf("no ConfigMap ratemesh-ratelimit-* holding edge.yaml in:\n%s", out)
	}
	pod := dig(k["StatefulSet/ratemesh"], "spec", "template", "spec")
	ctr := dig(pod, "containers", "0")
	var rlsConfig any
	for _, e := range dig(ctr, "env").([]any) {
		if dig(e, "name") == "RATEMESH_RLS_CONFIG" {
			rlsConfig = dig(e, "value")
		}
	}
	mount := map[string]any{"name": "ratelimit", "mountPath": "/etc/ratelimit", "readOnly": true}
	volume := map[string]any{"name": "ratelimit", "configMap": map[string]any{"name": dig(cm, "metadata", "name")}}
	mounts, _ := dig(ctr, "volumeMounts").([]any)
	volumes, _ := dig(pod, "volumes").([]any)
	if rlsConfig != "/etc/ratelimit" || len(mounts) == 0 || !reflect.DeepEqual(mounts[len(mounts)-1], mount) ||
		len(volumes) != 1 || !reflect.DeepEqual(volumes[0], volume) {
		t.Errorf("the StatefulSet's pod: RATEMESH_RLS_CONFIG %v, mounts %v, volumes %v; want /etc/ratelimit, %v, [%v]",
			rlsConfig, mounts, volumes, mount, volume)
	}
}

// checkSelectors checks that the Kubernetes objects agree on names: every
// selector (the Services', the PodDisruptionBudget's, the NetworkPolicy's
// pods and peers) picks the StatefulSet's pods by labels they have; the
// StatefulSet's serviceName is the headless Service; each Service's named
// target port and each probe's port is a port of the container.
func checkSelectors(t *testing.T, k map[string]map[string]any) {
	sts := k["StatefulSet"]
	labels, _ := dig(sts, "spec", "template", "metadata", "labels").(map[string]any)
	picks := func(where string, sel any) {
		m, ok := sel.(map[string]any)
		if !ok || len(m) == 0 {
			t.Errorf("%s: no selector (%v)", where, sel)
			return
		}
		for key, v := range m {
			if labels[key] != v {
				t.Errorf("%s selects %s=%v; the StatefulSet's pods are labelled %v", where, key, v, labels)
			}
		}
	}
	picks("StatefulSet's selector", dig(sts, "spec", "selector", "matchLabels"))
	picks("PodDisruptionBudget", dig(k["PodDisruptionBudget"], "spec", "selector", "matchLabels"))
	picks("NetworkPolicy", dig(k["NetworkPolicy"], "spec", "podSelector", "matchLabels"))
	picks("NetworkPolicy's peers", dig(k["NetworkPolicy"], "spec", "ingress", "0", "from", "0", "podSelector", "matchLabels"))
	ctr := dig(sts, "spec", "template", "spec", "containers", "0")
	ports := map[string]bool{}
	for _, p := range dig(ctr, "ports").([]any) {
		ports[fmt.Sprint(dig(p, "name"))] = true
	}
	for _, name := range []string{"ratemesh", "ratemesh-peers"} {
		svc := k["Service/"+name]
		picks("Service "+name, dig(svc, "spec", "selector"))
		for _, p := range dig(svc, "spec", "ports").([]any) {
			if tp, ok := dig(p, "targetPort").(string); ok && !ports[tp] {
				t.Errorf("Service %s: targetPort %s is not a port of the container %v", name, tp, ports)
			}
		}
	}
	if sn := dig(sts, "spec", "serviceName"); sn != "ratemesh-peers" || dig(k["Service/ratemesh-peers"], "spec", "clusterIP") != "None" {
		t.Errorf("the StatefulSet's serviceName is %v; want the headless ratemesh-peers", sn)
	}
	for _, probe := range []string{"readinessProbe", "livenessProbe"} {
		if p := fmt.Sprint(dig(ctr, probe, "httpGet", "port")); !ports[p] {
			t.Errorf("%s: port %s is not a port of the container", probe, p)
		}
	}
}

// TestCLIInPod: kubernetes.md's `kubectl exec ratemesh-0 -- ratemesh-node
// members` asks the pod's own node with the pod's token: with the
// StatefulSet's environment (a Secret's key read as its name), the CLI's
// address is 127.0.0.1 on the HTTP port the pod serves, and its token the
// first of RATEMESH_API_TOKEN.
func TestCLIInPod(t *testing.T) {
	var docs []map[string]any
	for _, f := range []string{"statefulset.yaml", "services.yaml"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "kubernetes", f))
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, yamlDocs(t, f, b)...)
	}
	ctr := dig(byKind(docs)["StatefulSet"], "spec", "template", "spec", "containers", "0")
	env := map[string]string{}
	for _, e := range dig(ctr, "env").([]any) {
		v, ok := dig(e, "value").(string)
		if key, isSecret := dig(e, "valueFrom", "secretKeyRef", "key").(string); isSecret {
			v, ok = key+"-value", true
		}
		if ok {
			env[dig(e, "name").(string)] = v
		}
	}
	cl, _, err := parseCLI("members", cliCommands()["members"], nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var httpPort any
	for _, p := range dig(ctr, "ports").([]any) {
		if dig(p, "name") == "http" {
			httpPort = dig(p, "containerPort")
		}
	}
	if want := fmt.Sprintf("127.0.0.1:%v", httpPort); cl.addr != want || cl.token != "RATEMESH_API_TOKEN-value" {
		t.Errorf("the CLI in a pod asks %s with token %q; want %s with the pod's RATEMESH_API_TOKEN", cl.addr, cl.token, want)
	}
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "kubernetes.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "\nkubectl exec ratemesh-0 -- ratemesh-node members\n") {
		t.Error("docs/kubernetes.md does not check the cluster with kubectl exec ratemesh-0 -- ratemesh-node members")
	}
}
