//go:build stockd_broken_idempotency

package store

// brokenIdempotency, set only by the stockd_broken_idempotency build tag,
// switches off the I3 retry check: a Reserve whose (channel, reservation id)
// was already decided is applied again instead of answered with the first
// answer. It exists only so bench/chaos can show that its idempotency
// checkers catch the bug (TestBroken*); never ship a build with the tag.
const brokenIdempotency = true
