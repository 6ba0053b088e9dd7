package main

import (
	"bytes"
	"strings"
	"testing"

	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

// TestCheckWant: -want-ok N accepts exactly N OK, then OVER_LIMIT, and
// names the first call that differs.
func TestCheckWant(t *testing.T) {
	ok, over := pb.RateLimitResponse_OK, pb.RateLimitResponse_OVER_LIMIT
	for _, tc := range []struct {
		codes []pb.RateLimitResponse_Code
		want  int
		err   string
	}{
		{[]pb.RateLimitResponse_Code{ok, ok, over}, 2, ""},
		{[]pb.RateLimitResponse_Code{ok, ok, ok}, 2, "call 3: OK, want OVER_LIMIT (2 OK, then OVER_LIMIT)"},
		{[]pb.RateLimitResponse_Code{ok, over, over}, 2, "call 2: OVER_LIMIT, want OK (2 OK, then OVER_LIMIT)"},
		{[]pb.RateLimitResponse_Code{over}, -1, ""},
	} {
		err := checkWant(tc.codes, tc.want)
		if got := errString(err); got != tc.err {
			t.Errorf("checkWant(%v, %d): %q, want %q", tc.codes, tc.want, got, tc.err)
		}
	}
}

// TestRunErrors: bad flags exit 2, a request that gets no descriptor or a
// token that is not set exits 1, each with a message naming the fault.
func TestRunErrors(t *testing.T) {
	noEnv := func(string) (string, bool) { return "", false }
	withEnv := func(string) (string, bool) { return "t0123456789abcdef", true }
	for _, tc := range []struct {
		args   []string
		lookup func(string) (string, bool)
		code   int
		msg    string
	}{
		{[]string{"-H", "nope"}, noEnv, 2, `invalid value "nope" for flag -H: want name=value, got "nope"`},
		{[]string{"-n", "0"}, noEnv, 2, "envoy-client: -n and -timeout must be positive"},
		{[]string{"-envoy", "../../examples/envoy/envoy.yaml"}, noEnv, 1, "envoy-client: ../../examples/envoy/envoy.yaml: initial_metadata needs [RATEMESH_API_TOKEN] set"},
		{[]string{"-envoy", "../../examples/envoy/envoy.yaml"}, withEnv, 1, "envoy-client: the request gets no descriptor from the bootstrap's actions: Envoy would not call the service"},
	} {
		var out, errOut bytes.Buffer
		if code := run(tc.args, tc.lookup, &out, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.msg) {
			t.Errorf("run(%q): %d %q, want %d %q", tc.args, code, errOut.String(), tc.code, tc.msg)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
