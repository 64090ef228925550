// Package chaos is stockd's fault harness (issue 8): it builds the stockd
// binary, starts a cluster of real processes on 127.0.0.1, routes every
// directed peer link (raft and peer gRPC, A->B separately) through an
// in-process TCP proxy it controls (stockd's test-only --dial-map), runs a
// workload of concurrent clients while nemeses kill, pause, partition and
// heal, and then checks the recorded history: no oversell (I1), no lost
// acknowledgement (I2), converged state digests (I4), monotonic local reads
// (I5) and linearizability of single-SKU operations with porcupine.
//
// Each checker is shown to catch what it claims on fabricated histories
// (check_test.go) and on stockd's deliberately broken builds
// (broken_test.go: the stockd_broken_stale_read, stockd_broken_idempotency
// and stockd_broken_clock_expiry build tags, each a constant switch in the
// package it breaks, false in every real build).
//
// It imports only the public API (api/...), grpc and porcupine: it judges
// stockd from the outside, as a client would. Every process, proxy and
// folder a test starts is removed in t.Cleanup.
package chaos
