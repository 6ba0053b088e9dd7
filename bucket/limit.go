package bucket

import (
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limit is a quota: Amount requests per Period. The zero value is not a
// usable limit (its Period is 0); build limits with Parse or a literal.
type Limit struct {
	Amount int64         // requests allowed per Period; 0 = deny everything
	Period time.Duration // > 0 and <= MaxPeriod
}

// MaxPeriod is the longest Period a Limit may have: 10 years of 360 days.
// The bound keeps every instant the algorithms compute (a window end, twice a
// period ahead for the sliding window) far inside int64 nanoseconds.
const MaxPeriod = 10 * 360 * 24 * time.Hour

// DefaultMaxClientPeriod is the longest period a limit sent by a client
// (rather than configured by the operator) should have: a client choosing
// ten-year windows makes the owner keep its counters for ten years.
const DefaultMaxClientPeriod = 24 * time.Hour

// ErrPeriodTooLong is wrapped by Limit.ValidatePeriod's error.
var ErrPeriodTooLong = errors.New("bucket: period too long")

// ValidatePeriod reports a period longer than max (max <= 0 means
// DefaultMaxClientPeriod), wrapping ErrPeriodTooLong. A node applies it to
// limits its API clients supply; the operator's configured limits are only
// bound by MaxPeriod. Other defects of the limit are Counter.Validate's.
func (l Limit) ValidatePeriod(max time.Duration) error {
	if max <= 0 {
		max = DefaultMaxClientPeriod
	}
	if l.Period <= max {
		return nil
	}
	return fmt.Errorf("%w: limit %q has a period of %v, at most %v is allowed", ErrPeriodTooLong, l.String(), l.Period, max)
}

// numUnits is the number of grammar units; unit(i) lists them smallest first.
const numUnits = 6

// unit returns the name and length of the i-th grammar unit. Month and year
// are 30 and 360 days, as in the reference (Flask-Limiter's limits library).
// A switch rather than a table keeps the package free of mutable globals.
func unit(i int) (string, time.Duration) {
	switch i {
	case 0:
		return "second", time.Second
	case 1:
		return "minute", time.Minute
	case 2:
		return "hour", time.Hour
	case 3:
		return "day", 24 * time.Hour
	case 4:
		return "month", 30 * 24 * time.Hour
	default:
		return "year", 360 * 24 * time.Hour
	}
}

// String renders l as the reference does, "<amount> per <multiples> <unit>",
// with the largest unit that divides the period: "10 per 1 minute",
// "1 per 2 hour". Parse reads the result back to the same Limit. A period that
// is not a whole number of seconds cannot be written in the grammar; it is
// rendered with time.Duration's format ("1 per 1.5s") and does not parse.
func (l Limit) String() string {
	b := make([]byte, 0, 32)
	b = strconv.AppendInt(b, l.Amount, 10)
	b = append(b, " per "...)
	if l.Period > 0 && l.Period%time.Second == 0 {
		for i := numUnits - 1; i >= 0; i-- {
			name, d := unit(i)
			if l.Period%d == 0 {
				b = strconv.AppendInt(b, int64(l.Period/d), 10)
				b = append(b, ' ')
				b = append(b, name...)
				return string(b)
			}
		}
	}
	return string(append(b, l.Period.String()...))
}

// ParseError reports a limit string that Parse rejects. It keeps a bounded
// copy of the input, so an error kept in a cache or a log does not pin a
// large string a client sent.
type ParseError struct {
	Input  string // at most MaxQuoted bytes of the string given to Parse (a copy)
	Len    int    // the length in bytes of the whole string given to Parse
	Offset int    // byte offset in the whole string where parsing stopped
	Msg    string // what was found and what was expected instead
}

// Error quotes the input, at most MaxQuoted bytes of it, and says what was
// expected.
func (e *ParseError) Error() string {
	return "bucket: invalid limit " + quoteLen(e.Input, e.Len) + ": " + e.Msg
}

// Parse reads limits written in the language of Flask-Limiter's limits
// library, so users can paste their strings:
//
//	limits := limit { sep limit }      sep := ";" | "," | "|"
//	limit  := N ( "per" | "/" ) [M] unit ["s"]
//	unit   := second | minute | hour | day | month | year
//
// N and M are ASCII digits, words are case-insensitive, and spaces are
// optional around every token ("5per minute", " 1 / Second ", "500/7days").
// A month is 30 days and a year 360 days. "0 per second" is valid and denies
// everything. Where the reference is lax we refuse: M = 0 (the reference
// silently turns it into 1), numbers that overflow int64, and periods longer
// than MaxPeriod. Like the reference's Python regular expression, spaces
// include Unicode white space, and case-insensitive matching also equates
// "ſ" with "s" and "ı", "İ" with "i". Errors are *ParseError.
func Parse(s string) ([]Limit, error) {
	p := parser{s: s}
	p.skipSpace()
	if p.i == len(s) {
		return nil, p.fail(`empty; expected a limit such as "10 per minute" or "10/minute; 200/day"`)
	}
	var out []Limit
	for {
		l, err := p.limit()
		if err != nil {
			return nil, err
		}
		out = append(out, l)
		if p.i == len(s) {
			return out, nil
		}
		switch c := s[p.i]; c {
		case ';', ',', '|':
			p.i++
			p.skipSpace()
			if p.i == len(s) {
				return nil, p.fail("trailing " + strconv.QuoteRune(rune(c)) + "; expected another limit after it")
			}
		default:
			return nil, p.fail("found " + p.found() + "; expected \";\", \",\" or \"|\" between limits, or the end")
		}
	}
}

// parser is a hand-written scanner over the limit grammar. It works on bytes
// and decodes UTF-8 only for non-ASCII whitespace and case folding.
type parser struct {
	s string
	i int
}

func (p *parser) fail(msg string) error {
	return &ParseError{Input: clip(p.s), Len: len(p.s), Offset: p.i, Msg: msg + " (at byte " + strconv.Itoa(p.i) + ")"}
}

// found quotes the token at the current position for an error message, at
// most maxQuotedToken bytes of it ("…" marks a cut): the message already
// quotes the input's prefix, so this is only a pointer into it.
func (p *parser) found() string {
	if p.i >= len(p.s) {
		return "the end of the string"
	}
	j := p.i
	for j < len(p.s) && j-p.i <= maxQuotedToken {
		c := p.s[j]
		if c == ';' || c == ',' || c == '|' || (j > p.i && isSpaceByte(c)) {
			break
		}
		j++
	}
	q, cut := quotePrefix(p.s[p.i:j], maxQuotedToken)
	if cut {
		q += "…"
	}
	return q
}

// isSpaceByte reports ASCII whitespace as Python's str.isspace does, which
// includes the separators 0x1C-0x1F.
func isSpaceByte(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)
}

