package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// TestBadInputReserveStream sends malformed requests one at a time on one
// ReserveStream: each is answered with the StreamError the unary call would
// return (code, "field: ..." message, BadRequest detail), the state does not
// move, and the stream goes on.
func TestBadInputReserveStream(t *testing.T) {
	b := newBadServer(t)
	b.seedBad(t)
	st, err := b.inv.ReserveStream(testContext(t))
	if err != nil {
		t.Fatalf("ReserveStream: %v", err)
	}
	reserve := func(edit func(r *stockdv1.ReserveRequest)) *stockdv1.ReserveStreamRequest {
		r := reserveReq("stream-new", 1)
		edit(r)
		return &stockdv1.ReserveStreamRequest{RequestId: "r", Op: &stockdv1.ReserveStreamRequest_Reserve{Reserve: r}}
	}
	confirm := func(id, ref string) *stockdv1.ReserveStreamRequest {
		return &stockdv1.ReserveStreamRequest{RequestId: "r", Op: &stockdv1.ReserveStreamRequest_Confirm{
			Confirm: &stockdv1.ConfirmRequest{Channel: "web", ReservationId: id, OrderRef: ref}}}
	}
	release := func(id string, lines ...*stockdv1.ReleaseLine) *stockdv1.ReserveStreamRequest {
		r := &stockdv1.ReleaseRequest{Channel: "web", ReservationId: id, Lines: lines}
		if len(lines) > 0 {
			r.ReleaseId = "rel-s"
		}
		return &stockdv1.ReserveStreamRequest{RequestId: "r", Op: &stockdv1.ReserveStreamRequest_Release{Release: r}}
	}
	tagged := func(id string, r *stockdv1.ReserveStreamRequest) *stockdv1.ReserveStreamRequest {
		r.RequestId = id
		return r
	}
	cases := []struct {
		name  string
		req   *stockdv1.ReserveStreamRequest
		code  codes.Code
		field string
		where decided
	}{
		{"a request without request_id is invalid", tagged("", confirm("held", "SO-S")), codes.InvalidArgument, "request_id", beforeLog},
		{"a 257-byte request_id is invalid", tagged(tooLong, confirm("held", "SO-S")), codes.InvalidArgument, "request_id", beforeLog},
		{"a request_id with a control character is invalid", tagged(ctrlID, confirm("held", "SO-S")), codes.InvalidArgument, "request_id", beforeLog},
		{"a request without op is invalid", &stockdv1.ReserveStreamRequest{RequestId: "no-op"}, codes.InvalidArgument, "op", beforeLog},
		{"a reserve of a zero quantity on the second line is invalid", reserve(func(r *stockdv1.ReserveRequest) {
			r.Lines = append(r.Lines, &stockdv1.ReserveLine{Sku: "TULIP"})
		}), codes.InvalidArgument, "lines[1].quantity", beforeLog},
		{"a reserve with a 257-byte sku is invalid", reserve(func(r *stockdv1.ReserveRequest) { r.Lines[0].Sku = tooLong }), codes.InvalidArgument, "lines[0].sku", beforeLog},
		{"a reserve with a ttl over 24h is invalid", reserve(func(r *stockdv1.ReserveRequest) { r.Ttl = durationpb.New(25 * time.Hour) }), codes.InvalidArgument, "ttl", beforeLog},
		{"a reserve without channel is invalid", reserve(func(r *stockdv1.ReserveRequest) { r.Channel = "" }), codes.InvalidArgument, "channel", beforeLog},
		{"a reserve on an unknown channel is not found", reserve(func(r *stockdv1.ReserveRequest) { r.Channel, r.ReservationId = "nope", "s-1" }), codes.NotFound, "channel", inLog},
		{"a reserve beyond the stock is refused (I1)", reserve(func(r *stockdv1.ReserveRequest) { r.ReservationId, r.Lines[0].Quantity = "s-2", 10_000 }), codes.FailedPrecondition, "lines[0].quantity", inLog},
		{"a reserve with a moved mod_revision is aborted", reserve(func(r *stockdv1.ReserveRequest) { r.ReservationId, r.Lines[0].ExpectedModRevision = "s-3", 1 }), codes.Aborted, "lines[0].expected_mod_revision", inLog},
		{"a reserve reusing a live hold's id with another cart already exists", reserve(func(r *stockdv1.ReserveRequest) { r.ReservationId = "held" }), codes.AlreadyExists, "lines[0].quantity", inLog},
		{"a confirm without order_ref is invalid", confirm("held", ""), codes.InvalidArgument, "order_ref", beforeLog},
		{"a confirm of an unknown reservation is not found", confirm("ghost", "SO-S"), codes.NotFound, "reservation_id", inLog},
		{"a confirm of a released hold is refused", confirm("gone", "SO-S"), codes.FailedPrecondition, "reservation_id", inLog},
		{"a confirm of an expired hold is refused", confirm("late", "SO-S"), codes.FailedPrecondition, "reservation_id", inLog},
		{"a release of a confirmed order is refused", release("sold"), codes.FailedPrecondition, "reservation_id", inLog},
		{"a release of an unknown reservation is not found", release("ghost"), codes.NotFound, "reservation_id", inLog},
		{"a partial release of a zero quantity is invalid", release("held", &stockdv1.ReleaseLine{}), codes.InvalidArgument, "lines[0].quantity", beforeLog},
		{"a partial release of more than the line holds is invalid", release("held", &stockdv1.ReleaseLine{Quantity: 5}), codes.InvalidArgument, "lines[0].quantity", inLog},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := b.watchState(t)
			if err := st.Send(tc.req); err != nil {
				t.Fatalf("send %s: %v", tc.name, err)
			}
			a, err := st.Recv()
			if err != nil {
				t.Fatalf("%s: the stream ended with %v, want it to answer and go on", tc.name, err)
			}
			if a.GetRequestId() != tc.req.GetRequestId() {
				t.Errorf("%s: got the answer tagged %.20q, want %.20q", tc.name, a.GetRequestId(), tc.req.GetRequestId())
			}
			e := a.GetError()
			if e == nil {
				t.Fatalf("%s: got %v, want a StreamError %s", tc.name, a, tc.code)
			}
			err = status.FromProto(&spb.Status{Code: int32(e.GetCode()), Message: e.GetMessage(), Details: e.GetDetails()}).Err()
			checkStatus(t, tc.name+" on a stream", err, tc.code, tc.field)
			w.check(t, b, tc.name, tc.where)
		})
	}
	if err := st.CloseSend(); err != nil {
		t.Fatalf("CloseSend: %v", err)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after CloseSend: got %v, want io.EOF (a clean end after every refusal)", err)
	}
}

