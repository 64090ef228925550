package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// exportAll runs ExportStock to the end and returns its messages.
func exportAll(t *testing.T, h *harness, req *stockdv1.ExportStockRequest) ([]*stockdv1.ExportStockResponse, error) {
	t.Helper()
	stream, err := h.erp.ExportStock(testContext(t), req)
	if err != nil {
		return nil, err
	}
	var msgs []*stockdv1.ExportStockResponse
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return msgs, nil
		}
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, m)
	}
}

// counterLine spells a counter as item@location on_hand/version
// reserved/committed/oversold.
func counterLine(c *stockdv1.StockCounter) string {
	return fmt.Sprintf("%s@%s %d/v%d r%d c%d o%d", c.GetItem(), c.GetLocation(), c.GetOnHandBaseUnits(),
		c.GetVersion(), c.GetReservedBaseUnits(), c.GetCommittedBaseUnits(), c.GetOversoldBaseUnits())
}

// exportSeed is seed plus a hold of 4 and an order of 2 ROSE at WH1, whose
// count then drops to 3 (3 oversold), and TULIP counted negative at WH2 and
// at 8 at WH1.
func exportSeed(t *testing.T, h *harness) {
	t.Helper()
	h.seed(t)
	ctx := testContext(t)
	if _, err := h.inv.Reserve(ctx, reserveReq("cart-1", 4)); err != nil {
		t.Fatalf("Reserve(cart-1): %v", err)
	}
	if _, err := h.inv.Reserve(ctx, reserveReq("cart-2", 2)); err != nil {
		t.Fatalf("Reserve(cart-2): %v", err)
	}
	if _, err := h.inv.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: "web", ReservationId: "cart-2", OrderRef: "PO-2"}); err != nil {
		t.Fatalf("Confirm(cart-2): %v", err)
	}
	h.setStock(t, "ROSE", "WH1", 3, 2)
	h.setStock(t, "TULIP", "WH2", -3, 7)
	h.setStock(t, "TULIP", "WH1", 8, 5)
}

func TestExportStockPagesSortedCountersAtOneRevision(t *testing.T) {
	h := newHarness(t)
	exportSeed(t, h)
	msgs, err := exportAll(t, h, &stockdv1.ExportStockRequest{PageSize: 2})
	if err != nil {
		t.Fatalf("ExportStock(page_size 2): %v", err)
	}
	want := []string{
		"ROSE@WH1 3/v2 r4 c2 o3",
		"ROSE@WH2 5/v1 r0 c0 o0",
		"TULIP@WH1 8/v5 r0 c0 o0",
		"TULIP@WH2 -3/v7 r0 c0 o0",
	}
	var got, sizes []string
	for i, m := range msgs {
		sizes = append(sizes, strconv.Itoa(len(m.GetCounters())))
		for _, c := range m.GetCounters() {
			got = append(got, counterLine(c))
		}
		if m.GetRevision() != uint64(h.m.AppliedIndex()) {
			t.Errorf("message %d: got revision %d, want %d (the applied index)", i, m.GetRevision(), h.m.AppliedIndex())
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ExportStock(page_size 2): got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if s := strings.Join(sizes, ","); s != "2,2" {
		t.Errorf("ExportStock(page_size 2): got pages of %s counters, want 2,2", s)
	}
}

func TestExportStockFilters(t *testing.T) {
	h := newHarness(t)
	exportSeed(t, h)
	cases := []struct {
		name, item, location string
		want                 []string
	}{
		{"one item", "TULIP", "", []string{"TULIP@WH1", "TULIP@WH2"}},
		{"one location", "", "WH2", []string{"ROSE@WH2", "TULIP@WH2"}},
		{"one item at one location", "ROSE", "WH1", []string{"ROSE@WH1"}},
		{"an unknown item is one empty page", "LILY", "", nil},
		{"an undeclared location is one empty page", "", "WH9", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msgs, err := exportAll(t, h, &stockdv1.ExportStockRequest{Item: c.item, Location: c.location})
			if err != nil {
				t.Fatalf("ExportStock(item %q, location %q): %v", c.item, c.location, err)
			}
			if len(msgs) != 1 || msgs[0].GetRevision() != uint64(h.m.AppliedIndex()) {
				t.Fatalf("ExportStock(item %q, location %q): got %d messages %v, want 1 at revision %d",
					c.item, c.location, len(msgs), msgs, h.m.AppliedIndex())
			}
			var got []string
			for _, ct := range msgs[0].GetCounters() {
				got = append(got, ct.GetItem()+"@"+ct.GetLocation())
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("ExportStock(item %q, location %q): got %v, want %v", c.item, c.location, got, c.want)
			}
		})
	}
}

func TestExportStockRefusesBadInput(t *testing.T) {
	h := newHarness(t, withReadWait(20*time.Millisecond))
	h.seed(t)
	cases := []struct {
		name  string
		req   *stockdv1.ExportStockRequest
		code  codes.Code
		field string
	}{
		{"a page over 10,000 counters", &stockdv1.ExportStockRequest{PageSize: 10001}, codes.InvalidArgument, "page_size"},
		{"an item over 256 bytes", &stockdv1.ExportStockRequest{Item: strings.Repeat("x", 257)}, codes.InvalidArgument, "item"},
		{"a location with a control character", &stockdv1.ExportStockRequest{Location: "WH\x01"}, codes.InvalidArgument, "location"},
		{"a min_revision not applied in time", &stockdv1.ExportStockRequest{MinRevision: uint64(h.m.AppliedIndex()) + 1}, codes.Unavailable, "min_revision"},
		{"a linearizable read without a cluster", &stockdv1.ExportStockRequest{Linearizable: true}, codes.FailedPrecondition, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msgs, err := exportAll(t, h, c.req)
			checkStatus(t, fmt.Sprintf("ExportStock(%v)", c.req), err, c.code, c.field)
			if len(msgs) != 0 {
				t.Errorf("ExportStock(%v): got %d messages before the error, want 0", c.req, len(msgs))
			}
		})
	}
	if msgs, err := exportAll(t, h, &stockdv1.ExportStockRequest{PageSize: 10000}); err != nil || len(msgs) != 1 || len(msgs[0].GetCounters()) != 2 {
		t.Errorf("ExportStock(page_size 10000): got %v, %v; want one message of 2 counters", msgs, err)
	}
}

