package server

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
)

// TestReserveRefusals covers refusals decided in the log: each answers with
// its code and field, and no stock moves.
func TestReserveRefusals(t *testing.T) {
	cases := []struct {
		name  string
		req   *stockdv1.ReserveRequest
		code  codes.Code
		field string
	}{
		{"reserve for an unknown channel is not found",
			&stockdv1.ReserveRequest{Channel: "nope", ReservationId: "c1", Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 1}}},
			codes.NotFound, "channel"},
		{"reserve at an unknown location is not found",
			&stockdv1.ReserveRequest{Channel: "web", ReservationId: "c2", Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 1, Location: "WH9"}}},
			codes.NotFound, "lines[0].location"},
		{"reserve at a location the channel does not see is a failed precondition",
			&stockdv1.ReserveRequest{Channel: "web", ReservationId: "c3", Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 1, Location: "WH3"}}},
			codes.FailedPrecondition, "lines[0].location"},
		{"a cart whose total overflows int64 is invalid",
			&stockdv1.ReserveRequest{Channel: "web", ReservationId: "c4", Lines: []*stockdv1.ReserveLine{
				{Sku: "ROSE", Quantity: math.MaxInt64}, {Sku: "ROSE", Quantity: math.MaxInt64}}},
			codes.InvalidArgument, "lines[1].quantity"},
		{"reserving more than is available is a failed precondition (I1)",
			reserveReq("c5", 16), codes.FailedPrecondition, "lines[0].quantity"},
	}
	h := newHarness(t)
	h.seed(t)
	if _, err := h.adm.PutLocation(testContext(t), &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: "WH3"}}); err != nil {
		t.Fatalf("PutLocation(WH3): %v", err)
	}
	h.setStock(t, "ROSE", "WH3", 50, 1)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.inv.Reserve(testContext(t), tc.req)
			checkStatus(t, tc.name, err, tc.code, tc.field)
			if total, per := h.available(t, "web", "ROSE"); total != 15 || fmt.Sprint(per) != "[10 5]" {
				t.Errorf("%s: ROSE on web after: got %d %v, want 15 [10 5]", tc.name, total, per)
			}
		})
	}
}

func TestInsufficientStockDetail(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	_, err := h.inv.Reserve(testContext(t), reserveReq("big", 16))
	checkStatus(t, "Reserve(16 ROSE of 15)", err, codes.FailedPrecondition, "lines[0].quantity")
	var got []string
	for _, d := range status.Convert(err).Details() {
		if pf, ok := d.(*errdetails.PreconditionFailure); ok {
			for _, v := range pf.GetViolations() {
				got = append(got, v.GetSubject()+": "+v.GetDescription())
			}
		}
	}
	if want := "lines[0].quantity: requested 16 base units, available 15 base units"; len(got) != 1 || got[0] != want {
		t.Fatalf("Reserve(16 ROSE of 15): got PreconditionFailure %q, want [%q]", got, want)
	}
}