// TestBadInputPushStock sends malformed batches one at a time on one
// PushStock stream: each is answered with error_code and a message naming
// the field (or, for a bad row, a result rejecting that row), and the
// stream goes on.
func TestBadInputPushStock(t *testing.T) {
	b := newBadServer(t)
	b.seedBad(t)
	st, err := b.erp.PushStock(testContext(t))
	if err != nil {
		t.Fatalf("PushStock: %v", err)
	}
	batch := func(id string, rows ...*stockdv1.StockCount) *stockdv1.PushStockRequest {
		return &stockdv1.PushStockRequest{BatchId: id, Batch: &stockdv1.SetStockRequest{Rows: rows}}
	}
	good := &stockdv1.StockCount{Item: "TULIP", Location: "WH2", OnHandBaseUnits: 3, Version: 1}
	tooMany := make([]*stockdv1.StockCount, store.MaxRows+1)
	for i := range tooMany {
		tooMany[i] = good
	}
	cases := []struct {
		name  string
		req   *stockdv1.PushStockRequest
		code  codes.Code
		field string
	}{
		{"a batch without batch_id is invalid", batch("", good), codes.InvalidArgument, "batch_id"},
		{"a 257-byte batch_id is invalid", batch(tooLong, good), codes.InvalidArgument, "batch_id"},
		{"a batch_id with a control character is invalid", batch(ctrlID, good), codes.InvalidArgument, "batch_id"},
		{"a batch_id with a DEL is invalid", batch(delID, good), codes.InvalidArgument, "batch_id"},
		{"a message without batch is invalid", &stockdv1.PushStockRequest{BatchId: "nil"}, codes.InvalidArgument, "batch"},
		{"a batch without rows or mark is invalid", batch("empty"), codes.InvalidArgument, "batch.rows"},
		{"a batch of 10,001 rows is invalid", batch("huge", tooMany...), codes.InvalidArgument, "batch.rows"},
	}
	step := func(t *testing.T, req *stockdv1.PushStockRequest) *stockdv1.PushStockResponse {
		t.Helper()
		if err := st.Send(req); err != nil {
			t.Fatalf("send batch %.20q: %v", req.GetBatchId(), err)
		}
		a, err := st.Recv()
		if err != nil {
			t.Fatalf("batch %.20q: the stream ended with %v, want it to answer and go on", req.GetBatchId(), err)
		}
		if a.GetBatchId() != req.GetBatchId() {
			t.Errorf("batch %.20q: got the answer tagged %.20q", req.GetBatchId(), a.GetBatchId())
		}
		return a
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := b.watchState(t)
			a := step(t, tc.req)
			if codes.Code(a.GetErrorCode()) != tc.code || a.GetResult() != nil || !strings.HasPrefix(a.GetErrorMessage(), tc.field+": ") {
				t.Errorf("%s: got %s %q result %v, want %s naming %q and no result", tc.name,
					codes.Code(a.GetErrorCode()), a.GetErrorMessage(), a.GetResult(), tc.code, tc.field)
			}
			w.check(t, b, tc.name, beforeLog)
		})
	}
	rowCases := []struct {
		name  string
		bad   *stockdv1.StockCount
		field string
	}{
		{"a row at an undeclared location is rejected alone", &stockdv1.StockCount{Item: "TULIP", Location: "WH9", OnHandBaseUnits: 1, Version: 1}, "rows[1].location"},
		{"a row with a control character in the item is rejected alone", &stockdv1.StockCount{Item: ctrlID, Location: "WH1", OnHandBaseUnits: 1, Version: 1}, "rows[1].item"},
		{"a row with version 0 is rejected alone", &stockdv1.StockCount{Item: "TULIP", Location: "WH2", OnHandBaseUnits: 1}, "rows[1].version"},
	}
	for _, tc := range rowCases {
		t.Run(tc.name, func(t *testing.T) {
			w := b.watchState(t)
			a := step(t, batch("rows", staleRose(), tc.bad))
			rows := a.GetResult().GetRows()
			if a.GetErrorCode() != 0 || len(rows) != 2 || rows[0].GetStatus() != stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE ||
				rows[1].GetStatus() != stockdv1.RowStatus_ROW_STATUS_REJECTED || !strings.HasPrefix(rows[1].GetReason(), tc.field+": ") {
				t.Errorf("%s: got %v, want row 0 stale and row 1 rejected naming %q", tc.name, a, tc.field)
			}
			w.check(t, b, tc.name, inLog, deadLetters...)
		})
	}
	if err := st.CloseSend(); err != nil {
		t.Fatalf("CloseSend: %v", err)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after CloseSend: got %v, want io.EOF", err)
	}
}

