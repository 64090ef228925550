//go:build stockd_broken_stale_read

package server

// brokenStaleRead, set only by the stockd_broken_stale_read build tag, makes
// a linearizable read skip the read barrier (the leader's read index and its
// quorum check) and answer from this node's memory, like a local read. It
// exists only so bench/chaos can show that its linearizability checker
// catches a stale read served as linearizable (TestBroken*); never ship a
// build with the tag.
const brokenStaleRead = true
