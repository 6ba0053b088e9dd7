package bucket

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	day   = 24 * time.Hour
	month = 30 * day
	year  = 360 * day
)

// TestParseReferenceSingles is the reference suite's test_singles: each
// unit, spelled three ways.
func TestParseReferenceSingles(t *testing.T) {
	units := []struct {
		name string
		d    time.Duration
	}{{"second", time.Second}, {"minute", time.Minute}, {"hour", time.Hour}, {"day", day}, {"month", month}, {"year", year}}
	for _, u := range units {
		title := strings.ToUpper(u.name[:1]) + u.name[1:]
		for _, s := range []string{"1 per " + u.name, "1/" + strings.ToUpper(u.name), "1 / " + title, "1/" + title} {
			got, err := Parse(s)
			want := []Limit{{Amount: 1, Period: u.d}}
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("Parse(%q) = %v, %v; want %v", s, got, err, want)
			}
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want []Limit
	}{
		{"1 per 3 hour", []Limit{{1, 3 * time.Hour}}},
		{"1/2 day", []Limit{{1, 48 * time.Hour}}},
		{"1 per 3 hour; 1 per second", []Limit{{1, 3 * time.Hour}, {1, time.Second}}},
		{"1 per 3 hour, 1 per second", []Limit{{1, 3 * time.Hour}, {1, time.Second}}},
		{"1 per 3 hour | 1 per second", []Limit{{1, 3 * time.Hour}, {1, time.Second}}},
		{"10 per minute; 200 per day", []Limit{{10, time.Minute}, {200, day}}},
		{"100/day, 500/7days", []Limit{{100, day}, {500, 7 * day}}},
		{"5per minute", []Limit{{5, time.Minute}}},
		{" 1 / Second ", []Limit{{1, time.Second}}},
		{"1per2hours", []Limit{{1, 2 * time.Hour}}},
		{"2 PER 2 MINUTES", []Limit{{2, 2 * time.Minute}}},
		{"10 per 2 seconds", []Limit{{10, 2 * time.Second}}},
		{"0 per second", []Limit{{0, time.Second}}},
		{"007/01 minute", []Limit{{7, time.Minute}}},
		{"1 per month", []Limit{{1, month}}},
		{"1 per years", []Limit{{1, year}}},
		{"1 per 10 year", []Limit{{1, 10 * year}}},
		{"1 per 3600 days", []Limit{{1, 10 * year}}},
		{"\t1\nper\r\vsecond\f", []Limit{{1, time.Second}}},
		{"2/hour,3 per day|4/month", []Limit{{2, time.Hour}, {3, day}, {4, month}}},
		// Python's \s and re.IGNORECASE, which the reference uses, accept
		// Unicode spaces, the long s and the dotless i.
		{"1\u00a0per\u2003ſecond", []Limit{{1, time.Second}}},
		{"1 per mınute", []Limit{{1, time.Minute}}},
		{"9223372036854775807 per second", []Limit{{1<<63 - 1, time.Second}}},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("Parse(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in, want string // want: a fragment of the message saying what was expected
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"meow", `found "meow"; expected the number of requests`},
		{"1 per millenium", `found "millenium"; expected a unit: second, minute, hour, day, month or year`},
		{"1 per second;", `trailing ';'; expected another limit`},
		{"1 per second, ", `trailing ','; expected another limit`},
		{"5", `found the end of the string after 5; expected "per" or "/"`},
		{"-1/minute", "found a sign; the number of requests must be a whole number >= 0"},
		{"+1/minute", "found a sign"},
		{"1.5/minute", `found ".": the number of requests must be a whole number`},
		{"1 per 2.5 minutes", `found ".": the number of units must be a whole number`},
		{"5/0 minute", "the number of units is 0; expected at least 1"},
		{"1 per second;;1 per minute", "expected the number of requests"},
		{";1 per second", "expected the number of requests"},
		{"per second", "expected the number of requests"},
		{"1 per", "found the end of the string; expected a unit"},
		{"1 per second 5", `expected ";", "," or "|" between limits`},
		{"1 per secondss", `found "s" after "seconds"; expected ";", ",", "|" or the end`},
		{"1 per minute5", `found "5" after "minute"`},
		{"1 per 2 3 hours", `found "3"; expected a unit`},
		{"1 per second:;1 per minute", `found ":" after "second"`},
		{"99999999999999999999 per second", "the number of requests is too large"},
		{"1 per 99999999999999999999 second", "the number of units is too large"},
		{"1 per 11 year", "longer than the maximum of 10 years"},
		{"1 per 3601 days", "longer than the maximum of 10 years"},
		{"1 per 9223372036 hours", "longer than the maximum"},
		{"1 per \xff", `found "\xff"; expected a unit`},
		{"１ per second", "expected the number of requests"}, // fullwidth digit: [0-9] is ASCII
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err == nil {
			t.Errorf("Parse(%q) = %v, want an error", tt.in, got)
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Input != tt.in {
			t.Errorf("Parse(%q) error %v is not a *ParseError for the input", tt.in, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, strconv.Quote(tt.in)) || !strings.Contains(msg, tt.want) {
			t.Errorf("Parse(%q) error %q; want it to quote the input and contain %q", tt.in, msg, tt.want)
		}
	}
}

func TestLimitString(t *testing.T) {
	tests := []struct {
		l    Limit
		want string
	}{
		{Limit{10, time.Minute}, "10 per 1 minute"},
		{Limit{1, 2 * time.Hour}, "1 per 2 hour"},
		{Limit{5, 90 * time.Second}, "5 per 90 second"},
		{Limit{500, 7 * day}, "500 per 7 day"},
		{Limit{1, month}, "1 per 1 month"},
		{Limit{1, 2 * month}, "1 per 2 month"},
		{Limit{1, year}, "1 per 1 year"},
		{Limit{0, time.Second}, "0 per 1 second"},
		{Limit{1, 1500 * time.Millisecond}, "1 per 1.5s"},
	}
	for _, tt := range tests {
		if got := tt.l.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.l, got, tt.want)
		}
	}
}

