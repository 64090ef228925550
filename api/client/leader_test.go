package client

import (
	"context"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
)

// namesLeader answers like a follower that forwarded the write: OK, with
// the leader's address in LeaderHeader.
func namesLeader(addr *string) func(ctx context.Context, n int) error {
	return func(ctx context.Context, _ int) error {
		return grpc.SetHeader(ctx, metadata.Pairs(LeaderHeader, *addr))
	}
}

func TestWritesGoToTheLeaderAFollowerNames(t *testing.T) {
	var leaderAddr string
	follower := &fakeNode{answer: namesLeader(&leaderAddr)}
	other := &fakeNode{}
	var leaderDown atomic.Bool
	leader := &fakeNode{answer: func(context.Context, int) error {
		if leaderDown.Load() {
			return status.Error(codes.Unavailable, "no leader")
		}
		return nil
	}}
	fAddr, oAddr := follower.start(t), other.start(t)
	leaderAddr = leader.start(t)
	c, _ := newTestClient(t, Config{Addrs: []string{fAddr, oAddr, leaderAddr}})
	ctx := t.Context()
	inv := c.Inventory()

	for i := range 4 {
		if _, err := inv.Reserve(ctx, reserveRequest("r1")); err != nil {
			t.Fatalf("reserve %d: %v", i+1, err)
		}
	}
	if f, l := follower.calls(), leader.calls(); f != 1 || l != 3 {
		t.Errorf("4 reserves after the follower named the leader: got follower %d, leader %d; want 1 and 3", f, l)
	}
	// A read stays where the client sticks: any node serves reads.
	if _, err := inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{}); err != nil {
		t.Fatalf("read: %v", err)
	}
	if f, l := follower.readCalls(), leader.readCalls(); f != 1 || l != 0 {
		t.Errorf("a read after the leader was named: got follower %d, leader %d; want 1 and 0", f, l)
	}

	// The leader fails (say it stepped down mid-call): the client forgets it,
	// moves on round the addresses (to the follower, after the leader's slot)
	// and learns the leader again from the follower's answer.
	leaderDown.Store(true)
	if _, err := inv.Reserve(ctx, reserveRequest("r2")); err != nil {
		t.Fatalf("reserve after the leader failed: %v", err)
	}
	if f, l := follower.calls(), leader.calls(); f != 2 || l != 4 {
		t.Errorf("reserve after the leader failed: got follower %d, leader %d; want 2 and 4", f, l)
	}
	if got := c.leader.Load(); got != 3 {
		t.Errorf("after the follower named it again: got leader slot %d, want 3 (%s)", got, leaderAddr)
	}
}

func TestALeaderOutsideAddrsIsNotFollowed(t *testing.T) {
	elsewhere := "10.0.0.9:7400"
	follower := &fakeNode{answer: namesLeader(&elsewhere)}
	c, _ := newTestClient(t, Config{Addrs: []string{follower.start(t)}})
	ctx := t.Context()
	for i := range 3 {
		if _, err := c.Inventory().Reserve(ctx, reserveRequest("r1")); err != nil {
			t.Fatalf("reserve %d: %v", i+1, err)
		}
	}
	if got := follower.calls(); got != 3 {
		t.Errorf("3 reserves, leader not among Addrs: got %d at the follower, want 3", got)
	}
	if got := c.leader.Load(); got != 0 {
		t.Errorf("leader slot: got %d, want 0 (none)", got)
	}
}
