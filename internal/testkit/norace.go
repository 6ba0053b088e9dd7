//go:build !race

package testkit

// RaceEnabled reports whether the race detector is on: allocation counts
// and timings differ under it.
const RaceEnabled = false
