package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stockd/stockd/api/stockdv1"
)

// The order outbox of the fake Erp service, and its dead-letter list.

// fakeOutbox is what the fake's outbox holds; fakeState.mu guards it.
type fakeOutbox struct {
	// entries are every entry, outcome or not, in sequence order.
	entries []*stockdv1.OutboxEntry
	// added is closed and replaced when an entry is added.
	added        chan struct{}
	absorbedMark uint64
	// rejectedRows are newest first.
	rejectedRows   []*stockdv1.RejectedRow
	rejectedCounts []*stockdv1.RejectedCount
	// pullErr, when set, ends every PullOrders after its first page.
	pullErr error
}

// outboxCreated is when the seeded entries were created: 9:00 UTC, May 1st 2026.
var outboxCreated = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

// seedOutbox gives the fake's outbox (st.mu is held): ORD-R (seq 7,
// refused), ORD-0 (8, booked and absorbed), and pending ORD-1 (9, of
// r-conf), ORD-2 (10, r-two, with a backorder line, cancelled) and its
// cancellation (11); two rejected rows, and counts.
func seedOutbox(st *fakeState) {
	line := func(item, loc string, qty int64, po string) *stockdv1.OutboxLine {
		return &stockdv1.OutboxLine{Item: item, Location: loc, QuantityBaseUnits: qty, PoLineId: po}
	}
	order := func(seq uint64, ref, res string, lines ...*stockdv1.OutboxLine) *stockdv1.OutboxEntry {
		return &stockdv1.OutboxEntry{Seq: seq, Kind: stockdv1.OutboxKind_OUTBOX_KIND_ORDER, Channel: "web", ReservationId: res,
			OrderRef: ref, Lines: lines, CreatedAt: timestamppb.New(outboxCreated.Add(time.Duration(seq) * time.Minute))}
	}
	refused := order(7, "ORD-R", "r-r", line("ROSE", "ams", 12, ""))
	refused.Outcome, refused.OutcomeReason = stockdv1.OrderOutcome_ORDER_OUTCOME_REFUSED, "customer credit hold"
	booked := order(8, "ORD-0", "r-zero", line("ROSE", "fra", 12, ""))
	booked.Outcome, booked.Absorbed = stockdv1.OrderOutcome_ORDER_OUTCOME_BOOKED, true
	two := order(10, "ORD-2", "r-two", line("ROSE", "fra", 12, ""), line("ROSE", "ams", 12, "PO-7/1"))
	two.Cancelled = true
	cancel := order(11, "ORD-2", "r-two", two.GetLines()...)
	cancel.Kind, cancel.CancelsSeq = stockdv1.OutboxKind_OUTBOX_KIND_CANCELLATION, 10
	st.outbox.entries = []*stockdv1.OutboxEntry{refused, booked, order(9, "ORD-1", "r-conf", line("ROSE", "ams", 24, "")), two, cancel}
	st.outbox.absorbedMark = 8
	st.outbox.rejectedRows = []*stockdv1.RejectedRow{
		{Revision: 48, At: timestamppb.New(outboxCreated.Add(time.Hour)), Source: "adjust_stock", Row: 3, Key: "d-17",
			Reason: "rows[3].location: unknown location \"mars\""},
		{Revision: 45, At: timestamppb.New(outboxCreated), Source: "set_stock", Row: 0, Key: "ROSE@ams",
			Reason: "rows[0].version: same version 4 with another count"},
	}
	st.outbox.rejectedCounts = []*stockdv1.RejectedCount{
		{Reason: "rows[].location", Count: 5},
		{Reason: "rows[].version", Count: 2},
	}
}

// addEntry appends e to the outbox and wakes the following pulls; st.mu is held.
func (st *fakeState) addEntry(e *stockdv1.OutboxEntry) {
	st.outbox.entries = append(st.outbox.entries, e)
	if st.outbox.added != nil {
		close(st.outbox.added)
		st.outbox.added = nil
	}
}

