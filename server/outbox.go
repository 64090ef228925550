package server

import (
	"context"
	"errors"
	"strconv"

	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// The order outbox as the ERP adapter sees it (DESIGN.md "Orders flowing
// back"): it pulls confirmed orders and cancellations, reports each one's
// outcome, and watches the backlog and the rows the store refused.

// pullPageSize is how many outbox entries PullOrders reads at a time.
const pullPageSize = 1000

// Limits of ListRejected.
const (
	defaultRejectedLimit = 100
	maxRejectedLimit     = 10000
)

// errDraining ends a following PullOrders stream when the server drains;
// answered UNAVAILABLE so the client reconnects.
var errDraining = errors.New("server shutting down")

// PullOrders sends the outbox entries with sequence > after_seq that have no
// outcome yet, in sequence order, pullPageSize at a time, each stamped with
// the revision read before its page (it reflects at least that revision).
// Without follow it ends after the last page. With follow it then waits for
// the next applied revision and sends whatever entries it added, again and
// again, until the client goes away (its own code), the server drains or the
// node stops (UNAVAILABLE). It holds no lock while it sends, so a slow client
// holds up nobody, and it wakes once per applied revision, never polls.
//
// Delivery is at least once: a stream sends each entry at most once, but a
// new stream from an older after_seq sends again what has no outcome yet.
// An entry whose outcome was acknowledged before the stream began is never
// sent: with a Cluster, the stream first waits for the leader's read index
// (as a linearizable read does), so a lagging follower, or a node still
// replaying its log after a restart, does not send it again.
func (e *erp) PullOrders(req *stockdv1.PullOrdersRequest, stream stockdv1.Erp_PullOrdersServer) error {
	s := e.s
	ctx := stream.Context()
	if s.cluster != nil {
		if err := s.awaitRead(ctx, 0, true); err != nil {
			return s.status(ctx, err)
		}
	}
	waitCtx := ctx
	if req.GetFollow() {
		// The wait for the next revision ends on Drain as well as on the
		// client. The watcher cannot panic, and it has exited before the
		// handler returns.
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			select {
			case <-s.draining:
				cancel()
			case <-waitCtx.Done():
			}
		}()
		defer func() { cancel(); <-watched }()
	}
	after := req.GetAfterSeq()
	for {
		rev := s.reader.AppliedIndex()
		page := s.reader.Outbox(after, pullPageSize)
		for i := range page {
			if err := stream.Send(outboxEntryToProto(&page[i], rev)); err != nil {
				return s.streamStatus(ctx, err)
			}
			after = page[i].Seq
		}
		if len(page) == pullPageSize {
			continue
		}
		// Every entry applied by rev has been sent; a later one is applied
		// at rev+1 or after.
		if !req.GetFollow() {
			return nil
		}
		if err := s.proposer.WaitApplied(waitCtx, rev+1); err != nil {
			switch {
			case ctx.Err() != nil:
				err = ctx.Err()
			case isClosed(s.draining):
				err = errDraining
			}
			return s.status(ctx, err)
		}
	}
}

// streamStatus is the status a stream handler returns for a failed send:
// the client's own end when its context is done, gRPC's status as it is,
// anything else mapped by status.
func (s *Server) streamStatus(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return s.status(ctx, ctx.Err())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return s.status(ctx, err)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// AckOrders records the ERP's outcomes, each ack judged on its own: BOOKED
// keeps the order committed until the absorbed mark passes it, REFUSED frees
// its units at once, DONE closes a cancellation. The answer has one row per
// ack, in request order.
func (e *erp) AckOrders(ctx context.Context, req *stockdv1.AckOrdersRequest) (*stockdv1.AckOrdersResponse, error) {
	s := e.s
	acks := req.GetAcks()
	if len(acks) > store.MaxRows {
		return nil, s.status(ctx, invalid("acks", "at most "+strconv.Itoa(store.MaxRows)+" acks"))
	}
	cmd := &logv1.AckOrders{Acks: make([]*logv1.OrderAck, len(acks))}
	for i, a := range acks {
		// The store's outcome numbers are the proto's; a negative one
		// becomes a number the store refuses.
		cmd.Acks[i] = &logv1.OrderAck{Seq: a.GetSeq(), Outcome: uint32(a.GetOutcome()), Reason: a.GetReason()}
	}
	res, err := s.propose(ctx, &logv1.Command{Kind: &logv1.Command_AckOrders{AckOrders: cmd}})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	out, _ := rowsToProto(res.Rows)
	return &stockdv1.AckOrdersResponse{Rows: out, Revision: uint64(res.Revision)}, nil
}

// GetOutbox reports the backlog, stamped with the revision read before it.
func (e *erp) GetOutbox(ctx context.Context, _ *stockdv1.GetOutboxRequest) (*stockdv1.GetOutboxResponse, error) {
	s := e.s
	if err := s.awaitCaughtUp(ctx); err != nil {
		return nil, s.status(ctx, err)
	}
	rev := s.reader.AppliedIndex()
	return outboxStatusToProto(s.reader.OutboxStatus(), rev), nil
}

// ListRejected lists the most recent rejected ERP rows, newest first, and
// the counts of every rejection by reason.
func (e *erp) ListRejected(ctx context.Context, req *stockdv1.ListRejectedRequest) (*stockdv1.ListRejectedResponse, error) {
	s := e.s
	if err := s.awaitCaughtUp(ctx); err != nil {
		return nil, s.status(ctx, err)
	}
	limit := defaultRejectedLimit
	switch n := req.GetLimit(); {
	case n > maxRejectedLimit:
		return nil, s.status(ctx, invalid("limit", "at most "+strconv.Itoa(maxRejectedLimit)+", got "+strconv.FormatUint(uint64(n), 10)))
	case n > 0:
		limit = int(n)
	}
	rev := s.reader.AppliedIndex()
	rows, counts := s.reader.Rejected(limit)
	return rejectedToProto(rows, counts, rev), nil
}