// FuzzParse checks that Parse never panics, that errors quote the input, and
// that every accepted string's String() form parses back to the same limits.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"1 per second", "1/SECOND", " 1 / Second ", "5per minute", "10 per minute; 200 per day",
		"100/day, 500/7days", "1 per 3 hour | 1 per second", "0 per second", "1 per 10 years",
		"", "meow", "1 per millenium", "1 per second;", "5", "-1/minute", "1.5/minute", "5/0 minute",
		"1\u00a0per ſecond", "99999999999999999999/second",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		limits, err := Parse(s)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), quote(s)) || len(err.Error()) > 250 {
				t.Fatalf("Parse(%q) error %v does not quote the input's prefix, or is long", s, err)
			}
			return
		}
		if len(limits) == 0 {
			t.Fatalf("Parse(%q) accepted no limits", s)
		}
		parts := make([]string, len(limits))
		for i, l := range limits {
			if l.Amount < 0 || l.Period <= 0 || l.Period > MaxPeriod || l.Period%time.Second != 0 {
				t.Fatalf("Parse(%q) = invalid limit %#v", s, l)
			}
			parts[i] = l.String()
		}
		back, err := Parse(strings.Join(parts, "; "))
		if err != nil || !slices.Equal(back, limits) {
			t.Fatalf("Parse(%q) = %v, but its String form %q parses to %v, %v", s, limits, strings.Join(parts, "; "), back, err)
		}
	})
}

