package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

func TestTTLNanos(t *testing.T) {
	cases := []struct {
		in      *durationpb.Duration
		want    int64
		refused bool
	}{
		{nil, 0, false},
		{&durationpb.Duration{}, 0, false},
		{durationpb.New(1500 * time.Millisecond), 1_500_000_000, false},
		{durationpb.New(24 * time.Hour), store.MaxHoldTTLNanos, false},
		{durationpb.New(-time.Second), 0, true},
		{&durationpb.Duration{Seconds: 1, Nanos: -1}, 0, true},
		{&durationpb.Duration{Seconds: 0, Nanos: 1_000_000_000}, 0, true},
		{&durationpb.Duration{Seconds: 86_401}, 0, true},
		{&durationpb.Duration{Seconds: 315_576_000_000}, 0, true},
	}
	s := newStatusServer()
	for _, tc := range cases {
		got, err := ttlNanos(tc.in)
		if tc.refused {
			checkStatus(t, "ttlNanos("+tc.in.String()+")", s.status(context.Background(), err), codes.InvalidArgument, "ttl")
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ttlNanos(%v): got %d %v, want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestReservationToProto(t *testing.T) {
	r := &store.Reservation{
		Channel: "web", ID: "cart", State: store.StateConfirmed,
		Lines: []store.ReservationLine{{SKU: "ROSE-CASE12", Item: "ROSE", Quantity: 3, Factor: 12, Allocations: []store.Allocation{
			{Location: "WH1", Quantity: 24}, {Location: "WH2", Quantity: 12},
		}}},
		CreatedAt: 1_700_000_000_123_456_789, ExpiresAt: 1_700_000_900_123_456_789,
		OrderRef: "SO-1", OrderSeq: 7,
	}
	got := reservationToProto(r)
	if got.GetState() != stockdv1.ReservationState_RESERVATION_STATE_CONFIRMED || got.GetOrderRef() != "SO-1" || got.GetOrderSeq() != 7 {
		t.Errorf("reservationToProto(%+v): got %v", r, got)
	}
	if ns := got.GetCreatedAt().AsTime().UnixNano(); ns != int64(r.CreatedAt) {
		t.Errorf("created_at: got %d, want %d", ns, r.CreatedAt)
	}
	if ns := got.GetExpiresAt().AsTime().UnixNano(); ns != int64(r.ExpiresAt) {
		t.Errorf("expires_at: got %d, want %d", ns, r.ExpiresAt)
	}
	a := got.GetLines()[0].GetAllocations()
	if len(a) != 2 || a[0].GetQuantitySkuUnits() != 2 || a[0].GetQuantityBaseUnits() != 24 || a[1].GetQuantitySkuUnits() != 1 {
		t.Errorf("allocations of 24 and 12 base units at factor 12: got %v, want 2 and 1 SKU units", a)
	}
	if reservationToProto(nil) != nil {
		t.Errorf("reservationToProto(nil): want nil")
	}
}

// TestOutboxEnumsMatchTheProto pins what outboxEntryToProto and AckOrders
// rely on: the store's kind and outcome numbers are the proto's.
func TestOutboxEnumsMatchTheProto(t *testing.T) {
	kinds := map[store.OutboxKind]stockdv1.OutboxKind{
		store.OutboxOrder:        stockdv1.OutboxKind_OUTBOX_KIND_ORDER,
		store.OutboxCancellation: stockdv1.OutboxKind_OUTBOX_KIND_CANCELLATION,
	}
	for k, want := range kinds {
		if got := stockdv1.OutboxKind(k); got != want {
			t.Errorf("store kind %d: got proto %s, want %s", k, got, want)
		}
	}
	outcomes := map[store.OrderOutcome]stockdv1.OrderOutcome{
		0:                    stockdv1.OrderOutcome_ORDER_OUTCOME_UNSPECIFIED,
		store.OutcomeBooked:  stockdv1.OrderOutcome_ORDER_OUTCOME_BOOKED,
		store.OutcomeRefused: stockdv1.OrderOutcome_ORDER_OUTCOME_REFUSED,
		store.OutcomeDone:    stockdv1.OrderOutcome_ORDER_OUTCOME_DONE,
	}
	for o, want := range outcomes {
		if got := stockdv1.OrderOutcome(o); got != want {
			t.Errorf("store outcome %d: got proto %s, want %s", o, got, want)
		}
	}
	if n := len(stockdv1.OutboxKind_name) - 1; n != len(kinds) {
		t.Errorf("proto OutboxKind has %d kinds, the test maps %d: map the new one", n, len(kinds))
	}
	if n := len(stockdv1.OrderOutcome_name); n != len(outcomes) {
		t.Errorf("proto OrderOutcome has %d values, the test maps %d: map the new one", n, len(outcomes))
	}
}

func TestOutboxEntryToProto(t *testing.T) {
	e := &store.OutboxEntry{
		Seq: 12, Kind: store.OutboxCancellation, Channel: "web", ReservationID: "cart", OrderRef: "SO-1",
		Lines: []store.OutboxLine{
			{Item: "ROSE", Location: "WH1", Quantity: 24},
			{Item: "ROSE", Location: "WH2", Quantity: 12, POLine: "PO-7/1"},
		},
		CreatedAt: 1_700_000_000_123_456_789, CancelsSeq: 9, Outcome: store.OutcomeDone, OutcomeReason: "ok",
		Absorbed: true, Cancelled: true,
	}
	want := &stockdv1.OutboxEntry{
		Seq: 12, Kind: stockdv1.OutboxKind_OUTBOX_KIND_CANCELLATION, Channel: "web", ReservationId: "cart", OrderRef: "SO-1",
		Lines: []*stockdv1.OutboxLine{
			{Item: "ROSE", Location: "WH1", QuantityBaseUnits: 24},
			{Item: "ROSE", Location: "WH2", QuantityBaseUnits: 12, PoLineId: "PO-7/1"},
		},
		CreatedAt: timestamp(1_700_000_000_123_456_789), CancelsSeq: 9, Outcome: stockdv1.OrderOutcome_ORDER_OUTCOME_DONE,
		OutcomeReason: "ok", Absorbed: true, Cancelled: true, Revision: 40,
	}
	if got := outboxEntryToProto(e, 40); !proto.Equal(got, want) {
		t.Errorf("outboxEntryToProto(%+v, 40): got %v, want %v", e, got, want)
	}
}

func TestLocationSlabConvertsLikeSeparateAllocations(t *testing.T) {
	skus := []store.SKUAvailability{
		{SKU: "A", Item: "A", Available: 7, Factor: 1, ModRevision: 3, Locations: []store.LocationAvailability{
			{Location: "WH1", Available: 3, OnHand: 5, Reserved: 2}, {Location: "WH2", Available: 4, OnHand: 4},
		}},
		{SKU: "B", Item: "B", Known: false, Factor: 1},
		{SKU: "C-CASE12", Item: "C", Available: 1, Factor: 12, Locations: []store.LocationAvailability{
			{Location: "WH1", Available: 1, OnHand: 30, Committed: 6, Buffer: 12, Oversold: 1},
			{Location: "WH2"}, {Location: "WH3", OnHand: 1},
		}},
		{SKU: "D", Item: "D", Factor: 1, Locations: []store.LocationAvailability{{Location: "WH1", OnHand: 9, Available: 9}}},
	}
	var slab locationSlab
	got := make([]*stockdv1.SkuAvailability, len(skus))
	for i := range skus {
		slab.skusLeft = 2 // smaller than what follows: the slab must grow
		got[i] = skuAvailabilityToProtoFrom(&slab, &stockdv1.SkuAvailability{}, &skus[i])
	}
	seen := map[*stockdv1.LocationAvailability]bool{}
	for i := range skus {
		want := skuAvailabilityToProto(&stockdv1.SkuAvailability{}, &skus[i])
		if !proto.Equal(got[i], want) {
			t.Errorf("sku %s from a slab: got %v, want %v", skus[i].SKU, got[i], want)
		}
		for _, l := range got[i].GetLocations() {
			if seen[l] {
				t.Errorf("sku %s: location %s shares its message with an earlier sku", skus[i].SKU, l.GetLocation())
			}
			seen[l] = true
		}
		if n := len(got[i].GetLocations()); cap(got[i].Locations) != n {
			t.Errorf("sku %s: locations have capacity %d, want %d (no room to append into a neighbour)", skus[i].SKU, cap(got[i].Locations), n)
		}
	}
}
