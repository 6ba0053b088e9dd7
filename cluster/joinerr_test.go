package cluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestJoinErrorsOnOneLine(t *testing.T) {
	multi := errors.New("2 errors occurred:\n\t* failed to join 10.0.0.1:7946: dial tcp 10.0.0.1:7946: connect: connection refused\n\t* failed to join 10.0.0.2:7946: i/o timeout\n\n")
	for _, tc := range []struct {
		err      error
		want     string
		mismatch bool
	}{
		{multi, "failed to join 10.0.0.1:7946: dial tcp 10.0.0.1:7946: connect: connection refused; failed to join 10.0.0.2:7946: i/o timeout", false},
		{errors.Join(errors.New("a"), errors.New("b")), "a; b", false},
		{fmt.Errorf("1 error occurred:\n\t* failed to join 10.0.0.1:7946: No installed keys could decrypt the message\n\n"), "failed to join 10.0.0.1:7946: No installed keys could decrypt the message", true},
		{errors.New("failed to join x: remote state is encrypted and encryption is not configured"), "failed to join x: remote state is encrypted and encryption is not configured", true},
		{errors.New("failed to join x: encryption is configured but remote state is not encrypted"), "failed to join x: encryption is configured but remote state is not encrypted", true},
		{nil, "", false},
	} {
		if got := oneLine(tc.err); got != tc.want {
			t.Errorf("oneLine(%q) = %q, want %q", tc.err, got, tc.want)
		}
		if got := secretMismatch(tc.err); got != tc.mismatch {
			t.Errorf("secretMismatch(%q) = %v", tc.err, got)
		}
	}
	wrapped := fmt.Errorf("cluster: rejoin x: %w", flat(errors.Join(ErrNoSeedAddrs, multi)))
	if !errors.Is(wrapped, ErrNoSeedAddrs) || strings.Contains(wrapped.Error(), "\n") ||
		wrapped.Error() != "cluster: rejoin x: "+ErrNoSeedAddrs.Error()+"; failed to join 10.0.0.1:7946: dial tcp 10.0.0.1:7946: connect: connection refused; failed to join 10.0.0.2:7946: i/o timeout" {
		t.Errorf("flat: %q", wrapped)
	}
	if flat(nil) != nil {
		t.Error("flat(nil) is not nil")
	}
}
