// Package testkit holds test helpers that need nothing of ratemesh but its
// bucket and ring packages: polling with a deadline, a paced load generator that counts what a
// cluster admits, and keys placed on a chosen member, counters from limit strings. Packages below the
// root (cluster) and above it (the root, httpapi, demo) share it.
package testkit

import (
	"strconv"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/ring"
)

// Eventually polls cond every 5 ms until it holds, or fails the test with
// what once within has passed. Each why, read at that moment, is appended
// to the message: cond can leave there why it last failed. It is the one
// wait of the tests: none sleeps for a fixed time.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool, why ...*string) {
	t.Helper()
	if Poll(within, cond) {
		return
	}
	for _, w := range why {
		what += ": " + *w
	}
	t.Fatalf("after %v: %s", within, what)
}

// SkipInShort skips t in -short mode, saying why it is slow (several real
// nodes, a browser, seconds of waiting): the quick run keeps the fast
// tests, and the full suite runs them all.
func SkipInShort(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip(why + ": runs without -short")
	}
}

// Poll calls cond every 5 ms until it holds, and reports whether it did
// before within passed: Eventually for a caller that goes on when it
// does not (a retry, a best effort).
func Poll(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// KeyOwnedBy finds a key that a ring of the named members (default ring
// config) places on want.
func KeyOwnedBy(t testing.TB, names []string, want string) string {
	t.Helper()
	ms := make([]ring.Member, len(names))
	for i, n := range names {
		ms[i] = ring.Member{Name: n}
	}
	r := ring.New(ms, ring.Config{})
	for i := 0; i < 100000; i++ {
		key := "apikey:k" + strconv.Itoa(i)
		if o, _ := r.Owner(key); o.Name == want {
			return key
		}
	}
	t.Fatalf("no key owned by %s", want)
	return ""
}

// Counters parses limits (bucket.Parse syntax, e.g. "5 per minute") into
// one counter per limit in scope, failing the test if they do not parse.
func Counters(t testing.TB, scope, limits string) []bucket.Counter {
	t.Helper()
	ls, err := bucket.Parse(limits)
	if err != nil {
		t.Fatal(err)
	}
	cs := make([]bucket.Counter, len(ls))
	for i, l := range ls {
		cs[i] = bucket.Counter{Scope: scope, Limit: l}
	}
	return cs
}