// TestErrorsQuoteBoundedInput: an error about a huge input quotes at most
// MaxQuoted bytes of it, once, says how long it was, and keeps no reference
// to it, so a cache of errors or an error reply cannot be a multiple of what
// a client sent.
func TestErrorsQuoteBoundedInput(t *testing.T) {
	const mb = 1 << 20
	del := strings.Repeat("\x7f", mb)  // escaping makes each byte four
	cont := strings.Repeat("\x80", mb) // continuation bytes: no rune starts
	s := NewStore(StoreConfig{MaxCountersPerKey: MaxCountersPerCheck})
	for i := 0; i < MaxCountersPerCheck; i++ {
		if _, _, err := s.Check(t0, del, []Counter{{Scope: strconv.Itoa(i), Limit: Limit{1, time.Hour}}}, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	_, _, keyErr := s.Check(t0, del, []Counter{{Scope: "one more", Limit: Limit{1, time.Hour}}}, 1, nil)
	_, parseDel := Parse(del)
	_, parseCont := Parse(cont)
	_, parseTail := Parse("1 per second; " + del)
	_, parseUnit := Parse("1 per " + cont)
	_, stratErr := ParseStrategy(del)
	tests := []struct {
		name string
		err  error
		is   error
	}{
		{"Parse(1 MB of DEL)", parseDel, nil},
		{"Parse(1 MB of continuation bytes)", parseCont, nil},
		{"Parse(a limit, then 1 MB)", parseTail, nil},
		{"Parse(a unit of 1 MB)", parseUnit, nil},
		{"ParseStrategy", stratErr, nil},
		{"Counter.Validate", Counter{Scope: del, Limit: Limit{1, time.Second}}.Validate(), ErrInvalidCounter},
		{"Check, too many counters", keyErr, ErrTooManyCounters},
	}
	for _, tt := range tests {
		if tt.err == nil || (tt.is != nil && !errors.Is(tt.err, tt.is)) {
			t.Errorf("%s: err = %v, want an error wrapping %v", tt.name, tt.err, tt.is)
			continue
		}
		msg := tt.err.Error()
		if len(msg) >= 200 || strings.Count(msg, `\x7f`)+strings.Count(msg, `\x80`) > (MaxQuoted+maxQuotedToken)/4 {
			t.Errorf("%s: %d-byte error %q; want under 200 bytes quoting at most %d input bytes", tt.name, len(msg), msg, MaxQuoted)
		}
		if tt.name != "Parse(a limit, then 1 MB)" && tt.name != "Parse(a unit of 1 MB)" && !strings.Contains(msg, "…("+strconv.Itoa(mb)) {
			t.Errorf("%s: error %q does not give the input's length", tt.name, msg)
		}
		var pe *ParseError
		if errors.As(tt.err, &pe) && (len(pe.Input) > MaxQuoted || pe.Len < mb) {
			t.Errorf("%s: ParseError keeps %d bytes of input, Len %d; want at most %d, the whole length", tt.name, len(pe.Input), pe.Len, MaxQuoted)
		}
	}
}

// TestQuote pins the cut: at a rune boundary, within MaxQuoted bytes both
// of input and of escaped text.
func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"short", `"short"`},
		{strings.Repeat("a", MaxQuoted), `"` + strings.Repeat("a", MaxQuoted) + `"`},
		{strings.Repeat("a", MaxQuoted+1), `"` + strings.Repeat("a", MaxQuoted) + `"…(41 bytes)`},
		{strings.Repeat("é", 30), `"` + strings.Repeat("é", 20) + `"…(60 bytes)`},
		{strings.Repeat("a", 39) + "é", `"` + strings.Repeat("a", 39) + `"…(41 bytes)`},
		{strings.Repeat("\x7f", 11), `"` + strings.Repeat(`\x7f`, 10) + `"…(11 bytes)`},
		{"", `""`},
	}
	for _, tt := range tests {
		if got := quote(tt.in); got != tt.want {
			t.Errorf("quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestValidatePeriod: client limits are bound by the given maximum or, for
// max <= 0, by DefaultMaxClientPeriod.
func TestValidatePeriod(t *testing.T) {
	tests := []struct {
		l    Limit
		max  time.Duration
		want error
	}{
		{Limit{1, 24 * time.Hour}, 0, nil},
		{Limit{1, 24*time.Hour + time.Second}, 0, ErrPeriodTooLong},
		{Limit{1, MaxPeriod}, -1, ErrPeriodTooLong},
		{Limit{1, time.Hour}, time.Minute, ErrPeriodTooLong},
		{Limit{1, time.Minute}, time.Minute, nil},
	}
	for _, tt := range tests {
		err := tt.l.ValidatePeriod(tt.max)
		if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
			t.Errorf("%v.ValidatePeriod(%v) = %v, want %v", tt.l, tt.max, err, tt.want)
		}
	}
	err := Limit{5, 2 * 24 * time.Hour}.ValidatePeriod(0)
	if want := `bucket: period too long: limit "5 per 2 day" has a period of 48h0m0s, at most 24h0m0s is allowed`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}
