package rpc

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Log rate bound: a burst of logBurst lines, then one per logEvery. A peer
// that opens bad connections in a loop must not flood the log.
const (
	logBurst = 20
	logEvery = 100 * time.Millisecond
)

// logLimiter is a token bucket for log lines. Lines it drops are counted and
// reported as "suppressed" on the next line it lets through.
type logLimiter struct {
	log *slog.Logger

	mu      sync.Mutex
	tokens  int
	last    time.Time
	dropped int
}

func newLogLimiter(l *slog.Logger) *logLimiter {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &logLimiter{log: l, tokens: logBurst}
}

func (l *logLimiter) logAt(level slog.Level, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	if l.last.IsZero() {
		l.last = now
	}
	if add := int(now.Sub(l.last) / logEvery); add > 0 {
		l.tokens = min(logBurst, l.tokens+add)
		l.last = l.last.Add(time.Duration(add) * logEvery)
	}
	if l.tokens == 0 {
		l.dropped++
		l.mu.Unlock()
		return
	}
	l.tokens--
	dropped := l.dropped
	l.dropped = 0
	l.mu.Unlock()
	if dropped > 0 {
		args = append(args, "suppressed", dropped)
	}
	l.log.Log(context.Background(), level, msg, args...)
}
