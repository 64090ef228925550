package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestTranslate(t *testing.T) {
	other := errors.New("disk on fire")
	for _, tc := range []struct {
		in   error
		want error
	}{
		{raft.ErrNotLeader, ErrNotLeader},
		{raft.ErrLeadershipLost, ErrNotLeader},
		{raft.ErrLeadershipTransferInProgress, ErrNotLeader},
		{raft.ErrAbortedByRestore, ErrNotLeader},
		{raft.ErrRaftShutdown, ErrStopped},
		{raft.ErrTransportShutdown, ErrStopped},
		{raft.ErrEnqueueTimeout, ErrQueueFull},
		{other, other},
	} {
		got := translate("propose", tc.in)
		if !errors.Is(got, tc.want) || !errors.Is(got, tc.in) {
			t.Errorf("translate(propose, %v) = %v, want it to wrap %v and %v", tc.in, got, tc.want, tc.in)
		}
		if want := "propose: "; len(got.Error()) < len(want) || got.Error()[:len(want)] != want {
			t.Errorf("translate(propose, %v) = %q, want it to start with %q", tc.in, got, want)
		}
	}
	if got := translate("propose", nil); got != nil {
		t.Errorf("translate(propose, nil) = %v, want nil", got)
	}
}

func TestPeerStatusRoundTripKeepsSentinels(t *testing.T) {
	n := &Node{stopped: make(chan struct{})}
	for _, want := range []error{ErrNoLeader, ErrNotLeader, ErrQueueFull, ErrFeatureNotEnabled, context.DeadlineExceeded} {
		got := n.fromStatus(context.Background(), "forward", toStatus(fmt.Errorf("propose: %w", want)))
		if !errors.Is(got, want) {
			t.Errorf("peer status round trip of %v: got %v, want it to wrap %v", want, got, want)
		}
	}
}

func TestFirstElectionIsNotAWarning(t *testing.T) {
	const msg = "heartbeat timeout reached, starting election"
	for _, tc := range []struct {
		args []any
		want hclog.Level
	}{
		{[]any{"last-leader-addr", "", "last-leader-id", ""}, hclog.Info},
		{[]any{"last-leader-addr", "127.0.0.1:7401", "last-leader-id", "n1"}, hclog.Warn},
	} {
		if got := demote(hclog.Warn, msg, tc.args); got != tc.want {
			t.Errorf("demote(warn, %q, %v): got %v, want %v", msg, tc.args, got, tc.want)
		}
	}
	if got := demote(hclog.Warn, "failed to contact", nil); got != hclog.Warn {
		t.Errorf("demote(warn, other message): got %v, want warn", got)
	}
}

// TestPeerMessageTooLargeIsNotQueueFull: grpc answers RESOURCE_EXHAUSTED
// when a message passes a size limit; that is no reason to retry, unlike the
// leader's full queue, so it must not read back as ErrQueueFull.
func TestPeerMessageTooLargeIsNotQueueFull(t *testing.T) {
	n := &Node{stopped: make(chan struct{})}
	tooLarge := status.Error(codes.ResourceExhausted, "grpc: received message larger than max (15000000 vs. 4194304)")
	if got := n.fromStatus(context.Background(), "forward", tooLarge); errors.Is(got, ErrQueueFull) {
		t.Fatalf("a message-size error read back as %v, want not ErrQueueFull", got)
	}
}
