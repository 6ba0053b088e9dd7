// Package logevery logs at most one line per class of event and interval:
// a client repeating a failing request, or a stranger sending junk to a
// port, must not turn into a flood of log. The HTTP API and the cluster's
// gossip share it.
package logevery

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is how often one class of event (a failed check, a bad
// dynamic limit, a gossip packet that does not decode) may log a line.
const DefaultInterval = 10 * time.Second

// MaxClasses bounds the classes a Logger remembers. Classes are meant to
// be a few fixed names; should a caller derive them from what it is sent,
// the classes beyond the bound share OverflowClass, so that the memory
// stays bounded whatever arrives.
const MaxClasses = 64

// OverflowClass is the class of events whose own class came after
// MaxClasses others.
const OverflowClass = "other"

// Logger logs at most one line per event class and interval, and says in
// the next line of the class how many it left out. Safe for concurrent
// use.
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

// New returns a Logger writing to log at most one line per class and
// interval.
func New(log *slog.Logger, interval time.Duration) *Logger {
	return &Logger{log: log, interval: interval, classes: map[string]*class{}}
}

// Warn logs msg at WARN under class unless a line of the class was logged
// less than an interval before now.
func (l *Logger) Warn(now time.Time, class, msg string, args ...any) {
	l.Log(now, slog.LevelWarn, class, msg, args...)
}

// Error is Warn at ERROR.
func (l *Logger) Error(now time.Time, class, msg string, args ...any) {
	l.Log(now, slog.LevelError, class, msg, args...)
}

// Log logs msg at level under class unless a line of the class was logged
// less than an interval before now.
func (l *Logger) Log(now time.Time, level slog.Level, class, msg string, args ...any) {
	suppressed, ok := l.admit(now, class)
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed, "in", l.interval)
	}
	l.log.Log(context.Background(), level, msg, args...)
}

// admit reports whether a line of name may be logged at now, and how many
// of the class were left out before it.
func (l *Logger) admit(now time.Time, name string) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.classes[name]
	if c == nil {
		if len(l.classes) >= MaxClasses {
			name = OverflowClass
		}
		if c = l.classes[name]; c == nil {
			c = &class{}
			l.classes[name] = c
		}
	}
	if now.Before(c.next) {
		c.suppressed++
		return 0, false
	}
	c.next = now.Add(l.interval)
	suppressed, c.suppressed = c.suppressed, 0
	return suppressed, true
}
