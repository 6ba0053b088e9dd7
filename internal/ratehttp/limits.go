package ratehttp

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ratemesh/ratemesh/bucket"
)

// Bounds of a LimitCache. Limit strings may come from application code or
// from clients and may be anything; past the bounds they are parsed on
// every use.
const (
	// MaxCachedLimits is how many strings a LimitCache keeps.
	MaxCachedLimits = 1024
	// MaxLimitLen bounds a limit string: a list of 32 limits fits in far
	// less. Longer ones are refused unparsed (ErrLimitTooLong).
	MaxLimitLen = 1024
	// MaxCachedBytes bounds the bytes of the strings a LimitCache keeps,
	// so that clients choosing the strings cannot pin memory.
	MaxCachedBytes = 256 << 10
)

// ErrLimitTooLong refuses a limit string over MaxLimitLen.
var ErrLimitTooLong = fmt.Errorf("limits: longer than %d bytes", MaxLimitLen)

// ParseLimits parses a limit string as bucket.Parse does, and names it
// (its first 40 bytes, quoted) in the error.
func ParseLimits(s string) ([]bucket.Limit, error) {
	ls, err := bucket.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("limits %.40q: %w", s, err)
	}
	return ls, nil
}

// LimitCache caches what parse made of limit strings. Only strings parse
// accepted are kept, up to MaxCachedLimits of them and MaxCachedBytes in
// all: a bad or new string costs a parse, never memory that outlives its
// use. Safe for concurrent use.
type LimitCache[V any] struct {
	parse func(string) (V, error)
	m     sync.Map // limit string -> V
	n     atomic.Int64
	bytes atomic.Int64 // of the strings kept
}

// NewLimitCache returns an empty cache of parse's results.
func NewLimitCache[V any](parse func(string) (V, error)) *LimitCache[V] {
	return &LimitCache[V]{parse: parse}
}

// Get returns the parse of s, through the cache. fresh reports that s was
// parsed now (it was not in the cache), so that callers can log a bad
// string once per parse, not once per use.
func (c *LimitCache[V]) Get(s string) (v V, fresh bool, err error) {
	if v, ok := c.m.Load(s); ok {
		return v.(V), false, nil
	}
	if len(s) > MaxLimitLen {
		return v, true, ErrLimitTooLong
	}
	v, err = c.parse(s)
	if err != nil || c.n.Load() >= MaxCachedLimits || c.bytes.Load()+int64(len(s)) > MaxCachedBytes {
		return v, true, err
	}
	s = strings.Clone(s) // not the caller's buffer
	if got, loaded := c.m.LoadOrStore(s, v); loaded {
		return got.(V), false, nil
	}
	c.n.Add(1)
	c.bytes.Add(int64(len(s)))
	return v, true, nil
}
