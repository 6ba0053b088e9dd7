package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/logevery"
	"github.com/ratemesh/ratemesh/internal/testlog"
)

// TestRefusalWatchWindow: the warning stands while the calls refused
// since the last accepted one include one at most refusalWindow old; an
// accepted call or a minute and a second without calls clears it. The
// WARN comes at most once per logevery.DefaultInterval.
func TestRefusalWatchWindow(t *testing.T) {
	var logs testlog.Buffer
	now := time.Unix(1_800_000_000, 0)
	w := &refusalWatch{logs: logevery.New(slog.New(slog.NewTextHandler(&logs, nil)), logevery.DefaultInterval), now: func() time.Time { return now }}
	if got := w.Warnings(); got != nil {
		t.Fatalf("before any call: %q", got)
	}
	w.refusedCall("missing")
	now = now.Add(5 * time.Second)
	w.refusedCall("missing")
	want := "grpc: 2 calls refused (api token missing) and none accepted since: Envoy is not limiting; send authorization: Bearer <token> in grpc_service.initial_metadata"
	if got := w.Warnings(); len(got) != 1 || got[0] != want {
		t.Fatalf("after two refusals: %q, want %q", got, want)
	}
	now = now.Add(refusalWindow)
	if got := w.Warnings(); len(got) != 1 {
		t.Errorf("%v after the last refusal: %q, want the warning", refusalWindow, got)
	}
	now = now.Add(time.Second)
	if got := w.Warnings(); got != nil {
		t.Errorf("%v after the last refusal: %q, want none", refusalWindow+time.Second, got)
	}
	w.refusedCall("invalid")
	w.accepted()
	if got := w.Warnings(); got != nil {
		t.Errorf("after an accepted call: %q", got)
	}
	var nilWatch *refusalWatch
	nilWatch.refusedCall("missing")
	nilWatch.accepted()
	if nilWatch.Warnings() != nil {
		t.Error("a nil watch warns")
	}
	// 0 s and 5 s fall in one interval; 66 s starts another.
	if got := strings.Count(logs.String(), "gRPC call refused"); got != 2 {
		t.Errorf("%d WARN lines for refusals at 0, 5 and 66 s, want 2:\n%s", got, logs.String())
	}
}