// skipSpace skips whitespace the reference's \s matches (Unicode-aware).
func (p *parser) skipSpace() {
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c < utf8.RuneSelf {
			if !isSpaceByte(c) {
				return
			}
			p.i++
			continue
		}
		r, n := utf8.DecodeRuneInString(p.s[p.i:])
		if r == utf8.RuneError || !unicode.IsSpace(r) {
			return
		}
		p.i += n
	}
}

// foldsTo reports whether r matches the lower-case ASCII letter w under the
// reference's case-insensitive matching (Python re.IGNORECASE), which also
// equates long s with s and dotless/dotted i with i.
func foldsTo(r rune, w byte) bool {
	switch {
	case r == rune(w) || r == rune(w-'a'+'A'):
		return true
	case w == 's':
		return r == 'ſ'
	case w == 'i':
		return r == 'ı' || r == 'İ'
	}
	return false
}

// word reports how many bytes at the current position spell w (lower-case
// ASCII) case-insensitively, without consuming them.
func (p *parser) word(w string) (int, bool) {
	j := p.i
	for k := 0; k < len(w); k++ {
		if j >= len(p.s) {
			return 0, false
		}
		r, n := rune(p.s[j]), 1
		if r >= utf8.RuneSelf {
			r, n = utf8.DecodeRuneInString(p.s[j:])
		}
		if !foldsTo(r, w[k]) {
			return 0, false
		}
		j += n
	}
	return j - p.i, true
}

func (p *parser) digit() bool {
	return p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9'
}

// number consumes ASCII digits; what names the number in errors.
func (p *parser) number(what string) (int64, error) {
	var v int64
	for p.digit() {
		d := int64(p.s[p.i] - '0')
		if v > (1<<63-1-d)/10 {
			return 0, p.fail("the " + what + " is too large (at most " + strconv.FormatInt(1<<63-1, 10) + ")")
		}
		v = v*10 + d
		p.i++
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		return 0, p.fail("found \".\": the " + what + " must be a whole number")
	}
	return v, nil
}

// limit parses one "N per [M] unit" and the whitespace after it.
func (p *parser) limit() (Limit, error) {
	p.skipSpace()
	if !p.digit() {
		msg := "found " + p.found() + "; expected the number of requests, as in \"10 per minute\""
		if p.i < len(p.s) && (p.s[p.i] == '-' || p.s[p.i] == '+') {
			msg = "found a sign; the number of requests must be a whole number >= 0, as in \"10 per minute\""
		}
		return Limit{}, p.fail(msg)
	}
	amount, err := p.number("number of requests")
	if err != nil {
		return Limit{}, err
	}
	p.skipSpace()
	if p.i < len(p.s) && p.s[p.i] == '/' {
		p.i++
	} else if n, ok := p.word("per"); ok {
		p.i += n
	} else {
		return Limit{}, p.fail("found " + p.found() + " after " + strconv.FormatInt(amount, 10) + "; expected \"per\" or \"/\" and a unit, as in \"10 per minute\"")
	}
	p.skipSpace()
	multiples := int64(1)
	if p.digit() {
		if multiples, err = p.number("number of units"); err != nil {
			return Limit{}, err
		}
		if multiples == 0 {
			return Limit{}, p.fail("the number of units is 0; expected at least 1, as in \"5/2 minutes\"")
		}
		p.skipSpace()
	}
	for i := 0; i < numUnits; i++ {
		name, d := unit(i)
		n, ok := p.word(name)
		if !ok {
			continue
		}
		start := p.i
		p.i += n
		if n, ok := p.word("s"); ok {
			p.i += n
		}
		if !p.atBoundary() {
			return Limit{}, p.fail("found " + p.found() + " after " + strconv.Quote(p.s[start:p.i]) +
				"; expected \";\", \",\", \"|\" or the end")
		}
		if multiples > int64(MaxPeriod/d) {
			p.i = start
			return Limit{}, p.fail("the period is longer than the maximum of 10 years")
		}
		p.skipSpace()
		return Limit{Amount: amount, Period: time.Duration(multiples) * d}, nil
	}
	return Limit{}, p.fail("found " + p.found() + "; expected a unit: second, minute, hour, day, month or year")
}

// atBoundary reports whether the current position ends a limit: the end,
// whitespace or a separator.
func (p *parser) atBoundary() bool {
	if p.i == len(p.s) {
		return true
	}
	switch c := p.s[p.i]; {
	case c == ';' || c == ',' || c == '|' || isSpaceByte(c):
		return true
	case c < utf8.RuneSelf:
		return false
	}
	r, _ := utf8.DecodeRuneInString(p.s[p.i:])
	return r != utf8.RuneError && unicode.IsSpace(r)
}
