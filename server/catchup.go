package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Catching up after a start (I5 across restarts). A node that restarts
// restores its last snapshot and then re-applies its log only as the leader
// tells it what is committed, so for a while its state is older than what it
// answered before it stopped. With Config.CatchUpOnStart, the server answers
// no read until CatchUp has seen the node apply a read index taken after the
// start: every revision the node could have answered before was committed,
// so it is at or below that index. Until then health says NOT_SERVING and a
// read waits (within the read bound) and then answers UNAVAILABLE.

// errCatchingUp: a read arrived before CatchUp finished.
var errCatchingUp = errors.New("this node is catching up with the cluster after its start; retry, or ask another node")

// catchUpRetry is the pause between read-index attempts while no leader answers.
const catchUpRetry = 100 * time.Millisecond

// CatchUp returns once the local state machine has applied a read index the
// leader confirmed after this call began; reads are then answered and health
// says SERVING (unless Drain ran). It retries until it succeeds or ctx ends,
// and returns ctx's error then. Without Config.CatchUpOnStart it returns nil
// at once. Call it once, after Register, typically in its own goroutine.
func (s *Server) CatchUp(ctx context.Context) error {
	select {
	case <-s.caughtUp:
		return nil
	default:
	}
	for {
		err := s.catchUpOnce(ctx)
		if err == nil {
			break
		}
		s.log.LogAttrs(ctx, slog.LevelDebug, "catch-up attempt failed", slog.Any("error", err))
		t := time.NewTimer(catchUpRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	close(s.caughtUp)
	s.setServing(healthpb.HealthCheckResponse_SERVING) // ignored after Drain
	s.log.LogAttrs(ctx, slog.LevelInfo, "caught up; serving reads", slog.Uint64("revision", uint64(s.reader.AppliedIndex())))
	return nil
}

func (s *Server) catchUpOnce(ctx context.Context) error {
	if s.cluster == nil {
		return errLinearizableUnsupported
	}
	rctx, cancel := context.WithTimeout(ctx, s.readWait)
	defer cancel()
	index, err := s.cluster.ReadBarrier(rctx)
	if err != nil {
		return err
	}
	return s.proposer.WaitApplied(rctx, index)
}

// awaitCaughtUp returns nil once CatchUp has finished, waiting for it at
// most the read bound; then errCatchingUp.
func (s *Server) awaitCaughtUp(ctx context.Context) error {
	select {
	case <-s.caughtUp:
		return nil
	default:
	}
	t := time.NewTimer(s.readWait)
	defer t.Stop()
	select {
	case <-s.caughtUp:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errCatchingUp
	}
}

// CaughtUp reports whether CatchUp has finished (always true without
// Config.CatchUpOnStart), for readiness checks. Safe for concurrent use.
func (s *Server) CaughtUp() bool {
	select {
	case <-s.caughtUp:
		return true
	default:
		return false
	}
}
