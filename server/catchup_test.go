package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// TestCatchUpHoldsReadsAfterStart guards I5 across a restart: with
// CatchUpOnStart, no read is answered (and health is NOT_SERVING) until the
// node has applied a read index the leader gave after the start, so a node
// replaying its log never answers older state than it did before it stopped.
func TestCatchUpHoldsReadsAfterStart(t *testing.T) {
	target := make(chan store.Revision, 1) // the read index, once a leader answers
	fc := &fakeCluster{barrier: func(ctx context.Context) (store.Revision, error) {
		select {
		case r := <-target:
			target <- r
			return r, nil
		default:
			return 0, errFakeNotLeader // no leader yet
		}
	}}
	h := newHarness(t, withCluster(fc), withCatchUpOnStart(), withReadWait(100*time.Millisecond))
	ctx := testContext(t)

	health := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		r, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("health: %v", err)
		}
		return r.GetStatus()
	}
	wantCatchingUp := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "catching up") {
			t.Fatalf("%s before catch-up: got %v, want UNAVAILABLE naming the catch-up", what, err)
		}
	}

	if got := health(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health before catch-up: got %v, want NOT_SERVING", got)
	}
	h.seed(t) // writes go to the leader as always
	_, err := h.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE"}})
	wantCatchingUp("GetAvailability", err)
	_, err = h.adm.ListLocations(ctx, &stockdv1.ListLocationsRequest{})
	wantCatchingUp("ListLocations", err)
	_, err = h.erp.GetOutbox(ctx, &stockdv1.GetOutboxRequest{})
	wantCatchingUp("GetOutbox", err)

	done := make(chan error, 1)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { done <- h.srv.CatchUp(cctx) }()

	// A leader answers with an index one past what this node applied: the
	// catch-up must wait for it, through retries.
	applied := h.m.AppliedIndex()
	target <- applied + 1
	waitUntil(t, "two read-index answers", func() bool { _, _, n := fc.calls(); return n >= 3 })
	select {
	case err := <-done:
		t.Fatalf("CatchUp returned %v before revision %d was applied", err, applied+1)
	default:
	}
	if got := health(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health while behind the read index: got %v, want NOT_SERVING", got)
	}

	h.setStock(t, "ROSE", "WH1", 7, 2) // applies revision applied+1
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("CatchUp: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("CatchUp did not return within 10s of revision %d being applied", applied+1)
	}
	if got := health(); got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health after catch-up: got %v, want SERVING", got)
	}
	av, err := h.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE"}})
	if err != nil {
		t.Fatalf("GetAvailability after catch-up: %v", err)
	}
	if av.GetRevision() < uint64(applied+1) || av.GetSkus()[0].GetAvailableSkuUnits() != 12 {
		t.Fatalf("after catch-up: revision %d, available %d; want >= %d and 12 (7 + 5)",
			av.GetRevision(), av.GetSkus()[0].GetAvailableSkuUnits(), applied+1)
	}
	if err := h.srv.CatchUp(ctx); err != nil {
		t.Fatalf("second CatchUp: %v, want nil at once", err)
	}
}

// TestCatchUpEndsWithItsContext: a node that never reaches a leader keeps
// refusing reads, and CatchUp returns the context's error when stockd stops.
func TestCatchUpEndsWithItsContext(t *testing.T) {
	fc := &fakeCluster{barrier: func(context.Context) (store.Revision, error) { return 0, errFakeNotLeader }}
	h := newHarness(t, withCluster(fc), withCatchUpOnStart(), withReadWait(50*time.Millisecond))
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() { done <- h.srv.CatchUp(ctx) }()
	waitUntil(t, "a read-index attempt", func() bool { _, _, n := fc.calls(); return n >= 1 })
	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Fatalf("CatchUp after cancel: got %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CatchUp did not return within 10s of its context ending")
	}
	_, err := h.adm.ListChannels(testContext(t), &stockdv1.ListChannelsRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("ListChannels without catch-up: got %v, want UNAVAILABLE", err)
	}
}
