// Package textcut cuts strings to a length in bytes without splitting a
// UTF-8 character: a label, key or message cut in the middle of one is
// invalid UTF-8, which Prometheus refuses with a panic and JSON encoders
// replace with U+FFFD.
package textcut

import (
	"strings"
	"unicode/utf8"
)

// At returns min(len(s), max), moved back (by less than utf8.UTFMax
// bytes) so as not to cut a character in half. In invalid UTF-8 it moves
// back at most utf8.UTFMax-1 bytes, so a run of stray continuation bytes
// cannot make it scan far.
func At(s string, max int) int {
	if max <= 0 {
		return 0
	}
	if len(s) <= max {
		return len(s)
	}
	k := max
	for k > 0 && k > max-utf8.UTFMax+1 && !utf8.RuneStart(s[k]) {
		k--
	}
	return k
}

// Prefix is the longest prefix of s of at most max bytes that does not
// end inside a character.
func Prefix(s string, max int) string { return s[:At(s, max)] }

// Valid is s with every invalid byte sequence replaced by U+FFFD and cut
// to at most max bytes on a character boundary: always valid UTF-8, for
// names a client chose that end up in metric labels.
func Valid(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return Prefix(s, max)
}
