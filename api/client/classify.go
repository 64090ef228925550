package client

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Action is what a caller should do after a stockd call failed.
type Action int

const (
	// Final: the answer stands; give up (or report it to the user). A
	// refusal decided in the log (FAILED_PRECONDITION, ABORTED) is
	// remembered under the request's id, so trying again later, when things
	// have changed, needs a new id.
	Final Action = iota
	// RetrySameID: the call may not have run, or its outcome is unknown;
	// resend the same request unchanged (same ids), after a pause, to this
	// or another node. Idempotency answers the first outcome if it did run.
	RetrySameID
	// NewRequest: the request itself must change: re-read and decide again
	// (ABORTED: the figure moved), or pick a new id (ALREADY_EXISTS: the id
	// was used with another payload). Resending it unchanged answers the
	// same again.
	NewRequest
)

// String names the action.
func (a Action) String() string {
	switch a {
	case Final:
		return "final"
	case RetrySameID:
		return "retry with the same id"
	case NewRequest:
		return "new request"
	}
	return "unknown action"
}

// Classify says what to do after err, an error returned by a stockd call;
// nil is Final. It is a pure function of the error's gRPC code (and, for
// RESOURCE_EXHAUSTED, its message), safe for concurrent use:
//
//	UNAVAILABLE          RetrySameID  no leader, node stopping or draining, node catching up,
//	                                  min_revision not applied in time, connection refused or lost
//	RESOURCE_EXHAUSTED   RetrySameID  proposal queue full or raft too slow to accept
//	                                  (a RetryInfo retry_delay, when sent, is honoured)
//	                     Final        when grpc's message-size limit answered it
//	                                  ("... larger than max ..."): resending cannot help
//	DEADLINE_EXCEEDED    RetrySameID  an attempt ran out of time and its outcome is unknown;
//	                                  the retrying layer retries it only while the caller's
//	                                  own deadline has not passed
//	ABORTED              NewRequest   compare-and-reserve lost; re-read, decide, new id
//	ALREADY_EXISTS       NewRequest   the id was used with another payload; new id
//	everything else      Final        INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
//	                                  PERMISSION_DENIED, UNAUTHENTICATED, CANCELED, INTERNAL,
//	                                  UNIMPLEMENTED, UNKNOWN, ...
//
// A bare context.DeadlineExceeded counts as DEADLINE_EXCEEDED and a bare
// context.Canceled as CANCELED; any other error that carries no gRPC status
// is Final.
func Classify(err error) Action {
	if err == nil {
		return Final
	}
	switch code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return RetrySameID
	case codes.ResourceExhausted:
		if st, ok := status.FromError(err); ok && strings.Contains(st.Message(), "larger than max") {
			return Final
		}
		return RetrySameID
	case codes.Aborted, codes.AlreadyExists:
		return NewRequest
	}
	return Final
}

// Retryable reports whether err may be retried by resending the same request
// unchanged: Classify(err) == RetrySameID.
func Retryable(err error) bool {
	return Classify(err) == RetrySameID
}

// code is err's gRPC code, with bare context errors mapped to theirs.
func code(err error) codes.Code {
	if st, ok := status.FromError(err); ok {
		return st.Code()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Unknown
}

// retryDelay is the longest google.rpc.RetryInfo retry_delay err carries,
// or 0 when it carries none (or only invalid or negative ones).
func retryDelay(err error) time.Duration {
	st, ok := status.FromError(err)
	if !ok {
		return 0
	}
	var d time.Duration
	for _, detail := range st.Details() {
		ri, ok := detail.(*errdetails.RetryInfo)
		if !ok || ri.GetRetryDelay() == nil || ri.GetRetryDelay().CheckValid() != nil {
			continue
		}
		if v := ri.GetRetryDelay().AsDuration(); v > d {
			d = v
		}
	}
	return d
}