// TestBadInputBackfill covers malformed Backfill streams: each fails with
// its code and field, and no counter moves (staged chunks are replicated
// state of their own, so only the staging may change).
func TestBadInputBackfill(t *testing.T) {
	b := newBadServer(t)
	b.seedBad(t)
	one := []*stockdv1.StockCount{{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 1, Version: 9}}
	big := make([]*stockdv1.StockCount, store.MaxRows+1)
	for i := range big {
		big[i] = one[0]
	}
	run := func(msgs ...*stockdv1.BackfillRequest) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			st, err := b.erp.Backfill(ctx)
			if err != nil {
				return err
			}
			for _, m := range msgs {
				if err := st.Send(m); err != nil {
					break // the server answered already; CloseAndRecv has it
				}
			}
			_, err = st.CloseAndRecv()
			return err
		}
	}
	cases := []struct {
		name  string
		call  func(context.Context, *badServer) error
		code  codes.Code
		field string
	}{
		{"a first message without generation_id is invalid", run(&stockdv1.BackfillRequest{Rows: one, Commit: true}), codes.InvalidArgument, "generation_id"},
		{"a 257-byte generation_id is invalid", run(&stockdv1.BackfillRequest{GenerationId: tooLong, Rows: one}), codes.InvalidArgument, "generation_id"},
		{"a generation_id with a control character is invalid", run(&stockdv1.BackfillRequest{GenerationId: ctrlID, Rows: one}), codes.InvalidArgument, "generation_id"},
		{"a generation_id changed mid-stream is invalid", run(&stockdv1.BackfillRequest{GenerationId: "g1", Rows: one}, &stockdv1.BackfillRequest{GenerationId: "g2", Commit: true}), codes.InvalidArgument, "generation_id"},
		{"a chunk of 10,001 rows is invalid", run(&stockdv1.BackfillRequest{GenerationId: "g3", Rows: big}), codes.InvalidArgument, "rows"},
		{"a commit of a generation without rows is invalid", run(&stockdv1.BackfillRequest{GenerationId: "g4", Commit: true}), codes.InvalidArgument, "rows"},
		{"a stream that ends without commit applies nothing", run(&stockdv1.BackfillRequest{GenerationId: "g5", Rows: one}), codes.FailedPrecondition, "commit"},
		{"a chunk after another backfill began is refused", func(ctx context.Context, b *badServer) error {
			first, err := b.erp.Backfill(ctx)
			if err != nil {
				return err
			}
			// "a" stages its first chunk (one proposal), then "b" begins and
			// replaces the staging, then "a" sends its commit.
			proposals := b.p.count()
			if err := first.Send(&stockdv1.BackfillRequest{GenerationId: "a", Rows: one}); err != nil {
				return err
			}
			tick := time.NewTicker(time.Millisecond) // nothing signals a proposal: poll, bounded by ctx
			defer tick.Stop()
			for b.p.count() == proposals {
				select {
				case <-tick.C:
				case <-ctx.Done():
					return fmt.Errorf(`waiting for the first chunk of "a": %w`, ctx.Err())
				}
			}
			other := run(&stockdv1.BackfillRequest{GenerationId: "b", Rows: one})
			if err := other(ctx, b); status.Code(err) != codes.FailedPrecondition {
				return fmt.Errorf("the other backfill (ended without commit): got %v, want FAILED_PRECONDITION", err)
			}
			if err := first.Send(&stockdv1.BackfillRequest{Rows: one, Commit: true}); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			_, err = first.CloseAndRecv()
			return err
		}, codes.InvalidArgument, "chunk"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := b.watchState(t)
			err := tc.call(testContext(t), b)
			checkStatus(t, tc.name, err, tc.code, tc.field)
			meta, recs := stateRecords(t, b.m)
			if meta != w.meta {
				t.Errorf("%s: the snapshot meta changed beyond the applied index and time", tc.name)
			}
			removed, added := recordDiff(w.recs, recs)
			for _, k := range append(removed, added...) {
				if k != "backfill_staging" {
					t.Errorf("%s: a %s record changed, want only the staging to", tc.name, k)
				}
			}
		})
	}
}

