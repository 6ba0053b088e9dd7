package bucket

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ratemesh/ratemesh/internal/textcut"
)

// MaxQuoted bounds how much client input an error message quotes: at most
// this many bytes of the input, and at most this many bytes of escaped text,
// followed by "…" and the input's length when it was cut. Errors may be
// cached, logged and sent back to the client, so one quoting a megabyte of
// input (escaping makes a byte up to four) multiplies what a hostile client
// sends.
const MaxQuoted = 40

// maxQuotedToken bounds the token a ParseError quotes in its message next to
// the input's prefix ("found "…"").
const maxQuotedToken = 16

// quotePrefix quotes the longest prefix of s, cut at a rune boundary, that is
// at most max bytes both before and after escaping; cut reports whether it
// is shorter than s.
func quotePrefix(s string, max int) (q string, cut bool) {
	k := textcut.At(s, max)
	for {
		q = strconv.Quote(s[:k])
		if len(q)-2 <= max || k == 0 {
			return q, k < len(s)
		}
		_, n := utf8.DecodeLastRuneInString(s[:k])
		k -= n
	}
}

// quote quotes at most MaxQuoted bytes of s and, when s is longer, says so
// with "…" and its length: `"abc"…(1048576 bytes)`.
func quote(s string) string {
	return quoteLen(s, len(s))
}

// quoteLen is quote for a prefix s of an input n bytes long.
func quoteLen(s string, n int) string {
	q, cut := quotePrefix(s, MaxQuoted)
	if !cut && n <= len(s) {
		return q
	}
	return q + "…(" + strconv.Itoa(n) + " bytes)"
}

// clip returns a copy of at most MaxQuoted bytes of s, for an error to keep
// without pinning the caller's (possibly huge) string.
func clip(s string) string {
	return strings.Clone(s[:textcut.At(s, MaxQuoted)])
}
