package cluster

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestTransferLeadershipRetriesAFailedElection: the follower a transfer
// picks campaigns at once, but its vote requests do not get through (in a
// chaos run they went out on pooled connections a restarted peer had
// closed). The old leader steps down, wins the next election, and must
// transfer again rather than wait for a leader that never comes.
func TestTransferLeadershipRetriesAFailedElection(t *testing.T) {
	c := newMNClusterOn(t, 2, true, nil)
	n1, n2 := c.nodes[0], c.nodes[1]
	waitFor(t, "n1 leads", n1.node.IsLeader)
	r1 := raftOf(n1.node)
	term := r1.CurrentTerm()

	// n2 hears n1 (appends, the transfer's TimeoutNow) but cannot ask it
	// for a vote.
	n2.tr.Disconnect(n1.tr.LocalAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n1.node.TransferLeadership(ctx) }()

	// The first transfer's election fails: n1 leads again at a later term.
	waitFor(t, "n1 to lead again after n2's failed election", func() bool {
		return r1.CurrentTerm() > term && n1.node.IsLeader()
	})
	n2.tr.Connect(n1.tr.LocalAddr(), n1.tr)
	if err := <-done; err != nil {
		t.Fatalf("TransferLeadership: %v, want n2 to lead once its votes get through", err)
	}
	waitFor(t, "n2 leads", n2.node.IsLeader)
}

// TestTransferLeadershipReportsAFailureWhileLeading: with no follower it can
// reach, the transfer fails while this node still leads; that is reported
// at once rather than retried until the deadline (a SIGTERMed leader then
// shuts down without waiting out --shutdown-timeout).
func TestTransferLeadershipReportsAFailureWhileLeading(t *testing.T) {
	c := newMNClusterOn(t, 2, true, nil)
	n1, n2 := c.nodes[0], c.nodes[1]
	waitFor(t, "n1 leads", n1.node.IsLeader)
	c.partition(n2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := n1.node.TransferLeadership(ctx)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("TransferLeadership with its only follower cut off: %v, want the transfer's own failure before the deadline", err)
	}
}
