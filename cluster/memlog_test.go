package cluster

import (
	"log/slog"
	"os"
	"testing"
)

// memLogger is a memNet node's logger: silent, unless
// RATEMESH_MEMNET_LOG=1 asks for every node's debug lines in the test's
// log (shown for a failed test, or with -v), to follow a count's moves.
func memLogger(t *testing.T) *slog.Logger {
	if os.Getenv("RATEMESH_MEMNET_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testLogWriter writes each line to a test's log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}