// TestBadInputWatch covers every field of Watch: the stream ends with its
// code and field before sending anything.
func TestBadInputWatch(t *testing.T) {
	b := newBadServer(t)
	b.seedBad(t)
	applied := uint64(b.m.AppliedIndex())
	watch := func(edit func(r *stockdv1.WatchRequest)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			r := &stockdv1.WatchRequest{Channel: "web", Skus: []string{"ROSE", "TULIP"}}
			edit(r)
			return firstWatchError(ctx, b, r)
		}
	}
	var cases []badCase
	cases = append(cases, idCases("Watch", "channel", func(v string) func(context.Context, *badServer) error {
		return watch(func(r *stockdv1.WatchRequest) { r.Channel = v })
	})...)
	cases = append(cases, idCases("Watch", "skus[1]", func(v string) func(context.Context, *badServer) error {
		return watch(func(r *stockdv1.WatchRequest) { r.Skus[1] = v })
	})...)
	cases = append(cases,
		badCase{"Watch of an unknown channel is not found", watch(func(r *stockdv1.WatchRequest) { r.Channel = "nope" }), codes.NotFound, "channel", beforeLog},
		badCase{"Watch of 1,001 skus is invalid", watch(func(r *stockdv1.WatchRequest) { r.Skus = skuList(1001) }), codes.InvalidArgument, "skus", beforeLog},
		badCase{"Watch of skus and a prefix is invalid", watch(func(r *stockdv1.WatchRequest) { r.SkuPrefix = "RO" }), codes.InvalidArgument, "sku_prefix", beforeLog},
		badCase{"Watch of a 257-byte prefix is invalid", watch(func(r *stockdv1.WatchRequest) { r.Skus, r.SkuPrefix = nil, tooLong }), codes.InvalidArgument, "sku_prefix", beforeLog},
		badCase{"Watch of an unmapped sku on a channel requiring mappings names it", watch(func(r *stockdv1.WatchRequest) {
			r.Channel, r.Skus = "strict", []string{caseSKU, "ROSE"}
		}), codes.NotFound, "skus[1]", beforeLog},
		badCase{"Watch from a revision not applied in time is unavailable", watch(func(r *stockdv1.WatchRequest) { r.FromRevision = applied + 1000 }), codes.Unavailable, "from_revision", beforeLog},
	)
	runBadCases(t, b, cases)
}