func TestConfirmAndReleaseRefusals(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	ctx := testContext(t)

	t.Run("unknown reservation ids are not found", func(t *testing.T) {
		_, err := h.inv.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: "web", ReservationId: "ghost", OrderRef: "SO-1"})
		checkStatus(t, "Confirm(ghost)", err, codes.NotFound, "reservation_id")
		_, err = h.inv.Release(ctx, &stockdv1.ReleaseRequest{Channel: "web", ReservationId: "ghost"})
		checkStatus(t, "Release(ghost)", err, codes.NotFound, "reservation_id")
		_, err = h.inv.GetReservation(ctx, &stockdv1.GetReservationRequest{Channel: "web", ReservationId: "ghost"})
		checkStatus(t, "GetReservation(ghost)", err, codes.NotFound, "reservation_id")
	})

	t.Run("confirm after expiry is a failed precondition", func(t *testing.T) {
		req := reserveReq("short", 2)
		req.Ttl = durationpb.New(time.Second)
		if _, err := h.inv.Reserve(ctx, req); err != nil {
			t.Fatalf("Reserve(short, ttl 1s): %v", err)
		}
		h.p.advance(time.Second) // the deadline is reached: expired
		_, err := h.inv.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: "web", ReservationId: "short", OrderRef: "SO-2"})
		checkStatus(t, "Confirm(short) 1s after a 1s hold", err, codes.FailedPrecondition, "reservation_id")
		got, err := h.inv.GetReservation(ctx, &stockdv1.GetReservationRequest{Channel: "web", ReservationId: "short"})
		if err != nil || got.GetReservation().GetState() != stockdv1.ReservationState_RESERVATION_STATE_EXPIRED {
			t.Fatalf("GetReservation(short): got %v %v, want EXPIRED", got.GetReservation().GetState(), err)
		}
		if total, _ := h.available(t, "web", "ROSE"); total != 15 {
			t.Fatalf("ROSE on web after the hold expired: got %d, want 15", total)
		}
	})

	t.Run("confirm after release is a failed precondition", func(t *testing.T) {
		if _, err := h.inv.Reserve(ctx, reserveReq("gone", 2)); err != nil {
			t.Fatalf("Reserve(gone): %v", err)
		}
		if _, err := h.inv.Release(ctx, &stockdv1.ReleaseRequest{Channel: "web", ReservationId: "gone"}); err != nil {
			t.Fatalf("Release(gone): %v", err)
		}
		_, err := h.inv.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: "web", ReservationId: "gone", OrderRef: "SO-3"})
		checkStatus(t, "Confirm(gone) after Release", err, codes.FailedPrecondition, "reservation_id")
		if total, _ := h.available(t, "web", "ROSE"); total != 15 {
			t.Fatalf("ROSE on web after release: got %d, want 15", total)
		}
	})

	t.Run("release after confirm is a failed precondition", func(t *testing.T) {
		if _, err := h.inv.Reserve(ctx, reserveReq("sold", 2)); err != nil {
			t.Fatalf("Reserve(sold): %v", err)
		}
		if _, err := h.inv.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: "web", ReservationId: "sold", OrderRef: "SO-4"}); err != nil {
			t.Fatalf("Confirm(sold): %v", err)
		}
		_, err := h.inv.Release(ctx, &stockdv1.ReleaseRequest{Channel: "web", ReservationId: "sold"})
		checkStatus(t, "Release(sold) after Confirm", err, codes.FailedPrecondition, "reservation_id")
		_, err = h.inv.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: "web", ReservationId: "sold", OrderRef: "SO-other"})
		checkStatus(t, "Confirm(sold) again with another order_ref", err, codes.AlreadyExists, "order_ref")
	})
}

// TestRetries covers I3: the same id and payload gets the first answer, a
// refusal included; another payload is ALREADY_EXISTS.
func TestRetries(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	ctx := testContext(t)

	t.Run("I3 a retry with the same payload gets the first hold", func(t *testing.T) {
		first, err := h.inv.Reserve(ctx, reserveReq("once", 3))
		if err != nil {
			t.Fatalf("Reserve(once, 3): %v", err)
		}
		again, err := h.inv.Reserve(ctx, reserveReq("once", 3))
		if err != nil {
			t.Fatalf("Reserve(once, 3) retried: %v", err)
		}
		if first.GetReservation().String() != again.GetReservation().String() {
			t.Fatalf("Reserve(once, 3) retried: got %v, want the first answer %v", again.GetReservation(), first.GetReservation())
		}
		if total, _ := h.available(t, "web", "ROSE"); total != 12 {
			t.Fatalf("ROSE on web after a reserve of 3 and its retry: got %d, want 12", total)
		}
	})

	t.Run("I3 a reservation id reused with another payload already exists", func(t *testing.T) {
		_, err := h.inv.Reserve(ctx, reserveReq("once", 4))
		checkStatus(t, "Reserve(once, 4) after Reserve(once, 3)", err, codes.AlreadyExists, "lines[0].quantity")
		if total, _ := h.available(t, "web", "ROSE"); total != 12 {
			t.Fatalf("ROSE on web after the conflicting retry: got %d, want 12", total)
		}
	})

	t.Run("I3 a refused reserve stays refused after stock arrives", func(t *testing.T) {
		_, err := h.inv.Reserve(ctx, reserveReq("late", 20))
		checkStatus(t, "Reserve(late, 20 of 12)", err, codes.FailedPrecondition, "lines[0].quantity")
		h.setStock(t, "ROSE", "WH1", 100, 2)
		_, err = h.inv.Reserve(ctx, reserveReq("late", 20))
		checkStatus(t, "Reserve(late, 20) retried after stock rose to 102", err, codes.FailedPrecondition, "lines[0].quantity")
		if !strings.Contains(err.Error(), "available 12") {
			t.Errorf("Reserve(late, 20) retried: got %q, want the first refusal (available 12)", err)
		}
		if _, err := h.inv.Reserve(ctx, reserveReq("late-2", 20)); err != nil {
			t.Fatalf("Reserve(late-2, 20) with a new id: %v, want OK", err)
		}
	})
}

