package cluster

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/ratemesh/ratemesh/bucket"
)

// countsOf shows entries in a debug log line as "key:used" pairs, so that
// the logs of a fault run say which count went where and how large it
// was. It is a slog.LogValuer: nothing is formatted unless the line is
// logged.
type countsOf []bucket.Entry

// maxLoggedCounts bounds a line: a handoff batch holds up to handoffBatch.
const maxLoggedCounts = 32

// LogValue implements slog.LogValuer.
func (es countsOf) LogValue() slog.Value {
	var b strings.Builder
	for i, e := range es {
		if i == maxLoggedCounts {
			fmt.Fprintf(&b, " … %d more", len(es)-i)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(e.Key)
		for _, cs := range e.Counters {
			fmt.Fprintf(&b, ":%d", used(cs))
		}
	}
	return slog.StringValue(b.String())
}

// used is a counter state's hits as a number to compare: the window's
// count (with a sliding window's previous bucket after a slash), the
// moving window's log length, or a token bucket's arrival time.
func used(cs bucket.CounterState) int64 {
	switch {
	case len(cs.Hits) > 0:
		return int64(len(cs.Hits))
	case cs.TAT != 0:
		return cs.TAT
	}
	return cs.Count + cs.Prev
}