// errWatchStarted: a Watch that should have been refused sent a message.
var errWatchStarted = errors.New("the watch started")

// firstWatchError opens a Watch and returns the error its first Recv ends
// with, or errWatchStarted (cancelling the stream) if a message came.
func firstWatchError(ctx context.Context, b *badServer, r *stockdv1.WatchRequest) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := b.inv.Watch(ctx, r)
	if err != nil {
		return err
	}
	if _, err := st.Recv(); err != nil {
		return err
	}
	return errWatchStarted
}

// TestBadInputOversizedMessages: a message over the server's receive limit
// (gRPC's default 4 MiB, which cmd/stockd keeps) is RESOURCE_EXHAUSTED
// before any handler runs, unary or streamed, and nothing is applied.
func TestBadInputOversizedMessages(t *testing.T) {
	b := newBadServer(t)
	b.seedBad(t)
	huge := strings.Repeat("x", 5<<20)
	cases := []badCase{
		{"a 5 MiB Reserve is refused", func(ctx context.Context, b *badServer) error {
			_, err := b.inv.Reserve(ctx, reserveReq(huge, 1))
			return err
		}, codes.ResourceExhausted, "", beforeLog},
		{"a 5 MiB SetStock is refused", func(ctx context.Context, b *badServer) error {
			_, err := b.erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{{Item: huge, Location: "WH1", OnHandBaseUnits: 1, Version: 5}}})
			return err
		}, codes.ResourceExhausted, "", beforeLog},
		{"a 5 MiB GetAvailability is refused", func(ctx context.Context, b *badServer) error {
			_, err := b.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{huge}})
			return err
		}, codes.ResourceExhausted, "", beforeLog},
		{"a 5 MiB message on a ReserveStream ends it", func(ctx context.Context, b *badServer) error {
			st, err := b.inv.ReserveStream(ctx)
			if err != nil {
				return err
			}
			if err := st.Send(&stockdv1.ReserveStreamRequest{RequestId: "big", Op: &stockdv1.ReserveStreamRequest_Reserve{Reserve: reserveReq(huge, 1)}}); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			_, err = st.Recv()
			return err
		}, codes.ResourceExhausted, "", beforeLog},
		{"a 5 MiB batch on a PushStock ends it", func(ctx context.Context, b *badServer) error {
			st, err := b.erp.PushStock(ctx)
			if err != nil {
				return err
			}
			big := &stockdv1.PushStockRequest{BatchId: "big", Batch: &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{{Item: huge, Location: "WH1", OnHandBaseUnits: 1, Version: 5}}}}
			if err := st.Send(big); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			_, err = st.Recv()
			return err
		}, codes.ResourceExhausted, "", beforeLog},
		{"a 5 MiB Backfill chunk ends the stream", func(ctx context.Context, b *badServer) error {
			st, err := b.erp.Backfill(ctx)
			if err != nil {
				return err
			}
			big := &stockdv1.BackfillRequest{GenerationId: "big", Rows: []*stockdv1.StockCount{{Item: huge, Location: "WH1", OnHandBaseUnits: 1, Version: 5}}, Commit: true}
			if err := st.Send(big); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			_, err = st.CloseAndRecv()
			return err
		}, codes.ResourceExhausted, "", beforeLog},
	}
	runBadCases(t, b, cases)
	// Just under the limit is served: the limit is the message size, not a
	// field's.
	if _, err := b.inv.GetAvailability(testContext(t), &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{strings.Repeat("x", 256)}}); err != nil {
		t.Errorf("GetAvailability of one 256-byte sku after the refusals: %v, want OK", err)
	}
}

