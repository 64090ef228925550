package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// figuresDigest hashes what channel web shows of every item: per location
// on_hand, reserved, committed and whether the item is known. Two machines
// with equal figures for these items have equal digests.
func figuresDigest(t *testing.T, m *store.Machine, items []string) [32]byte {
	t.Helper()
	h := sha256.New()
	var a store.SKUAvailability
	var buf [8]byte
	for _, it := range items {
		if err := m.Availability("web", store.SKU(it), &a); err != nil {
			t.Fatalf("Availability(web, %s): %v", it, err)
		}
		h.Write([]byte(it))
		if a.Known {
			h.Write([]byte{1})
		}
		for _, l := range a.Locations {
			for _, v := range []store.Units{l.OnHand, l.Reserved, l.Committed} {
				binary.LittleEndian.PutUint64(buf[:], uint64(v))
				h.Write(buf[:])
			}
		}
	}
	return [32]byte(h.Sum(nil))
}

// backfillRows are n items at WH1 and WH2 (2n rows) at version v; row 7 has
// version 0, which is rejected.
func backfillRows(n int, v uint64) ([]*stockdv1.StockCount, []string) {
	var rows []*stockdv1.StockCount
	var items []string
	for i := range n {
		it := "I" + strconv.Itoa(i)
		items = append(items, it)
		rows = append(rows, &stockdv1.StockCount{Item: it, Location: "WH1", OnHandBaseUnits: int64(i % 97), Version: v},
			&stockdv1.StockCount{Item: it, Location: "WH2", OnHandBaseUnits: int64(i % 13), Version: v})
	}
	rows[7].Version = 0
	return rows, items
}

func sendBackfill(t *testing.T, stream stockdv1.Erp_BackfillClient, gen string, rows []*stockdv1.StockCount, chunk int) {
	t.Helper()
	for i := 0; i < len(rows); i += chunk {
		req := &stockdv1.BackfillRequest{Rows: rows[i:min(i+chunk, len(rows))]}
		if i == 0 {
			req.GenerationId = gen
		}
		if err := stream.Send(req); err != nil {
			t.Fatalf("Send chunk at row %d: %v", i, err)
		}
	}
}

