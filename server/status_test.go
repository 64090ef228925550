package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/stockd/stockd/store"
)

func TestStatusMapping(t *testing.T) {
	rej := func(kind error, field string) error {
		return &store.Rejection{Kind: kind, Field: field, Reason: "because"}
	}
	cases := []struct {
		err   error
		code  codes.Code
		field string
	}{
		{rej(store.ErrInvalid, "lines[2].quantity"), codes.InvalidArgument, "lines[2].quantity"},
		{rej(store.ErrOverflow, "rows[0].delta_base_units"), codes.InvalidArgument, "rows[0].delta_base_units"},
		{fmt.Errorf("reserve: %w", rej(store.ErrInvalid, "ttl")), codes.InvalidArgument, ""},
		{rej(store.ErrUnknownChannel, "channel"), codes.NotFound, "channel"},
		{rej(store.ErrUnknownLocation, "lines[0].location"), codes.NotFound, "lines[0].location"},
		{rej(store.ErrUnknownReservation, "reservation_id"), codes.NotFound, "reservation_id"},
		{store.ErrUnknownReservation, codes.NotFound, ""},
		{rej(store.ErrUnknownOrder, "order_ref"), codes.NotFound, "order_ref"},
		{errDraining, codes.Unavailable, ""},
		{rej(store.ErrInsufficientStock, "lines[0].quantity"), codes.FailedPrecondition, "lines[0].quantity"},
		{rej(store.ErrNotHeld, "reservation_id"), codes.FailedPrecondition, "reservation_id"},
		{rej(store.ErrLocationNotVisible, "lines[1].location"), codes.FailedPrecondition, "lines[1].location"},
		{rej(store.ErrIdempotencyConflict, "lines[0].sku"), codes.AlreadyExists, "lines[0].sku"},
		{fmt.Errorf("propose: %w", errFakeQueueFull), codes.ResourceExhausted, ""},
		{fmt.Errorf("forward: %w", errFakeNotLeader), codes.Unavailable, ""},
		{fmt.Errorf("min_revision: revision 9 %w", errReadLag), codes.Unavailable, "min_revision"},
		{fmt.Errorf("linearizable: %w", errReadIndexLag), codes.Unavailable, ""},
		{errLinearizableUnsupported, codes.FailedPrecondition, "linearizable"},
		{fmt.Errorf("propose put node: %w", errFakeNoFeature), codes.FailedPrecondition, ""},
		{context.Canceled, codes.Canceled, ""},
		{fmt.Errorf("commit: %w", context.DeadlineExceeded), codes.DeadlineExceeded, ""},
		{errors.New("boom"), codes.Internal, ""},
		{&store.Rejection{Kind: errors.New("a kind this build does not know"), Field: "x"}, codes.Internal, ""},
	}
	s := newStatusServer()
	for _, tc := range cases {
		err := s.status(context.Background(), tc.err)
		checkStatus(t, fmt.Sprintf("status(%v)", tc.err), err, tc.code, tc.field)
	}
	if err := s.status(context.Background(), nil); err != nil {
		t.Errorf("status(nil): got %v, want nil", err)
	}
}

// newStatusServer is a Server for calling status directly.
func newStatusServer() *Server {
	m := store.New(store.DefaultConfig())
	return New(Config{Proposer: newFakeProposer(m), Reader: m,
		Unavailable: []error{errFakeNotLeader}, Exhausted: []error{errFakeQueueFull},
		Precondition: []error{errFakeNoFeature}})
}