// TestExportStockIsOneCutWhileWritesApply checks that a write applied while
// an export is being read does not show in its later pages: every page
// carries the revision of the first and the counters as they were then.
// 10,000 one-counter pages are far more than the stream's flow-control
// window, so an export reading the live state page by page would show the
// write in its last pages.
func TestExportStockIsOneCutWhileWritesApply(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	rows := make([]*stockdv1.StockCount, 0, store.MaxRows)
	for i := range store.MaxRows / 2 {
		it := fmt.Sprintf("I%05d", i)
		rows = append(rows, &stockdv1.StockCount{Item: it, Location: "WH1", OnHandBaseUnits: 1, Version: 1},
			&stockdv1.StockCount{Item: it, Location: "WH2", OnHandBaseUnits: 2, Version: 1})
	}
	if resp, err := h.erp.SetStock(testContext(t), &stockdv1.SetStockRequest{Rows: rows}); err != nil || resp.GetApplied() != store.MaxRows {
		t.Fatalf("SetStock(%d rows): got %v, %v; want all applied", len(rows), resp.GetApplied(), err)
	}
	before := uint64(h.m.AppliedIndex())
	stream, err := h.erp.ExportStock(testContext(t), &stockdv1.ExportStockRequest{PageSize: 1})
	if err != nil {
		t.Fatalf("ExportStock: %v", err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatalf("ExportStock first page: %v", err)
	}
	h.setStock(t, "I04999", "WH2", 99, 2)
	h.setStock(t, "ZINNIA", "WH1", 4, 1)
	n := 1
	last := first
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("ExportStock page %d: %v", n, err)
		}
		if m.GetRevision() != before {
			t.Fatalf("ExportStock page %d: got revision %d, want %d as the first page", n, m.GetRevision(), before)
		}
		n++
		last = m
	}
	if first.GetRevision() != before || n != store.MaxRows+2 {
		t.Errorf("ExportStock: got revision %d and %d pages, want %d and %d", first.GetRevision(), n, before, store.MaxRows+2)
	}
	if got := counterLine(last.GetCounters()[0]); got != "ROSE@WH2 5/v1 r0 c0 o0" {
		t.Errorf("ExportStock last page: got %s, want ROSE@WH2 as it was at revision %d", got, before)
	}
	// A new export (I5) sees both writes.
	msgs, err := exportAll(t, h, &stockdv1.ExportStockRequest{Item: "I04999", Location: "WH2", MinRevision: before + 2})
	if err != nil || len(msgs) != 1 || len(msgs[0].GetCounters()) != 1 || msgs[0].GetCounters()[0].GetOnHandBaseUnits() != 99 {
		t.Errorf("ExportStock(I04999@WH2, min_revision %d): got %v, %v; want on hand 99", before+2, msgs, err)
	}
}

func TestExportStockLinearizableWaitsForReadIndex(t *testing.T) {
	fc := &fakeCluster{}
	h := newHarness(t, withCluster(fc), withReadWait(time.Minute))
	h.seed(t)
	target := h.m.AppliedIndex() + 1
	called := make(chan struct{}, 1)
	fc.barrier = func(context.Context) (store.Revision, error) {
		called <- struct{}{}
		return target, nil
	}
	type answer struct {
		msgs []*stockdv1.ExportStockResponse
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		msgs, err := exportAll(t, h, &stockdv1.ExportStockRequest{Item: "ROSE", Linearizable: true})
		done <- answer{msgs, err}
	}()
	<-called
	// The write lands after the barrier answered; an export that did not
	// wait for the read index would show the old 10.
	h.setStock(t, "ROSE", "WH1", 100, 2)
	a := <-done
	if a.err != nil || len(a.msgs) != 1 || a.msgs[0].GetRevision() < uint64(target) ||
		len(a.msgs[0].GetCounters()) != 2 || a.msgs[0].GetCounters()[0].GetOnHandBaseUnits() != 100 {
		t.Fatalf("ExportStock(ROSE, linearizable, read index %d): got %v, %v; want one page at >= %d with ROSE@WH1 100",
			target, a.msgs, a.err, target)
	}
}
