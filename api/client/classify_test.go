package client

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Action
	}{
		{nil, Final},
		{status.Error(codes.Unavailable, "no leader"), RetrySameID},
		{status.Error(codes.Unavailable, "this node is catching up with the cluster after its start; retry, or ask another node"), RetrySameID},
		{status.Error(codes.ResourceExhausted, "proposal queue full"), RetrySameID},
		{status.Error(codes.ResourceExhausted, "grpc: received message larger than max (5242985 vs. 4194304)"), Final},
		{status.Error(codes.ResourceExhausted, "trying to send message larger than max (5242985 vs. 4194304)"), Final},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), RetrySameID},
		{context.DeadlineExceeded, RetrySameID},
		{fmt.Errorf("reserve: %w", status.Error(codes.Unavailable, "no leader")), RetrySameID},
		{status.Error(codes.Aborted, "revision changed"), NewRequest},
		{status.Error(codes.AlreadyExists, "idempotency conflict"), NewRequest},
		{status.Error(codes.InvalidArgument, "lines[0].quantity: must be > 0"), Final},
		{status.Error(codes.NotFound, "unknown sku"), Final},
		{status.Error(codes.FailedPrecondition, "insufficient stock"), Final},
		{status.Error(codes.PermissionDenied, "channel"), Final},
		{status.Error(codes.Unauthenticated, "token"), Final},
		{status.Error(codes.Canceled, "context canceled"), Final},
		{context.Canceled, Final},
		{status.Error(codes.Internal, "internal error"), Final},
		{status.Error(codes.Unimplemented, "this node's reader keeps no change log"), Final},
		{errors.New("not a status"), Final},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v): got %v, want %v", tc.err, got, tc.want)
		}
		if got, want := Retryable(tc.err), tc.want == RetrySameID; got != want {
			t.Errorf("Retryable(%v): got %v, want %v", tc.err, got, want)
		}
	}
}

func TestBackoffDoublesUpToItsMax(t *testing.T) {
	c := &Client{backoffBase: 50 * time.Millisecond, backoffMax: time.Second}
	want := []time.Duration{50, 100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := c.backoff(i + 1); got != w*time.Millisecond {
			t.Errorf("backoff(%d) with base 50ms, max 1s: got %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	huge := &Client{backoffBase: time.Second, backoffMax: time.Duration(1<<63 - 1)}
	if got := huge.backoff(100); got <= 0 {
		t.Errorf("backoff(100) with base 1s, max MaxInt64: got %v, want positive (no overflow)", got)
	}
}

func TestJitterStaysWithinTheUpperHalf(t *testing.T) {
	for _, d := range []time.Duration{time.Nanosecond, time.Millisecond, time.Second} {
		for range 1000 {
			if got := equalJitter(d); got < d/2 || got > d {
				t.Fatalf("equalJitter(%v): got %v, want within [%v, %v]", d, got, d/2, d)
			}
		}
	}
}