func TestAvailabilityOfUnknownChannelIsNotFound(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	_, err := h.inv.GetAvailability(testContext(t), &stockdv1.GetAvailabilityRequest{Channel: "nope", Skus: []string{"ROSE"}})
	checkStatus(t, "GetAvailability(nope)", err, codes.NotFound, "channel")
}

// TestERPRows covers batches answered row by row: a rejected row never sinks
// its neighbours.
func TestERPRows(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	ctx := testContext(t)

	t.Run("a bad row is rejected and the others are applied", func(t *testing.T) {
		resp, err := h.erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
			{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 20, Version: 2},
			{Item: "ROSE", Location: "NOWHERE", OnHandBaseUnits: 99, Version: 1},
			{Item: "", Location: "WH1", OnHandBaseUnits: 1, Version: 1},
			{Item: longID, Location: "WH1", OnHandBaseUnits: 1, Version: 1},
			{Item: "TULIP", Location: "", OnHandBaseUnits: 1, Version: 1},
			{Item: "TULIP", Location: "WH2", OnHandBaseUnits: 1, Version: 0},
			{Item: "TULIP", Location: "WH2", OnHandBaseUnits: -4, Version: 1},
			{Item: "ROSE", Location: "WH2", OnHandBaseUnits: 5, Version: 1},
		}})
		if err != nil {
			t.Fatalf("SetStock: %v", err)
		}
		want := []struct {
			status stockdv1.RowStatus
			field  string
		}{
			{stockdv1.RowStatus_ROW_STATUS_APPLIED, ""},
			{stockdv1.RowStatus_ROW_STATUS_REJECTED, "rows[1].location"},
			{stockdv1.RowStatus_ROW_STATUS_REJECTED, "rows[2].item"},
			{stockdv1.RowStatus_ROW_STATUS_REJECTED, "rows[3].item"},
			{stockdv1.RowStatus_ROW_STATUS_REJECTED, "rows[4].location"},
			{stockdv1.RowStatus_ROW_STATUS_REJECTED, "rows[5].version"},
			{stockdv1.RowStatus_ROW_STATUS_APPLIED, ""},
			{stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE, "rows[7].version"},
		}
		rows := resp.GetRows()
		if len(rows) != len(want) {
			t.Fatalf("SetStock: got %d rows, want %d", len(rows), len(want))
		}
		for i, w := range want {
			if rows[i].GetStatus() != w.status || !strings.HasPrefix(rows[i].GetReason(), w.field) {
				t.Errorf("SetStock row %d: got %s %q, want %s naming %q", i, rows[i].GetStatus(), rows[i].GetReason(), w.status, w.field)
			}
		}
		if resp.GetApplied() != 2 || resp.GetRejected() != 5 || resp.GetIgnoredStale() != 1 || resp.GetRevision() == 0 {
			t.Errorf("SetStock counts: got applied %d rejected %d stale %d revision %d, want 2 5 1 and a revision",
				resp.GetApplied(), resp.GetRejected(), resp.GetIgnoredStale(), resp.GetRevision())
		}
		if total, per := h.available(t, "web", "ROSE"); total != 25 || fmt.Sprint(per) != "[20 5]" {
			t.Errorf("ROSE on web after the batch: got %d %v, want 25 [20 5]", total, per)
		}
		locs, err := h.adm.ListLocations(ctx, &stockdv1.ListLocationsRequest{})
		if err != nil || len(locs.GetLocations()) != 2 {
			t.Errorf("ListLocations after a row naming NOWHERE: got %v %v, want WH1 and WH2 only", locs.GetLocations(), err)
		}
	})

	t.Run("an adjustment that would overflow on_hand is rejected", func(t *testing.T) {
		h.setStock(t, "BIG", "WH1", math.MaxInt64-1, 1)
		resp, err := h.erp.AdjustStock(ctx, &stockdv1.AdjustStockRequest{Rows: []*stockdv1.StockAdjustment{
			{DeltaId: "d-overflow", Item: "BIG", Location: "WH1", DeltaBaseUnits: 10},
			{DeltaId: "d-zero", Item: "BIG", Location: "WH1", DeltaBaseUnits: 0},
			{DeltaId: "d-down", Item: "BIG", Location: "WH1", DeltaBaseUnits: -1},
		}})
		if err != nil {
			t.Fatalf("AdjustStock: %v", err)
		}
		rows := resp.GetRows()
		if len(rows) != 3 ||
			rows[0].GetStatus() != stockdv1.RowStatus_ROW_STATUS_REJECTED || !strings.HasPrefix(rows[0].GetReason(), "rows[0].delta_base_units") ||
			rows[1].GetStatus() != stockdv1.RowStatus_ROW_STATUS_REJECTED || !strings.HasPrefix(rows[1].GetReason(), "rows[1].delta_base_units") ||
			rows[2].GetStatus() != stockdv1.RowStatus_ROW_STATUS_APPLIED || rows[2].GetOnHandBaseUnits() != math.MaxInt64-2 {
			t.Fatalf("AdjustStock(+10 at MaxInt64-1, 0, -1): got %v, want rejected, rejected, applied at MaxInt64-2", rows)
		}
		if resp.GetApplied() != 1 || resp.GetRejected() != 2 {
			t.Errorf("AdjustStock counts: got applied %d rejected %d, want 1 2", resp.GetApplied(), resp.GetRejected())
		}
	})

	t.Run("an adjustment is applied once by its delta id", func(t *testing.T) {
		req := &stockdv1.AdjustStockRequest{Rows: []*stockdv1.StockAdjustment{
			{DeltaId: "d-receipt", Item: "ROSE", Location: "WH2", DeltaBaseUnits: 3, Reason: "receipt"},
		}}
		for i := range 2 {
			resp, err := h.erp.AdjustStock(ctx, req)
			if err != nil {
				t.Fatalf("AdjustStock(d-receipt) #%d: %v", i+1, err)
			}
			if r := resp.GetRows()[0]; r.GetStatus() != stockdv1.RowStatus_ROW_STATUS_APPLIED || r.GetOnHandBaseUnits() != 8 {
				t.Fatalf("AdjustStock(d-receipt +3 on 5) #%d: got %v, want APPLIED with on_hand 8", i+1, r)
			}
		}
		req.Rows[0].DeltaBaseUnits = 4
		resp, err := h.erp.AdjustStock(ctx, req)
		if err != nil {
			t.Fatalf("AdjustStock(d-receipt +4): %v", err)
		}
		if r := resp.GetRows()[0]; r.GetStatus() != stockdv1.RowStatus_ROW_STATUS_REJECTED || !strings.HasPrefix(r.GetReason(), "rows[0].delta_id") {
			t.Fatalf("AdjustStock(d-receipt reused with +4): got %v, want REJECTED naming rows[0].delta_id", r)
		}
	})
}
