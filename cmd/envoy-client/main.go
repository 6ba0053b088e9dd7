// Command envoy-client calls a rate limit service as a configured Envoy
// would for one kind of HTTP request: it reads the Envoy bootstrap
// (-envoy), builds the descriptors the routes' actions send for the
// request (-remote and -H) and sends them with the ratelimit filter's
// domain and gRPC metadata, ${VAR}s taken from the environment (the API
// token goes there, never on the command line), round-robin over the
// service's endpoints (or -targets), -n times. It prints one line a call
// and, with -want-ok, exits 1 unless exactly that many calls were OK
// before the first OVER_LIMIT and every later one was OVER_LIMIT.
//
//	RATEMESH_API_TOKEN=... envoy-client -envoy examples/envoy/envoy.yaml \
//	  -targets 127.0.0.1:8089 -remote 10.0.0.1 -H x-user-id=bob -H x-plan=silver -n 6 -want-ok 5
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/ratemesh/ratemesh/internal/envoycfg"
)

func main() {
	os.Exit(run(os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// settings are the command's flags.
type settings struct {
	envoy   string
	targets []string
	req     envoycfg.Request
	n       int
	wantOK  int
	timeout time.Duration
}

// headerFlags collects -H name=value.
type headerFlags map[string]string

func (h headerFlags) String() string { return "" }

func (h headerFlags) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=value, got %q", s)
	}
	h[strings.ToLower(name)] = value
	return nil
}

func parse(args []string, stderr io.Writer) (settings, error) {
	fs := flag.NewFlagSet("envoy-client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	s := settings{req: envoycfg.Request{Headers: headerFlags{}}}
	var targets string
	fs.StringVar(&s.envoy, "envoy", "examples/envoy/envoy.yaml", "the Envoy bootstrap whose actions, domain and metadata to use")
	fs.StringVar(&targets, "targets", "", "comma-separated gRPC addresses to call round-robin; empty: the bootstrap's endpoints")
	fs.StringVar(&s.req.RemoteAddress, "remote", "", "the client address Envoy would see (remote_address actions)")
	fs.Var(headerFlags(s.req.Headers), "H", "a request header as name=value (:path for the path); repeat for more")
	fs.IntVar(&s.n, "n", 1, "calls to make")
	fs.IntVar(&s.wantOK, "want-ok", -1, "calls that must be OK before the rest are OVER_LIMIT; -1: no check")
	fs.DurationVar(&s.timeout, "timeout", 2*time.Second, "deadline of each call")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	s.targets = strings.FieldsFunc(targets, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	if s.n < 1 || s.timeout <= 0 {
		return s, errors.New("-n and -timeout must be positive")
	}
	return s, nil
}

func run(args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	s, err := parse(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintln(stderr, "envoy-client:", err)
		return 2
	}
	if err := call(s, lookup, stdout); err != nil {
		fmt.Fprintln(stderr, "envoy-client:", err)
		return 1
	}
	return 0
}

// call makes s.n calls and checks -want-ok.
func call(s settings, lookup func(string) (string, bool), stdout io.Writer) error {
	bs, err := envoycfg.Load(s.envoy)
	if err != nil {
		return err
	}
	md, err := bs.ExpandMetadata(lookup)
	if err != nil {
		return fmt.Errorf("%s: %w", s.envoy, err)
	}
	if len(s.targets) == 0 {
		s.targets = bs.Endpoints
	}
	descs := bs.Descriptors(s.req)
	if len(descs) == 0 {
		return errors.New("the request gets no descriptor from the bootstrap's actions: Envoy would not call the service")
	}
	clients := make([]pb.RateLimitServiceClient, len(s.targets))
	for i, t := range s.targets {
		conn, err := grpc.NewClient(t, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("target %s: %w", t, err)
		}
		defer conn.Close()
		clients[i] = pb.NewRateLimitServiceClient(conn)
	}
	req := &pb.RateLimitRequest{Domain: bs.Domain, Descriptors: descs}
	var codes []pb.RateLimitResponse_Code
	for i := range s.n {
		resp, err := once(clients[i%len(clients)], req, md, s.timeout)
		if err != nil {
			return fmt.Errorf("call %d to %s: %w", i+1, s.targets[i%len(s.targets)], err)
		}
		codes = append(codes, resp.GetOverallCode())
		fmt.Fprintf(stdout, "call %d via %s: %s%s\n", i+1, s.targets[i%len(s.targets)], resp.GetOverallCode(), statuses(descs, resp))
	}
	return checkWant(codes, s.wantOK)
}

// once is one call with the bootstrap's metadata.
func once(c pb.RateLimitServiceClient, req *pb.RateLimitRequest, md map[string]string, timeout time.Duration) (*pb.RateLimitResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ctx = metadata.NewOutgoingContext(ctx, metadata.New(md))
	return c.ShouldRateLimit(ctx, req)
}

// statuses describes each limited descriptor of resp: its entries, code
// and what is left of its limit.
func statuses(descs []*rlv3.RateLimitDescriptor, resp *pb.RateLimitResponse) string {
	var b strings.Builder
	for i, st := range resp.GetStatuses() {
		if st.GetCurrentLimit() == nil || i >= len(descs) {
			continue
		}
		var entries []string
		for _, e := range descs[i].GetEntries() {
			entries = append(entries, e.GetKey()+"="+e.GetValue())
		}
		fmt.Fprintf(&b, "  [%s: %s, %d of %d/%s left]", strings.Join(entries, ","), st.GetCode(),
			st.GetLimitRemaining(), st.GetCurrentLimit().GetRequestsPerUnit(), st.GetCurrentLimit().GetUnit())
	}
	return b.String()
}

// checkWant checks that exactly want calls were OK, then every other one
// OVER_LIMIT; want < 0 checks nothing.
func checkWant(codes []pb.RateLimitResponse_Code, want int) error {
	if want < 0 {
		return nil
	}
	for i, c := range codes {
		if exp := expected(i, want); c != exp {
			return fmt.Errorf("call %d: %s, want %s (%d OK, then OVER_LIMIT)", i+1, c, exp, want)
		}
	}
	return nil
}

func expected(i, want int) pb.RateLimitResponse_Code {
	if i < want {
		return pb.RateLimitResponse_OK
	}
	return pb.RateLimitResponse_OVER_LIMIT
}
