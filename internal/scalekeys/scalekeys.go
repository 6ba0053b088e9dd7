// Package scalekeys is shared by the tests that fill a store with ten
// million client keys: whether to run them, and the keys.
//
// They need a few GiB and tens of seconds, so they run only when the
// environment variable RATEMESH_10M is set: to 1 for ten million keys, or
// to a count of keys.
package scalekeys

import (
	"os"
	"strconv"
	"testing"
)

// Env is the variable that enables the tests.
const Env = "RATEMESH_10M"

// Count returns the number of keys RATEMESH_10M asks for, skipping tb when
// it is unset and failing it when the value is not a count.
func Count(tb testing.TB) int {
	tb.Helper()
	v := os.Getenv(Env)
	if v == "" {
		tb.Skip("set " + Env + "=1 to run (needs a few GiB)")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		tb.Fatalf("%s=%q: want 1 (ten million keys) or a key count", Env, v)
	}
	if n == 1 {
		n = 10_000_000
	}
	return n
}

// Append appends the i-th client key, "ip:10.x.y.z" (i < 2^24).
func Append(buf []byte, i int) []byte {
	buf = append(buf, "ip:10."...)
	buf = strconv.AppendInt(buf, int64(i>>16), 10)
	buf = append(buf, '.')
	buf = strconv.AppendInt(buf, int64(i>>8&255), 10)
	buf = append(buf, '.')
	return strconv.AppendInt(buf, int64(i&255), 10)
}
