// Package logevery bounds how often one class of event may log: a client
// repeating a failing request must not turn into a flood of log.
package logevery

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is how often one class of event (a failed check, a bad
// dynamic limit, a recovered panic) may log a line.
const DefaultInterval = 10 * time.Second

// Logger logs at most one line per event class and interval, and says in
// the next line how many it left out. Classes are a few fixed names. Its
// methods are safe for concurrent use.
type Logger struct {
	log      *slog.Logger
	interval time.Duration

	mu      sync.Mutex
	classes map[string]*class
}

type class struct {
	next       time.Time // no line of the class before this
	suppressed int       // lines left out since the last one
}

// New returns a Logger writing to log at most once per interval and class.
func New(log *slog.Logger, interval time.Duration) *Logger {
	return &Logger{log: log, interval: interval, classes: map[string]*class{}}
}

// Warn logs msg at WARN under class unless a line of the class was
// logged less than an interval before now.
func (l *Logger) Warn(now time.Time, class, msg string, args ...any) {
	l.logAt(now, slog.LevelWarn, class, msg, args)
}

// Error is Warn at ERROR.
func (l *Logger) Error(now time.Time, class, msg string, args ...any) {
	l.logAt(now, slog.LevelError, class, msg, args)
}

func (l *Logger) logAt(now time.Time, level slog.Level, name, msg string, args []any) {
	l.mu.Lock()
	c := l.classes[name]
	if c == nil {
		c = &class{}
		l.classes[name] = c
	}
	if now.Before(c.next) {
		c.suppressed++
		l.mu.Unlock()
		return
	}
	c.next = now.Add(l.interval)
	suppressed := c.suppressed
	c.suppressed = 0
	l.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed, "in", l.interval)
	}
	l.log.Log(context.Background(), level, msg, args...)
}