func TestBackfill100kRowsEqualsSetStock(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	rows, items := backfillRows(50_000, 3)
	items = append(items, "ROSE")

	// The reference: the same rows through SetStock batches on another machine.
	ref := store.New(store.DefaultConfig())
	var idx store.Revision
	apply := func(c *logv1.Command) store.Result {
		idx++
		return ref.Apply(idx, store.Timestamp(t0), c)
	}
	apply(&logv1.Command{Kind: &logv1.Command_PutLocation{PutLocation: &logv1.PutLocation{Id: "WH1", Name: "WH1"}}})
	apply(&logv1.Command{Kind: &logv1.Command_PutLocation{PutLocation: &logv1.PutLocation{Id: "WH2", Name: "WH2"}}})
	apply(&logv1.Command{Kind: &logv1.Command_PutChannel{PutChannel: &logv1.PutChannel{Id: "web", Locations: []string{"WH1", "WH2"}}}})
	setRows := func(rs []*stockdv1.StockCount) {
		cmd, err := setStockCommand(&stockdv1.SetStockRequest{Rows: rs})
		if err != nil {
			t.Fatalf("setStockCommand: %v", err)
		}
		if res := apply(cmd); res.Err != nil {
			t.Fatalf("reference SetStock: %v", res.Err)
		}
	}
	setRows([]*stockdv1.StockCount{{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 10, Version: 1},
		{Item: "ROSE", Location: "WH2", OnHandBaseUnits: 5, Version: 1}})
	for i := 0; i < len(rows); i += store.MaxRows {
		setRows(rows[i:min(i+store.MaxRows, len(rows))])
	}

	before := figuresDigest(t, h.m, items)
	stream, err := h.erp.Backfill(testContext(t))
	if err != nil {
		t.Fatalf("Backfill: %v", err)
	}
	sendBackfill(t, stream, "full-1", rows[:len(rows)-store.MaxRows], store.MaxRows)
	if got := figuresDigest(t, h.m, items); got != before {
		t.Errorf("figures after 9 of 10 chunks: got digest %x, want %x (unchanged until commit)", got, before)
	}
	if err := stream.Send(&stockdv1.BackfillRequest{Rows: rows[len(rows)-store.MaxRows:], Commit: true}); err != nil {
		t.Fatalf("Send last chunk with commit: %v", err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("CloseAndRecv: %v", err)
	}
	if resp.GetRows() != 100_000 || resp.GetApplied() != 99_999 || resp.GetRejected() != 1 || resp.GetIgnoredStale() != 0 || resp.GetPruned() != 0 {
		t.Errorf("response: got rows %d applied %d stale %d rejected %d pruned %d, want 100000 99999 0 1 0",
			resp.GetRows(), resp.GetApplied(), resp.GetIgnoredStale(), resp.GetRejected(), resp.GetPruned())
	}
	if rr := resp.GetRejectedRows(); len(rr) != 1 || rr[0].GetRow() != 7 || rr[0].GetKey() != "I3@WH2" || rr[0].GetSource() != "backfill" {
		t.Errorf("rejected rows: got %v, want row 7 I3@WH2 from backfill", rr)
	}
	if got, want := figuresDigest(t, h.m, items), figuresDigest(t, ref, items); got != want {
		t.Errorf("figures digest after backfill: got %x, want %x as SetStock of the same rows", got, want)
	}
	if resp.GetRevision() != uint64(h.m.AppliedIndex()) {
		t.Errorf("revision: got %d, want %d", resp.GetRevision(), h.m.AppliedIndex())
	}
}

func TestBackfillStreamCutLeavesOldState(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	rows, items := backfillRows(5000, 2)
	items = append(items, "ROSE")
	rows = append(rows, &stockdv1.StockCount{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 99, Version: 2})
	before := figuresDigest(t, h.m, items)

	// Cancelled halfway.
	ctx, cancel := context.WithCancel(testContext(t))
	stream, err := h.erp.Backfill(ctx)
	if err != nil {
		t.Fatalf("Backfill: %v", err)
	}
	sendBackfill(t, stream, "cut", rows[:len(rows)/2], 1000)
	cancel()
	_, err = stream.CloseAndRecv()
	checkStatus(t, "stream cancelled halfway", err, codes.Canceled, "")
	if got := figuresDigest(t, h.m, items); got != before {
		t.Errorf("figures after a cancelled backfill: got %x, want %x", got, before)
	}

	// Ended without commit.
	stream, err = h.erp.Backfill(testContext(t))
	if err != nil {
		t.Fatalf("Backfill: %v", err)
	}
	sendBackfill(t, stream, "eof", rows, 1000)
	_, err = stream.CloseAndRecv()
	checkStatus(t, "stream ended without commit", err, codes.FailedPrecondition, "commit")
	if got := figuresDigest(t, h.m, items); got != before {
		t.Errorf("figures after a backfill without commit: got %x, want %x", got, before)
	}

	// A later generation replaces the staging and applies only its own rows.
	stream, err = h.erp.Backfill(testContext(t))
	if err != nil {
		t.Fatalf("Backfill: %v", err)
	}
	if err := stream.Send(&stockdv1.BackfillRequest{GenerationId: "next", Commit: true,
		Rows: []*stockdv1.StockCount{{Item: "ROSE", Location: "WH2", OnHandBaseUnits: 7, Version: 2}}}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil || resp.GetApplied() != 1 || resp.GetRows() != 1 {
		t.Fatalf("next generation: got %v, %v, want 1 row applied", resp, err)
	}
	if got, per := h.available(t, "web", "ROSE"); got != 17 || per[0] != 10 || per[1] != 7 {
		t.Errorf("ROSE after the next generation: got %d %v, want 17 [10 7]", got, per)
	}
	if got, _ := h.available(t, "web", "I1"); got != 0 {
		t.Errorf("I1 after the next generation: got %d, want 0 (never committed)", got)
	}
}

func TestBackfillPruneZeroesOnlyWhatTheGenerationLacked(t *testing.T) {
	h := newHarness(t)
	h.seed(t) // ROSE 10 at WH1, 5 at WH2
	h.setStock(t, "TULIP", "WH1", 4, 1)
	h.setStock(t, "LILY", "WH2", 3, 1)
	stream, err := h.erp.Backfill(testContext(t))
	if err != nil {
		t.Fatalf("Backfill: %v", err)
	}
	if err := stream.Send(&stockdv1.BackfillRequest{GenerationId: "nightly", Rows: []*stockdv1.StockCount{
		{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 20, Version: 2},
		{Item: "LILY", Location: "WH2", OnHandBaseUnits: 3, Version: 1}, // same count, same version: stale
	}}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if err := stream.Send(&stockdv1.BackfillRequest{Commit: true, Prune: true}); err != nil {
		t.Fatalf("Send commit: %v", err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("CloseAndRecv: %v", err)
	}
	if resp.GetPruned() != 2 || resp.GetApplied() != 1 || resp.GetIgnoredStale() != 1 {
		t.Errorf("response: got %v, want pruned 2 (ROSE@WH2, TULIP@WH1), applied 1, stale 1", resp)
	}
	for _, c := range []struct {
		sku  string
		want []int64
	}{{"ROSE", []int64{20, 0}}, {"TULIP", []int64{0, 0}}, {"LILY", []int64{0, 3}}} {
		if _, per := h.available(t, "web", c.sku); len(per) != 2 || per[0] != c.want[0] || per[1] != c.want[1] {
			t.Errorf("%s after prune: got %v, want %v", c.sku, per, c.want)
		}
	}
}

func TestBackfillInvalidStreams(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	big := make([]*stockdv1.StockCount, store.MaxRows+1)
	for i := range big {
		big[i] = &stockdv1.StockCount{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 1, Version: 9}
	}
	one := []*stockdv1.StockCount{{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 1, Version: 9}}
	cases := []struct {
		name  string
		msgs  []*stockdv1.BackfillRequest
		field string
	}{
		{"no generation id", []*stockdv1.BackfillRequest{{Rows: one, Commit: true}}, "generation_id"},
		{"changed generation id", []*stockdv1.BackfillRequest{{GenerationId: "a", Rows: one}, {GenerationId: "b", Commit: true}}, "generation_id"},
		{"too many rows", []*stockdv1.BackfillRequest{{GenerationId: "a", Rows: big}}, "rows"},
		{"commit without rows", []*stockdv1.BackfillRequest{{GenerationId: "a", Commit: true}}, "rows"},
	}
	for _, c := range cases {
		stream, err := h.erp.Backfill(testContext(t))
		if err != nil {
			t.Fatalf("Backfill: %v", err)
		}
		for _, m := range c.msgs {
			if err := stream.Send(m); err != nil {
				break // the server answered already; CloseAndRecv has it
			}
		}
		_, err = stream.CloseAndRecv()
		checkStatus(t, c.name, err, codes.InvalidArgument, c.field)
	}
	if got, per := h.available(t, "web", "ROSE"); got != 15 || per[0] != 10 {
		t.Errorf("ROSE after refused streams: got %d %v, want 15 [10 5]", got, per)
	}
}
