package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// repoRoot is where the Dockerfile and deploy/ are, from this package.
const repoRoot = "../.."

// nodeFlags lists the node's flags and environment variables, from the
// usage the flag set itself prints.
func nodeFlags(t *testing.T) (flags, envs map[string]bool) {
	t.Helper()
	flags, envs = map[string]bool{}, map[string]bool{}
	for name, f := range helpFlags(t) {
		flags[name], envs[f.env] = true, true
	}
	if len(flags) != len(envs) || envs[""] {
		t.Fatalf("read %d flags and %d variables from --help", len(flags), len(envs))
	}
	return flags, envs
}

// checker checks the names the deployment files use against the node's.
type checker struct {
	t            *testing.T
	flags, envs  map[string]bool
	healthchecks int // exec lines that run the healthcheck command
}

var envName = regexp.MustCompile(`RATEMESH_[A-Z0-9_]+`)

// text checks every RATEMESH_ name in a file's text, comments included.
func (c *checker) text(file, s string) {
	for _, name := range envName.FindAllString(s, -1) {
		if !c.envs[name] {
			c.t.Errorf("%s: %s is not a variable of the node", file, name)
		}
	}
}

// argv checks the arguments of a command that runs the binary: node flags,
// or the healthcheck command and its flags.
func (c *checker) argv(file string, argv []string) {
	flags := c.flags
	if len(argv) > 0 && argv[0] == healthcheckCommand {
		c.healthchecks++
		flags, argv = map[string]bool{"url": true, "timeout": true}, argv[1:]
	}
	for _, a := range argv {
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			c.t.Errorf("%s: argument %q is not a --flag (the node takes no others)", file, a)
			continue
		}
		name, _, _ = strings.Cut(name, "=")
		if !flags[name] {
			c.t.Errorf("%s: --%s is not a flag of the node", file, name)
		}
	}
}

