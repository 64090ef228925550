//go:build stockd_broken_clock_expiry

package store

import "time"

// brokenClockExpiry, set only by the stockd_broken_clock_expiry build tag,
// makes Apply decide hold expiry by each node's own clock at apply time
// instead of the leader-stamped entry time. That breaks I4 on purpose: a
// replica that applies an entry later than the leader (paused, slow,
// catching up) expires a hold the leader still saw held. It exists only so
// bench/chaos can show that its convergence and acknowledgement checkers
// catch the bug (TestBroken*); never ship a build with the tag. This file is
// the one place store reads a clock, and only under the tag; the normal
// build stays a pure function of the log (TestI4StoreImportsFollowStyle
// checks the files the normal build compiles).
const brokenClockExpiry = true

// localClock is this node's wall clock, Unix nanoseconds.
func localClock() Timestamp { return Timestamp(time.Now().UnixNano()) }
