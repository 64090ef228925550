package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
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
