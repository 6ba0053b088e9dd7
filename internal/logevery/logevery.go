package httpapi

import (
	"log/slog"
	"sync"
	"time"
)

// DefaultLogInterval is how often one class of event (a failed check, a
// bad dynamic limit) may log a line: a client repeating a failing request
// must not turn into a flood of log.
const DefaultLogInterval = 10 * time.Second

// logEvery logs at most one line per event class and interval, and says
// in the next line how many it left out. Classes are a few fixed names.
type logEvery struct {
	log      *slog.Logger
	interval time.Duration

	mu      sync.Mutex
	classes map[string]*logClass
}

type logClass struct {
	next       time.Time // no line of the class before this
	suppressed int       // lines left out since the last one
}

func newLogEvery(log *slog.Logger, interval time.Duration) *logEvery {
	return &logEvery{log: log, interval: interval, classes: map[string]*logClass{}}
}

// warn logs msg at WARN under class unless a line of the class was
// logged less than an interval before now.
func (l *logEvery) warn(now time.Time, class, msg string, args ...any) {
	l.mu.Lock()
	c := l.classes[class]
	if c == nil {
		c = &logClass{}
		l.classes[class] = c
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
	l.log.Warn(msg, args...)
}
