//go:build !stockd_broken_clock_expiry

package cluster

// brokenClockExpiry is false in every real build: see broken_clock_expiry.go,
// set under the stockd_broken_clock_expiry tag for bench/chaos's self-test.
// Being a constant, the check of it compiles away.
const brokenClockExpiry = false

// localClock is never called in a real build.
func localClock() int64 {
	panic("cluster: localClock called without the stockd_broken_clock_expiry tag")
}
