package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// version is the node's version, set at build time
// (-ldflags "-X main.version=..."; the Dockerfile's VERSION).
var version = "dev"

// healthcheckCommand is the first argument that makes the binary probe a
// node instead of running one: container images without a shell or curl
// (distroless) run it as their HEALTHCHECK.
const healthcheckCommand = "healthcheck"

// healthcheck asks the node's GET /healthz and returns the exit code: 0
// when it answers 200 within the timeout, 1 otherwise, 2 for bad flags.
// The node's address comes from the same RATEMESH_* variables the node
// reads, so that in a container the probe finds the node it runs beside.
func healthcheck(args []string, getenv func(string) string, out io.Writer) int {
	fs := flag.NewFlagSet("ratemesh-node healthcheck", flag.ContinueOnError)
	fs.SetOutput(out)
	url := fs.String("url", healthURL(getenv), "URL to probe")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	code, err := probe(ctx, *url)
	if err != nil {
		fmt.Fprintf(out, "ratemesh-node %s: %s: %v\n", version, *url, err)
		return 1
	}
	if code != http.StatusOK {
		fmt.Fprintf(out, "ratemesh-node %s: %s: status %d\n", version, *url, code)
		return 1
	}
	return 0
}

// healthURL is the node's /healthz as RATEMESH_BIND, RATEMESH_HTTP_PORT
// and RATEMESH_TLS_CERT describe it: a node bound to all interfaces is
// asked on loopback.
func healthURL(getenv func(string) string) string {
	host := getenv("RATEMESH_BIND")
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	port := getenv("RATEMESH_HTTP_PORT")
	if port == "" {
		port = "8081"
	}
	scheme := "http"
	if getenv("RATEMESH_TLS_CERT") != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/healthz"
}

// probe sends one GET and returns the status. The probe checks that the
// node answers, not who it is: it does not verify a TLS certificate,
// whose name is rarely the loopback address it is asked on.
func probe(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	tr := &http.Transport{DisableKeepAlives: true}
	if strings.HasPrefix(url, "https:") {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // a liveness probe of the node beside it
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, nil
}