// TestDeployFilesUseRealFlags: every YAML document under deploy/ parses;
// every flag and RATEMESH_ variable that the manifests, the Dockerfile,
// the systemd unit and the code blocks of docs/envoy.md and
// docs/kubernetes.md use is one the node has; the manifests' selectors,
// service and port names agree; and the settings that make a graceful
// leave, probes and a non-root image work are there.
func TestDeployFilesUseRealFlags(t *testing.T) {
	flags, envs := nodeFlags(t)
	c := &checker{t: t, flags: flags, envs: envs}
	var docs []map[string]any
	err := filepath.WalkDir(filepath.Join(repoRoot, "deploy"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		c.text(path, string(b))
		switch filepath.Ext(path) {
		case ".yaml", ".yml":
			docs = append(docs, yamlDocs(t, path, b)...)
		case ".service":
			checkUnit(t, c, path, string(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkManifests(t, c, docs)
	checkSelectors(t, byKind(docs))
	checkDocs(t, c)
	checkEnvoyService(t, docs)
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	checkDockerfile(t, c, string(b))
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc == nil || doc["kind"] == nil {
			t.Fatalf("%s: a document without a kind", path)
		}
		out = append(out, doc)
	}
}

// dig walks maps and lists ("0" indexes a list) to one value.
func dig(v any, path ...string) any {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			if p != "0" || len(x) == 0 {
				return nil
			}
			v = x[0]
		default:
			return nil
		}
	}
	return v
}

// byKind indexes documents by kind, and Services by name.
func byKind(docs []map[string]any) map[string]map[string]any {
	m := map[string]map[string]any{}
	for _, d := range docs {
		k, _ := d["kind"].(string)
		if k == "Service" {
			k += "/" + dig(d, "metadata", "name").(string)
		}
		m[k] = d
	}
	return m
}

// checkManifests checks the Kubernetes objects.
func checkManifests(t *testing.T, c *checker, docs []map[string]any) {
	k := byKind(docs)
	for _, want := range []string{"StatefulSet", "Service/ratemesh", "Service/ratemesh-peers", "PodDisruptionBudget", "NetworkPolicy", "Secret", "Kustomization"} {
		if k[want] == nil {
			t.Fatalf("deploy/kubernetes has no %s", want)
		}
	}
	if dig(k["Service/ratemesh-peers"], "spec", "clusterIP") != "None" || dig(k["Service/ratemesh-peers"], "spec", "publishNotReadyAddresses") != true {
		t.Error("ratemesh-peers: want a headless Service that lists pods not ready yet")
	}
	for _, r := range dig(k["Kustomization"], "resources").([]any) {
		if _, err := os.Stat(filepath.Join(repoRoot, "deploy/kubernetes", r.(string))); err != nil {
			t.Errorf("kustomization.yaml: %v", err)
		}
	}
	pod := dig(k["StatefulSet"], "spec", "template")
	ctr := dig(pod, "spec", "containers", "0")
	var args []string
	for _, a := range dig(ctr, "args").([]any) {
		args = append(args, a.(string))
	}
	c.argv("statefulset.yaml args", args)
	env := map[string]any{}
	for _, e := range dig(ctr, "env").([]any) {
		env[dig(e, "name").(string)] = e
		if key, ok := dig(e, "valueFrom", "secretKeyRef", "key").(string); ok && dig(k["Secret"], "stringData", key) == nil {
			t.Errorf("env %v: the Secret has no key %s", dig(e, "name"), key)
		}
	}
	if dig(env["RATEMESH_BIND"], "value") != "0.0.0.0" || dig(env["RATEMESH_ADVERTISE"], "valueFrom", "fieldRef", "fieldPath") != "status.podIP" {
		t.Error("want RATEMESH_BIND 0.0.0.0 and RATEMESH_ADVERTISE from status.podIP")
	}
	if dig(ctr, "readinessProbe", "httpGet", "path") != "/readyz" || dig(ctr, "livenessProbe", "httpGet", "path") != "/healthz" {
		t.Error("want readiness on /readyz and liveness on /healthz")
	}
	leave, err := time.ParseDuration(dig(env["RATEMESH_SHUTDOWN_TIMEOUT"], "value").(string))
	if err != nil {
		t.Fatalf("RATEMESH_SHUTDOWN_TIMEOUT: %v", err)
	}
	pause := dig(ctr, "lifecycle", "preStop", "sleep", "seconds").(int)
	grace := dig(pod, "spec", "terminationGracePeriodSeconds").(int)
	if need := pause + int(leave.Seconds()) + 5; grace < need {
		t.Errorf("terminationGracePeriodSeconds %d: the preStop pause (%ds) and the leave (%v) need %d with 5 to spare", grace, pause, leave, need)
	}
	if dig(pod, "metadata", "annotations", "prometheus.io/scrape") != "true" || dig(pod, "metadata", "annotations", "prometheus.io/port") != "8081" {
		t.Error("want the Prometheus scrape annotations on the HTTP port")
	}
	if dig(ctr, "resources", "requests", "memory") == nil || dig(ctr, "resources", "limits", "memory") == nil {
		t.Error("want memory requests and limits")
	}
}

// checkUnit checks the systemd unit.
func checkUnit(t *testing.T, c *checker, path, unit string) {
	for _, want := range []string{"EnvironmentFile=", "NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=ratemesh",
		"Environment=RATEMESH_DATA_DIR=%S/ratemesh", "DynamicUser=yes", "ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGTERM"} {
		if !strings.Contains(unit, "\n"+want) {
			t.Errorf("%s lacks %q", path, want)
		}
	}
	m := regexp.MustCompile(`(?m)^ExecStart=\S*ratemesh-node(.*)$`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatalf("%s: no ExecStart of ratemesh-node", path)
	}
	c.argv(path, strings.Fields(m[1]))
	stop := regexp.MustCompile(`(?m)^TimeoutStopSec=(\d+)$`).FindStringSubmatch(unit)
	secs := 0
	if stop != nil {
		secs, _ = strconv.Atoi(stop[1])
	}
	if secs < 15 {
		t.Errorf("%s: TimeoutStopSec %d, want at least 15 s, past any leave timeout", path, secs)
	}
}

// checkDockerfile checks the image's build.
func checkDockerfile(t *testing.T, c *checker, df string) {
	c.text("Dockerfile", df)
	for _, want := range []string{"CGO_ENABLED=0", "FROM gcr.io/distroless/static", "USER 65532:65532", "ARG VERSION", "-X main.version=${VERSION}",
		"EXPOSE 8081/tcp 7946/tcp 7946/udp 9091/tcp 8089/tcp", "ENV RATEMESH_BIND=0.0.0.0", "HEALTHCHECK "} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if n := strings.Count(df, "\nFROM "); n < 2 {
		t.Errorf("Dockerfile has %d stages, want a build stage and a runtime one", n)
	}
	for _, m := range regexp.MustCompile(`(?m)(?:ENTRYPOINT|CMD) (\[.*\])$`).FindAllStringSubmatch(df, -1) {
		var argv []string
		if err := json.Unmarshal([]byte(m[1]), &argv); err != nil {
			t.Fatalf("Dockerfile %s: %v", m[0], err)
		}
		if len(argv) == 0 || !strings.HasSuffix(argv[0], "/ratemesh-node") {
			t.Errorf("Dockerfile %s: want the node binary", m[0])
			continue
		}
		c.argv("Dockerfile", argv[1:])
	}
	if c.healthchecks != 1 {
		t.Errorf("%d HEALTHCHECK commands run the node's healthcheck, want 1", c.healthchecks)
	}
}

// TestDefaultAdvertise: a node bound to every interface advertises the
// host's first non-loopback address, IPv4 first; a node bound to one
// address advertises it; none to advertise is an error naming the flag.
func TestDefaultAdvertise(t *testing.T) {
	cidrs := func(ss ...string) func() ([]net.Addr, error) {
		return func() ([]net.Addr, error) {
			var out []net.Addr
			for _, s := range ss {
				ip, n, err := net.ParseCIDR(s)
				if err != nil {
					t.Fatal(err)
				}
				n.IP = ip
				out = append(out, n)
			}
			return out, nil
		}
	}
	host := cidrs("127.0.0.1/8", "::1/128", "fe80::1/64", "2001:db8::7/64", "10.1.2.3/24", "192.168.0.9/24")
	for _, tc := range []struct {
		bind  string
		addrs func() ([]net.Addr, error)
		want  string
	}{
		{"127.0.0.1", host, ""},
		{"10.1.2.3", host, ""},
		{"0.0.0.0", host, "10.1.2.3"},
		{"::", host, "10.1.2.3"},
		{"0.0.0.0", cidrs("127.0.0.1/8", "fe80::1/64", "2001:db8::7/64"), "2001:db8::7"},
	} {
		if got, err := defaultAdvertise(tc.bind, tc.addrs); err != nil || got != tc.want {
			t.Errorf("bind %s: %q, %v; want %q", tc.bind, got, err, tc.want)
		}
	}
	_, err := defaultAdvertise("0.0.0.0", cidrs("127.0.0.1/8", "fe80::1/64"))
	if err == nil || !strings.Contains(err.Error(), "--bind 0.0.0.0: no non-loopback address to advertise") {
		t.Fatalf("loopback only: %v", err)
	}
	o, err := parseOptions([]string{"--bind", "0.0.0.0", "--advertise", "192.0.2.1"}, func(string) string { return "" }, io.Discard)
	if err != nil || o.advertise != "192.0.2.1" {
		t.Fatalf("an explicit --advertise: %v %q", err, o.advertise)
	}
}

// TestHealthcheckCommand: the image's HEALTHCHECK exits 0 against a node
// that answers /healthz, 1 against a closed port, and finds the node from
// RATEMESH_BIND and RATEMESH_HTTP_PORT.
func TestHealthcheckCommand(t *testing.T) {
	env := map[string]string{"RATEMESH_BIND": "0.0.0.0", "RATEMESH_HTTP_PORT": "9999"}
	if got := healthURL(func(k string) string { return env[k] }); got != "http://127.0.0.1:9999/healthz" {
		t.Fatalf("healthURL = %q", got)
	}
	if got := healthURL(func(string) string { return "" }); got != "http://127.0.0.1:8081/healthz" {
		t.Fatalf("healthURL with defaults = %q", got)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	}))
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	var out bytes.Buffer
	getenv := func(k string) string { return map[string]string{"RATEMESH_HTTP_PORT": port}[k] }
	if code := healthcheck(nil, getenv, &out); code != 0 {
		t.Fatalf("healthcheck of a live node: exit %d: %s", code, out.String())
	}
	if code := healthcheck([]string{"--url", srv.URL + "/nothing"}, getenv, &out); code != 1 || !strings.Contains(out.String(), "/nothing: status 404") {
		t.Fatalf("healthcheck of a 404: exit %d: %s", code, out.String())
	}
	srv.Close()
	// With a certificate the node serves HTTPS only; the probe follows.
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer tlsSrv.Close()
	_, tlsPort, _ := net.SplitHostPort(tlsSrv.Listener.Addr().String())
	tlsEnv := map[string]string{"RATEMESH_HTTP_PORT": tlsPort, "RATEMESH_TLS_CERT": "/etc/ratemesh/tls.crt"}
	if code := healthcheck(nil, func(k string) string { return tlsEnv[k] }, &out); code != 0 {
		t.Fatalf("healthcheck of a TLS node: exit %d: %s", code, out.String())
	}
	out.Reset()
	if code := healthcheck([]string{"--timeout", "2s"}, getenv, &out); code != 1 || !strings.Contains(out.String(), "/healthz: ") {
		t.Fatalf("healthcheck of a stopped node: exit %d: %s", code, out.String())
	}
}
