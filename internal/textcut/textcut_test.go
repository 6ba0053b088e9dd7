package textcut

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPrefix(t *testing.T) {
	e := strings.Repeat("é", 10) // 2 bytes each
	for _, c := range []struct {
		s    string
		max  int
		want string
	}{
		{"abc", 5, "abc"},
		{"abc", 3, "abc"},
		{"abc", 2, "ab"},
		{"abc", 0, ""},
		{"abc", -1, ""},
		{e, 5, "éé"},
		{e, 4, "éé"},
		{"a€b", 3, "a"},  // € is 3 bytes
		{"a€b", 4, "a€"}, // whole
		{"😀x", 3, ""},    // 4-byte character
		{"\x80\x80\x80\x80\x80\x80", 5, "\x80\x80"}, // stray continuation bytes: moves back at most 3
	} {
		if got := Prefix(c.s, c.max); got != c.want {
			t.Errorf("Prefix(%q, %d) = %q, want %q", c.s, c.max, got, c.want)
		}
	}
}

func TestValid(t *testing.T) {
	for _, c := range []struct {
		s    string
		max  int
		want string
	}{
		{"ab\xffcd", 10, "ab\uFFFDcd"},
		{"ab\xffcd", 3, "ab"}, // U+FFFD is 3 bytes: it does not fit after "ab"
		{strings.Repeat("é", 200), 223, strings.Repeat("é", 111)},
	} {
		got := Valid(c.s, c.max)
		if got != c.want || !utf8.ValidString(got) {
			t.Errorf("Valid(%q, %d) = %q, want %q", c.s, c.max, got, c.want)
		}
	}
}

// FuzzValid: whatever the input, the result is valid UTF-8 of at most max
// bytes and a prefix of the input made valid.
func FuzzValid(f *testing.F) {
	f.Add("ééé", 3)
	f.Add("\xff\x80€", 2)
	f.Fuzz(func(t *testing.T, s string, max int) {
		max = max % 300
		got := Valid(s, max)
		if !utf8.ValidString(got) || len(got) > max && max >= 0 || max <= 0 && got != "" {
			t.Fatalf("Valid(%q, %d) = %q", s, max, got)
		}
		if !strings.HasPrefix(strings.ToValidUTF8(s, "\uFFFD"), got) {
			t.Fatalf("Valid(%q, %d) = %q is not a prefix", s, max, got)
		}
	})
}
