//go:build stockd_broken_clock_expiry

package cluster

import "time"

// brokenClockExpiry, set only by the stockd_broken_clock_expiry build tag,
// makes every replica expire holds by its own clock: before each entry the
// fsm applies an empty entry stamped with this node's time, so a replica
// that applies later than the leader (paused, slow, catching up) expires a
// hold the leader still saw held. That breaks I4 on purpose, so bench/chaos
// can show its convergence and acknowledgement checkers catch it
// (TestBroken*); never ship a build with the tag. store itself stays a pure
// function of the log in every build.
const brokenClockExpiry = true

// localClock is this node's wall clock, Unix nanoseconds.
func localClock() int64 { return time.Now().UnixNano() }
