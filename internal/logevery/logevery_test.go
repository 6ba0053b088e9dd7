package logevery

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/testlog"
)

// 10,000 failures in one interval make one line; the next interval's
// first line says how many were left out.
func TestLogEveryBoundsLines(t *testing.T) {
	var buf testlog.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), 10*time.Second)
	now := time.Unix(1_700_000_000, 0)
	for i := range 10_000 {
		l.Warn(now.Add(time.Duration(i)*time.Millisecond/10), "check", "check failed")
	}
	l.Warn(now.Add(time.Second), "other", "another class")
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("%d lines for 10,000 failures and one other event, want 2:\n%s", n, buf.String())
	}
	l.Warn(now.Add(10*time.Second), "check", "check failed")
	if lines := strings.Split(strings.TrimSpace(buf.String()), "\n"); len(lines) != 3 || !strings.Contains(lines[2], "suppressed=9999") {
		t.Fatalf("next interval: %q, want a third line saying suppressed=9999", lines)
	}
}