// PullOrders sends the pending entries after after_seq, stamped with the
// fake's revision; with follow it then waits for added entries until the
// client leaves.
func (f *fakeErp) PullOrders(req *stockdv1.PullOrdersRequest, stream stockdv1.Erp_PullOrdersServer) error {
	st := f.st
	st.mu.Lock()
	st.calls = append(st.calls, req)
	st.mu.Unlock()
	after := req.GetAfterSeq()
	for {
		st.mu.Lock()
		var page []*stockdv1.OutboxEntry
		for _, e := range st.outbox.entries {
			if e.GetSeq() > after && e.GetOutcome() == stockdv1.OrderOutcome_ORDER_OUTCOME_UNSPECIFIED {
				c := proto.Clone(e).(*stockdv1.OutboxEntry)
				c.Revision = st.revision
				page = append(page, c)
			}
		}
		if st.outbox.added == nil {
			st.outbox.added = make(chan struct{})
		}
		added, pullErr := st.outbox.added, st.outbox.pullErr
		st.mu.Unlock()
		for _, e := range page {
			if err := stream.Send(e); err != nil {
				return err
			}
			after = e.GetSeq()
		}
		if pullErr != nil {
			return pullErr
		}
		if !req.GetFollow() {
			return nil
		}
		select {
		case <-added:
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
	}
}

// AckOrders records each ack as stockd judges it: the same outcome again is
// stale, another outcome, an unknown seq or DONE on an order is rejected.
func (f *fakeErp) AckOrders(_ context.Context, req *stockdv1.AckOrdersRequest) (*stockdv1.AckOrdersResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	resp := &stockdv1.AckOrdersResponse{}
	for i, a := range req.GetAcks() {
		var e *stockdv1.OutboxEntry
		for _, x := range st.outbox.entries {
			if x.GetSeq() == a.GetSeq() {
				e = x
			}
		}
		row := &stockdv1.RowResult{Status: stockdv1.RowStatus_ROW_STATUS_REJECTED}
		isOrder := e.GetKind() == stockdv1.OutboxKind_OUTBOX_KIND_ORDER
		switch {
		case e == nil:
			row.Reason = fmt.Sprintf("acks[%d].seq: unknown order %d", i, a.GetSeq())
		case e.GetOutcome() == a.GetOutcome():
			row.Status = stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE
		case e.GetOutcome() != stockdv1.OrderOutcome_ORDER_OUTCOME_UNSPECIFIED:
			row.Reason = fmt.Sprintf("acks[%d].outcome: already %s", i, e.GetOutcome())
		case isOrder == (a.GetOutcome() == stockdv1.OrderOutcome_ORDER_OUTCOME_DONE):
			row.Reason = fmt.Sprintf("acks[%d].outcome: %s does not fit a %s entry", i, a.GetOutcome(), e.GetKind())
		default:
			e.Outcome, e.OutcomeReason = a.GetOutcome(), a.GetReason()
			row.Status = stockdv1.RowStatus_ROW_STATUS_APPLIED
		}
		resp.Rows = append(resp.Rows, row)
	}
	resp.Revision = st.nextRevision()
	return resp, nil
}

// GetOutbox reports the backlog of the fake's outbox.
func (f *fakeErp) GetOutbox(_ context.Context, req *stockdv1.GetOutboxRequest) (*stockdv1.GetOutboxResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	resp := &stockdv1.GetOutboxResponse{NextSeq: 1, AbsorbedMark: st.outbox.absorbedMark, Revision: st.revision}
	for _, e := range st.outbox.entries {
		resp.NextSeq = e.GetSeq() + 1
		if e.GetOutcome() != stockdv1.OrderOutcome_ORDER_OUTCOME_UNSPECIFIED {
			continue
		}
		if resp.Pending == 0 {
			resp.OldestPendingSeq, resp.OldestPendingCreatedAt = e.GetSeq(), e.GetCreatedAt()
		}
		resp.Pending++
	}
	return resp, nil
}

// ListRejected answers the newest limit rows (0: 100) and every count.
func (f *fakeErp) ListRejected(_ context.Context, req *stockdv1.ListRejectedRequest) (*stockdv1.ListRejectedResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = 100
	}
	rows := st.outbox.rejectedRows
	return &stockdv1.ListRejectedResponse{Rows: rows[:min(limit, len(rows))], Counts: st.outbox.rejectedCounts, Revision: st.revision}, nil
}

// GetOrder finds an order entry by channel and order reference.
func (f *fakeInventory) GetOrder(_ context.Context, req *stockdv1.GetOrderRequest) (*stockdv1.GetOrderResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	for _, e := range st.outbox.entries {
		if e.GetKind() == stockdv1.OutboxKind_OUTBOX_KIND_ORDER && e.GetChannel() == req.GetChannel() && e.GetOrderRef() == req.GetOrderRef() {
			return &stockdv1.GetOrderResponse{Order: e, Revision: st.revision}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "order_ref: unknown order %q", req.GetOrderRef())
}
