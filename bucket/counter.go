package bucket

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Strategy selects the algorithm of a counter. The zero value is FixedWindow.
type Strategy uint8

// The strategies; their names are the reference's where it has one.
const (
	// FixedWindow counts hits in a window that starts at the counter's first
	// hit and lasts the period (as the reference does).
	FixedWindow Strategy = iota
	// SlidingWindowCounter keeps counts of clock-aligned buckets one period
	// long and weighs the previous bucket by the fraction of it still inside
	// the window that ends now: prev × (time left in current bucket)/period
	// + current, floored, as the reference defines it.
	SlidingWindowCounter
	// MovingWindow keeps an exact log of hit times (one timestamp per unit
	// of cost) in a ring of at most Amount entries; Amount is bounded by
	// MaxMovingWindowAmount.
	MovingWindow
	// TokenBucket is GCRA: Amount is the burst and tokens refill evenly over
	// the period (one every Period/Amount, tracked exactly, without rounding).
	TokenBucket
	// Tally is a plain count with an expiry, the counter of a storage such
	// as the reference's Redis one: every cost is added (Amount only bounds
	// the count, so a tally meant to count everything takes a huge Amount),
	// the count expires Period after the hit that started it, and a tally
	// is named by its Scope alone (see Counter).
	Tally
	// ElasticTally is Tally whose every hit pushes the expiry to Period
	// after it. A key's Tally and ElasticTally of one scope are the same
	// count: the strategy of a hit only says how it moves the expiry.
	ElasticTally
)

// MaxMovingWindowAmount bounds the Amount of a MovingWindow counter, because
// the moving window stores one 8-byte timestamp per request it admits (up to
// 32 KiB per counter). Larger limits are refused by Counter.Validate; use
// SlidingWindowCounter for them.
const MaxMovingWindowAmount = 4096

// MaxScopeLen bounds the length in bytes of a Counter's Scope. Scopes are
// kept with every counter (and interned), and a node's API lets clients name
// them, so their size must be bounded like any other client input.
const MaxScopeLen = 256

// MaxCountersPerCheck bounds the counters of one Store.Check, so a check
// stays a short critical section.
const MaxCountersPerCheck = 32

// RetryAfter value when the check can never be allowed: its cost exceeds the
// limit's Amount (including any cost > 0 against an Amount of 0). Callers
// answering HTTP should deny without suggesting a retry.
const RetryNever = time.Duration(1<<63 - 1)

// Errors returned (wrapped, with details) by Store.Check and Counter.Validate;
// test with errors.Is.
var (
	ErrInvalidCost     = errors.New("bucket: invalid cost")
	ErrNoCounters      = errors.New("bucket: no counters")
	ErrTooManyCounters = errors.New("bucket: too many counters")
	ErrInvalidCounter  = errors.New("bucket: invalid counter")
)

// ParseStrategy parses a strategy name: "fixed-window",
// "sliding-window-counter", "moving-window" or "token-bucket" (ASCII case and
// surrounding spaces ignored). "" is FixedWindow, the reference's default.
func ParseStrategy(s string) (Strategy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "fixed-window":
		return FixedWindow, nil
	case "sliding-window-counter":
		return SlidingWindowCounter, nil
	case "moving-window":
		return MovingWindow, nil
	case "token-bucket":
		return TokenBucket, nil
	}
	return 0, errors.New("bucket: unknown strategy " + quote(s) +
		"; expected fixed-window, sliding-window-counter, moving-window or token-bucket")
}

// String returns the name ParseStrategy accepts, or "Strategy(N)" for an
// unknown value.
func (s Strategy) String() string {
	switch s {
	case FixedWindow:
		return "fixed-window"
	case SlidingWindowCounter:
		return "sliding-window-counter"
	case MovingWindow:
		return "moving-window"
	case TokenBucket:
		return "token-bucket"
	case Tally:
		return "tally"
	case ElasticTally:
		return "elastic-tally"
	}
	return "Strategy(" + strconv.Itoa(int(s)) + ")"
}

