package main

import (
	"cmp"
	"context"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stockd/stockd/api/stockdv1"
)

// The hold lifecycle of the fake Inventory service: partial release, extend,
// cancel, list and release-all over fakeState.reservations.

// reservation finds a reservation of the fake, or answers NOT_FOUND.
func (st *fakeState) reservation(channel, id string) (*stockdv1.Reservation, error) {
	for _, r := range st.reservations {
		if r.GetChannel() == channel && r.GetReservationId() == id {
			return r, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "reservation_id: unknown reservation %q", id)
}

// Release releases a whole hold, or with lines only those quantities.
func (f *fakeInventory) Release(_ context.Context, req *stockdv1.ReleaseRequest) (*stockdv1.ReleaseResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	r, err := st.reservation(req.GetChannel(), req.GetReservationId())
	if err != nil {
		return nil, err
	}
	if r.GetState() != stockdv1.ReservationState_RESERVATION_STATE_HELD {
		return nil, status.Errorf(codes.FailedPrecondition, "reservation_id: reservation %q is not held", req.GetReservationId())
	}
	if len(req.GetLines()) == 0 {
		r.State = stockdv1.ReservationState_RESERVATION_STATE_RELEASED
		return &stockdv1.ReleaseResponse{Reservation: r, Revision: st.nextRevision()}, nil
	}
	if req.GetReleaseId() == "" {
		return nil, status.Error(codes.InvalidArgument, "release_id: is required with lines")
	}
	for i, l := range req.GetLines() {
		if int(l.GetLine()) >= len(r.GetLines()) {
			return nil, status.Errorf(codes.InvalidArgument, "lines[%d].line: no line %d", i, l.GetLine())
		}
		line := r.GetLines()[l.GetLine()]
		line.QuantitySkuUnits -= l.GetQuantity()
		a := line.GetAllocations()[0]
		a.QuantitySkuUnits -= l.GetQuantity()
		a.QuantityBaseUnits -= l.GetQuantity() * line.GetFactor()
	}
	return &stockdv1.ReleaseResponse{Reservation: r, Revision: st.nextRevision()}, nil
}

// Extend moves a live hold's deadline to now + ttl.
func (f *fakeInventory) Extend(_ context.Context, req *stockdv1.ExtendRequest) (*stockdv1.ExtendResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	r, err := st.reservation(req.GetChannel(), req.GetReservationId())
	if err != nil {
		return nil, err
	}
	if r.GetState() != stockdv1.ReservationState_RESERVATION_STATE_HELD {
		return nil, status.Errorf(codes.FailedPrecondition, "reservation_id: reservation %q is not held", req.GetReservationId())
	}
	r.ExpiresAt = timestamppb.New(time.Now().Add(req.GetTtl().AsDuration()))
	return &stockdv1.ExtendResponse{Reservation: r, Revision: st.nextRevision()}, nil
}

// CancelOrder takes back a confirmed order.
func (f *fakeInventory) CancelOrder(_ context.Context, req *stockdv1.CancelOrderRequest) (*stockdv1.CancelOrderResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	r, err := st.reservation(req.GetChannel(), req.GetReservationId())
	if err != nil {
		return nil, err
	}
	if r.GetState() != stockdv1.ReservationState_RESERVATION_STATE_CONFIRMED {
		return nil, status.Errorf(codes.FailedPrecondition, "reservation_id: reservation %q is not confirmed", req.GetReservationId())
	}
	r.State = stockdv1.ReservationState_RESERVATION_STATE_CANCELLED
	return &stockdv1.CancelOrderResponse{Reservation: r, Revision: st.nextRevision()}, nil
}

// ListReservations pages through a channel's reservations in id order; the
// page token is the last id of the previous page.
func (f *fakeInventory) ListReservations(_ context.Context, req *stockdv1.ListReservationsRequest) (*stockdv1.ListReservationsResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	size := int(req.GetPageSize())
	if size == 0 {
		size = 100
	}
	var deadline time.Time
	if w := req.GetExpiringWithin(); w != nil {
		deadline = time.Now().Add(w.AsDuration())
	}
	var match []*stockdv1.Reservation
	for _, r := range st.reservations {
		switch {
		case r.GetChannel() != req.GetChannel(), r.GetReservationId() <= req.GetPageToken(),
			req.GetState() != stockdv1.ReservationState_RESERVATION_STATE_UNSPECIFIED && r.GetState() != req.GetState(),
			!deadline.IsZero() && (r.GetState() != stockdv1.ReservationState_RESERVATION_STATE_HELD || r.GetExpiresAt().AsTime().After(deadline)):
			continue
		}
		match = append(match, r)
	}
	slices.SortFunc(match, func(a, b *stockdv1.Reservation) int { return cmp.Compare(a.GetReservationId(), b.GetReservationId()) })
	resp := &stockdv1.ListReservationsResponse{Revision: st.revision}
	if len(match) > size {
		match = match[:size]
		resp.NextPageToken = match[size-1].GetReservationId()
	}
	resp.Reservations = match
	return resp, nil
}

// ReleaseAll releases a channel's live holds; a repeated id answers its
// first count.
func (f *fakeInventory) ReleaseAll(_ context.Context, req *stockdv1.ReleaseAllRequest) (*stockdv1.ReleaseAllResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	if _, ok := st.channels[req.GetChannel()]; !ok {
		return nil, status.Errorf(codes.NotFound, "channel: unknown channel %q", req.GetChannel())
	}
	if n, ok := st.releasedAll[req.GetReleaseAllId()]; ok {
		return &stockdv1.ReleaseAllResponse{Released: n, Revision: st.revision}, nil
	}
	var n uint32
	for _, r := range st.reservations {
		if r.GetChannel() == req.GetChannel() && r.GetState() == stockdv1.ReservationState_RESERVATION_STATE_HELD {
			r.State = stockdv1.ReservationState_RESERVATION_STATE_RELEASED
			n++
		}
	}
	st.releasedAll[req.GetReleaseAllId()] = n
	return &stockdv1.ReleaseAllResponse{Released: n, Revision: st.nextRevision()}, nil
}
