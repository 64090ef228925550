package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/stockd/stockd/store"
)

// internalMessage is all a client learns about an unexpected error.
const internalMessage = "internal error"

// status turns err into the gRPC status a handler returns; nil stays nil.
// This is the only place errors become codes, always by errors.Is/errors.As.
func (s *Server) status(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var rej *store.Rejection
	if !errors.As(err, &rej) {
		rej = nil
	}
	switch {
	case errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrOverflow):
		return badRequest(err, rej)
	case errors.Is(err, store.ErrUnknownChannel),
		errors.Is(err, store.ErrUnknownLocation),
		errors.Is(err, store.ErrUnknownReservation),
		errors.Is(err, store.ErrUnknownSKU),
		errors.Is(err, store.ErrUnknownLocationGroup),
		errors.Is(err, store.ErrUnknownIncoming),
		errors.Is(err, store.ErrUnknownOrder):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrInsufficientStock):
		return insufficientStock(err, rej)
	case errors.Is(err, store.ErrRevisionChanged):
		return revisionChanged(err, rej)
	case errors.Is(err, store.ErrNotHeld), errors.Is(err, store.ErrLocationNotVisible),
		errors.Is(err, store.ErrInUse), errors.Is(err, store.ErrNotConfirmed),
		errors.Is(err, store.ErrAbsorbed):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, store.ErrIdempotencyConflict):
		return status.Error(codes.AlreadyExists, err.Error())
	}
	// Infrastructure errors may wrap addresses and other internals: the client
	// gets the sentinel's own text, the log the whole chain.
	if sentinel := firstMatch(err, s.exhausted); sentinel != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "resource exhausted", methodAttr(ctx), slog.Any("error", err))
		return status.Error(codes.ResourceExhausted, sentinel.Error())
	}
	if sentinel := firstMatch(err, s.unavailable); sentinel != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "unavailable", methodAttr(ctx), slog.Any("error", err))
		return status.Error(codes.Unavailable, sentinel.Error())
	}
	if sentinel := firstMatch(err, s.precondition); sentinel != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "failed precondition", methodAttr(ctx), slog.Any("error", err))
		return status.Error(codes.FailedPrecondition, sentinel.Error())
	}
	switch {
	case errors.Is(err, errLinearizableUnsupported):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, errReadLag), errors.Is(err, errReadIndexLag), errors.Is(err, errDraining),
		errors.Is(err, errCatchingUp):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, context.Canceled.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
	}
	s.log.LogAttrs(ctx, slog.LevelError, "internal error", methodAttr(ctx), slog.Any("error", err))
	return status.Error(codes.Internal, internalMessage)
}

// badRequest is INVALID_ARGUMENT "field: reason" with an
// errdetails.BadRequest naming the field when the error carries one.
func badRequest(err error, rej *store.Rejection) error {
	st := status.New(codes.InvalidArgument, err.Error())
	if rej == nil || rej.Field == "" {
		return st.Err()
	}
	return withDetail(st, &errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field:       rej.Field,
			Description: rej.Reason,
		}},
	})
}

// insufficientStock is FAILED_PRECONDITION with an
// errdetails.PreconditionFailure saying what was asked and what could be had.
func insufficientStock(err error, rej *store.Rejection) error {
	st := status.New(codes.FailedPrecondition, err.Error())
	if rej == nil {
		return st.Err()
	}
	return withDetail(st, &errdetails.PreconditionFailure{
		Violations: []*errdetails.PreconditionFailure_Violation{{
			Type:    "STOCK",
			Subject: rej.Field,
			Description: fmt.Sprintf("requested %d base units, available %d base units",
				rej.Requested, rej.Available),
		}},
	})
}

// revisionChanged is ABORTED (compare-and-reserve lost) with an
// errdetails.ErrorInfo carrying the current figure, so the caller can re-quote
// without another read: metadata mod_revision and available_sku_units.
func revisionChanged(err error, rej *store.Rejection) error {
	st := status.New(codes.Aborted, err.Error())
	if rej == nil {
		return st.Err()
	}
	return withDetail(st, &errdetails.ErrorInfo{
		Reason: "REVISION_CHANGED",
		Domain: "stockd",
		Metadata: map[string]string{
			"field":               rej.Field,
			"mod_revision":        strconv.FormatUint(uint64(rej.ModRevision), 10),
			"available_sku_units": strconv.FormatInt(int64(rej.AvailableSKU), 10),
		},
	})
}

// withDetail attaches d to st; a detail that cannot be attached is dropped
// rather than losing the code and message.
func withDetail(st *status.Status, d protoadapt.MessageV1) error {
	if withD, err := st.WithDetails(d); err == nil {
		return withD.Err()
	}
	return st.Err()
}

// firstMatch returns the first of sentinels that err wraps, or nil.
func firstMatch(err error, sentinels []error) error {
	for _, sentinel := range sentinels {
		if sentinel != nil && errors.Is(err, sentinel) {
			return sentinel
		}
	}
	return nil
}

func methodAttr(ctx context.Context) slog.Attr {
	method, _ := grpc.Method(ctx)
	return slog.String("grpc.method", method)
}
