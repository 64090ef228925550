package cluster

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// Sentinel errors. Every error a Node returns from Propose, WaitApplied or
// Snapshot because of the cluster's state unwraps to one of them (callers
// test with errors.Is); raft's own errors never cross the package boundary
// unwrapped as the only cause.
var (
	// ErrNotLeader means this node is not the leader, or lost leadership while
	// the command was in flight (its outcome is then unknown: a retry with
	// the same request id is safe). Another node leads.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader means no leader is known right now (an election is under way).
	ErrNoLeader = errors.New("no leader")
	// ErrStopped means the node is not started or is shutting down.
	ErrStopped = errors.New("node stopped")
	// ErrQueueFull means the proposal queue is full or raft did not accept the
	// entry within Config.ApplyTimeout: the caller should back off.
	ErrQueueFull = errors.New("proposal queue full")
	// ErrFeatureNotEnabled means the command needs a log feature version that
	// some voter's build does not apply yet (a rolling upgrade is under way);
	// it was not proposed.
	ErrFeatureNotEnabled = errors.New("feature not enabled on every voter")
)

// translate maps an error from raft to this package's sentinels, wrapped with
// the operation op and raft's own error for the log. Errors raft did not
// produce are wrapped with op only.
func translate(op string, err error) error {
	var sentinel error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader),
		errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrAbortedByRestore):
		sentinel = ErrNotLeader
	case errors.Is(err, raft.ErrRaftShutdown),
		errors.Is(err, raft.ErrTransportShutdown),
		errors.Is(err, raft.ErrPipelineShutdown):
		sentinel = ErrStopped
	case errors.Is(err, raft.ErrEnqueueTimeout):
		sentinel = ErrQueueFull
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %w", op, sentinel, err)
}