// TestBadInputExpiredDeadlines: a call whose deadline passes before it is
// decided is DEADLINE_EXCEEDED and applies nothing. Reads wait for a
// min_revision that never comes (the caller's deadline, shorter than the
// server's read bound, wins); writes stall in the proposer until the
// deadline passes, as behind a slow log.
func TestBadInputExpiredDeadlines(t *testing.T) {
	b := newBadServer(t)
	b.seedBad(t)
	ahead := uint64(b.m.AppliedIndex()) + 1000
	const deadline = 20 * time.Millisecond
	read := func(call func(ctx context.Context, b *badServer) error) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			ctx, cancel := context.WithTimeout(ctx, deadline)
			defer cancel()
			return call(ctx, b)
		}
	}
	write := func(call func(ctx context.Context, b *badServer) error) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			b.stall.stalled.Store(true)
			defer b.stall.stalled.Store(false)
			dctx, cancel := context.WithTimeout(ctx, deadline)
			defer cancel()
			err := call(dctx, b)
			// The handler's proposal returns once its own context ends.
			select {
			case <-b.stall.returned:
			case <-ctx.Done():
				return fmt.Errorf("the stalled proposal never returned: %w", ctx.Err())
			}
			return err
		}
	}
	export := func(ctx context.Context, b *badServer) error {
		st, err := b.erp.ExportStock(ctx, &stockdv1.ExportStockRequest{MinRevision: ahead})
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}
	cases := []badCase{
		{"GetAvailability past its deadline", read(func(ctx context.Context, b *badServer) error {
			_, err := b.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE"}, MinRevision: ahead})
			return err
		}), codes.DeadlineExceeded, "", beforeLog},
		{"GetReservation past its deadline", read(func(ctx context.Context, b *badServer) error {
			_, err := b.inv.GetReservation(ctx, &stockdv1.GetReservationRequest{Channel: "web", ReservationId: "held", MinRevision: ahead})
			return err
		}), codes.DeadlineExceeded, "", beforeLog},
		{"ListReservations past its deadline", read(func(ctx context.Context, b *badServer) error {
			_, err := b.inv.ListReservations(ctx, &stockdv1.ListReservationsRequest{Channel: "web", MinRevision: ahead})
			return err
		}), codes.DeadlineExceeded, "", beforeLog},
		{"GetOrder past its deadline", read(func(ctx context.Context, b *badServer) error {
			_, err := b.inv.GetOrder(ctx, &stockdv1.GetOrderRequest{Channel: "web", OrderRef: soldRef, MinRevision: ahead})
			return err
		}), codes.DeadlineExceeded, "", beforeLog},
		{"ListChanges past its deadline", read(func(ctx context.Context, b *badServer) error {
			_, err := b.inv.ListChanges(ctx, &stockdv1.ListChangesRequest{Channel: "web", SinceRevision: ahead})
			return err
		}), codes.DeadlineExceeded, "", beforeLog},
		{"ListAvailability past its deadline", read(func(ctx context.Context, b *badServer) error {
			_, err := b.inv.ListAvailability(ctx, &stockdv1.ListAvailabilityRequest{Channel: "web", MinRevision: ahead})
			return err
		}), codes.DeadlineExceeded, "", beforeLog},
		{"ExportStock past its deadline", read(export), codes.DeadlineExceeded, "", beforeLog},
		{"Watch past its deadline", read(func(ctx context.Context, b *badServer) error {
			return firstWatchError(ctx, b, &stockdv1.WatchRequest{Channel: "web", FromRevision: ahead})
		}), codes.DeadlineExceeded, "", beforeLog},
		{"Reserve past its deadline applies nothing", write(func(ctx context.Context, b *badServer) error {
			_, err := b.inv.Reserve(ctx, reserveReq("slow", 1))
			return err
		}), codes.DeadlineExceeded, "", notApplied},
		{"Confirm past its deadline applies nothing", write(func(ctx context.Context, b *badServer) error {
			_, err := b.inv.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: "web", ReservationId: "held", OrderRef: "SO-SLOW"})
			return err
		}), codes.DeadlineExceeded, "", notApplied},
		{"Release past its deadline applies nothing", write(func(ctx context.Context, b *badServer) error {
			_, err := b.inv.Release(ctx, &stockdv1.ReleaseRequest{Channel: "web", ReservationId: "held"})
			return err
		}), codes.DeadlineExceeded, "", notApplied},
		{"Extend past its deadline applies nothing", write(func(ctx context.Context, b *badServer) error {
			_, err := b.inv.Extend(ctx, &stockdv1.ExtendRequest{Channel: "web", ReservationId: "held", ExtendId: "e-slow", Ttl: durationpb.New(time.Hour)})
			return err
		}), codes.DeadlineExceeded, "", notApplied},
		{"CancelOrder past its deadline applies nothing", write(func(ctx context.Context, b *badServer) error {
			_, err := b.inv.CancelOrder(ctx, &stockdv1.CancelOrderRequest{Channel: "web", ReservationId: "sold"})
			return err
		}), codes.DeadlineExceeded, "", notApplied},
		{"ReleaseAll past its deadline applies nothing", write(func(ctx context.Context, b *badServer) error {
			_, err := b.inv.ReleaseAll(ctx, &stockdv1.ReleaseAllRequest{Channel: "web", ReleaseAllId: "ra-slow"})
			return err
		}), codes.DeadlineExceeded, "", notApplied},
		{"SetStock past its deadline applies nothing", write(func(ctx context.Context, b *badServer) error {
			_, err := b.erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 1, Version: 9}}})
			return err
		}), codes.DeadlineExceeded, "", notApplied},
		{"AdjustStock past its deadline applies nothing", write(func(ctx context.Context, b *badServer) error {
			_, err := b.erp.AdjustStock(ctx, &stockdv1.AdjustStockRequest{Rows: []*stockdv1.StockAdjustment{{DeltaId: "d-slow", Item: "ROSE", Location: "WH1", DeltaBaseUnits: 1}}})
			return err
		}), codes.DeadlineExceeded, "", notApplied},
		{"AckOrders past its deadline applies nothing", write(func(ctx context.Context, b *badServer) error {
			out, err := b.erp.GetOutbox(ctx, &stockdv1.GetOutboxRequest{})
			if err != nil {
				return err
			}
			_, err = b.erp.AckOrders(ctx, &stockdv1.AckOrdersRequest{Acks: []*stockdv1.OrderAck{{Seq: out.GetOldestPendingSeq(), Outcome: stockdv1.OrderOutcome_ORDER_OUTCOME_BOOKED}}})
			return err
		}), codes.DeadlineExceeded, "", notApplied},
		{"PutLocation past its deadline applies nothing", write(func(ctx context.Context, b *badServer) error {
			_, err := b.adm.PutLocation(ctx, &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: "WH-SLOW"}})
			return err
		}), codes.DeadlineExceeded, "", notApplied},
		{"a ReserveStream request past the stream's deadline applies nothing", write(func(ctx context.Context, b *badServer) error {
			st, err := b.inv.ReserveStream(ctx)
			if err != nil {
				return err
			}
			if err := st.Send(&stockdv1.ReserveStreamRequest{RequestId: "slow", Op: &stockdv1.ReserveStreamRequest_Reserve{Reserve: reserveReq("slow-s", 1)}}); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			for {
				a, err := st.Recv()
				if err != nil {
					return err
				}
				if a.GetError() == nil {
					return fmt.Errorf("request %q: got %v, want no hold", a.GetRequestId(), a)
				}
			}
		}), codes.DeadlineExceeded, "", notApplied},
		{"a PushStock batch past the stream's deadline applies nothing", write(func(ctx context.Context, b *badServer) error {
			st, err := b.erp.PushStock(ctx)
			if err != nil {
				return err
			}
			req := &stockdv1.PushStockRequest{BatchId: "slow", Batch: &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 1, Version: 9}}}}
			if err := st.Send(req); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			for {
				a, err := st.Recv()
				if err != nil {
					return err
				}
				if a.GetErrorCode() == 0 {
					return fmt.Errorf("batch %q: got a result %v, want none", a.GetBatchId(), a.GetResult())
				}
			}
		}), codes.DeadlineExceeded, "", notApplied},
	}
	runBadCases(t, b, cases)
}
