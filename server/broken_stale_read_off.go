//go:build !stockd_broken_stale_read

package server

// brokenStaleRead is false in every real build: see broken_stale_read.go,
// which sets it under the stockd_broken_stale_read tag for bench/chaos's
// self-test. Being a constant, the check of it compiles away.
const brokenStaleRead = false