// Counter names one counter inside a routing key's entry. Its identity is the
// whole value, Scope+Limit+Strategy: a check naming a changed limit (the user
// edited the config) reaches a fresh counter, and the old one expires and is
// swept. The reference behaves the same way (its storage key includes amount
// and period). A tally (Tally, ElasticTally) is the exception: its identity
// is its Scope alone, as a storage key holds one count whatever expiry each
// increment names, so a peek can read it without knowing its expiry. The
// zero value has no period and is invalid.
type Counter struct {
	Scope    string   // e.g. "GET /products", "shared:products"; "" is a valid scope
	Limit    Limit    // the quota
	Strategy Strategy // the algorithm
}

// Validate reports why c cannot be checked: an unknown strategy, a period
// that is not positive or exceeds MaxPeriod, a negative amount, a scope
// longer than MaxScopeLen, or a moving-window amount above
// MaxMovingWindowAmount. Errors wrap ErrInvalidCounter.
func (c Counter) Validate() error {
	switch {
	case c.Strategy > ElasticTally:
		return c.invalid("unknown strategy " + c.Strategy.String())
	case c.Limit.Period <= 0:
		return c.invalid("period " + c.Limit.Period.String() + " must be positive")
	case c.Limit.Period > MaxPeriod:
		return c.invalid("period " + c.Limit.Period.String() + " exceeds the maximum of 10 years (MaxPeriod)")
	case c.Limit.Amount < 0:
		return c.invalid("amount " + strconv.FormatInt(c.Limit.Amount, 10) + " is negative")
	case len(c.Scope) > MaxScopeLen:
		return c.invalid("the scope is " + strconv.Itoa(len(c.Scope)) + " bytes long, at most " +
			strconv.Itoa(MaxScopeLen) + " (MaxScopeLen)")
	case c.Strategy == MovingWindow && c.Limit.Amount > MaxMovingWindowAmount:
		return c.invalid("moving-window stores one timestamp per request, so its amount is bounded by " +
			strconv.Itoa(MaxMovingWindowAmount) + "; got " + strconv.FormatInt(c.Limit.Amount, 10) +
			" (use sliding-window-counter)")
	}
	return nil
}

// valid is the hot path's inlinable form of Validate() == nil.
func (c *Counter) valid() bool {
	return c.Strategy <= ElasticTally && c.Limit.Period > 0 && c.Limit.Period <= MaxPeriod && len(c.Scope) <= MaxScopeLen &&
		c.Limit.Amount >= 0 && (c.Strategy != MovingWindow || c.Limit.Amount <= MaxMovingWindowAmount)
}

// same is c == *o, comparing the cheap fields before the scope; tallies
// compare their scopes only (see Counter).
func (c *Counter) same(o *Counter) bool {
	if c.Strategy >= Tally || o.Strategy >= Tally {
		return c.Strategy >= Tally && o.Strategy >= Tally && c.Scope == o.Scope
	}
	return c.Limit == o.Limit && c.Strategy == o.Strategy && c.Scope == o.Scope
}

// IsTally reports whether s is Tally or ElasticTally.
func (s Strategy) IsTally() bool { return s == Tally || s == ElasticTally }

func (c Counter) invalid(why string) error {
	return &counterError{scope: clip(c.Scope), scopeLen: len(c.Scope), why: why}
}

// counterError wraps ErrInvalidCounter with the scope (at most MaxQuoted
// bytes of it) and the reason.
type counterError struct {
	scope    string
	scopeLen int
	why      string
}

func (e *counterError) Error() string {
	return "bucket: invalid counter " + quoteLen(e.scope, e.scopeLen) + ": " + e.why
}

func (e *counterError) Unwrap() error { return ErrInvalidCounter }

// Status describes one counter after a check.
type Status struct {
	Limit     Limit // the counter's limit
	Remaining int64 // quota left after this check (what a cost-1 caller could still use)
	// Reset is when the quota is whole again (Remaining == Amount), assuming
	// no further hits; it equals now when it already is.
	Reset time.Time
	// RetryAfter is how long until this check's cost would be allowed: 0
	// when it was allowed (or when this limit alone would allow it but
	// another denied the check), RetryNever when the cost exceeds Amount.
	RetryAfter time.Duration
}
