//go:build !stockd_broken_idempotency

package store

// brokenIdempotency is false in every real build: see broken_idempotency.go,
// which sets it under the stockd_broken_idempotency tag for bench/chaos's
// self-test. Being a constant, the checks of it compile away.
const brokenIdempotency = false
