//go:build !stockd_broken_clock_expiry

package store

// brokenClockExpiry is false in every real build: see broken_clock_expiry.go,
// which sets it under the stockd_broken_clock_expiry tag for bench/chaos's
// self-test. Being a constant, the checks of it compile away.
const brokenClockExpiry = false

// localClock is never called in a real build (brokenClockExpiry is false);
// store reads no clock.
func localClock() Timestamp {
	panic("store: localClock called without the stockd_broken_clock_expiry tag")
}
