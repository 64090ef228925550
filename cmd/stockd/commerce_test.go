package main

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stockd/stockd/api/stockdv1"
)

// commerce is one running stockd with a catalog for the issue 4 scenarios:
// locations ams, fra, lyon; channel "web" sees ams then fra, "rep" sees ams
// and lyon, "market" sees fra only. Each scenario uses its own items.
type commerce struct {
	t *testing.T
	c *clients
}

func newCommerce(t *testing.T) *commerce {
	t.Helper()
	p := startStockd(t, t.TempDir())
	c := dial(t, p.addr)
	ctx := ctxT(t)
	for _, l := range []string{"ams", "fra", "lyon"} {
		if _, err := c.admin.PutLocation(ctx, &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: l}}); err != nil {
			t.Fatalf("PutLocation %s: %v", l, err)
		}
	}
	for id, locs := range map[string][]string{"web": {"ams", "fra"}, "rep": {"ams", "lyon"}, "market": {"fra"}} {
		if _, err := c.admin.PutChannel(ctx, &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: id, Locations: locs}}); err != nil {
			t.Fatalf("PutChannel %s: %v", id, err)
		}
	}
	return &commerce{t: t, c: c}
}

// stock sets on-hand counts "ITEM@LOC" -> units with a fresh version each time.
func (k *commerce) stock(t *testing.T, counts map[string]int64) {
	t.Helper()
	var rows []*stockdv1.StockCount
	for key, n := range counts {
		item, loc := splitAt(key)
		rows = append(rows, &stockdv1.StockCount{Item: item, Location: loc, OnHandBaseUnits: n, Version: uint64(time.Now().UnixNano())})
	}
	resp, err := k.c.erp.SetStock(ctxT(t), &stockdv1.SetStockRequest{Rows: rows})
	if err != nil || resp.GetApplied() != uint32(len(rows)) {
		t.Fatalf("SetStock %v: got %v, %v; want all applied", counts, resp, err)
	}
}

func splitAt(key string) (string, string) {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '@' {
			return key[:i], key[i+1:]
		}
	}
	return key, ""
}

// avail reads one SKU's figure for a channel, read-your-writes at rev.
func (k *commerce) avail(t *testing.T, ch, sku string, rev uint64) *stockdv1.SkuAvailability {
	t.Helper()
	resp, err := k.c.inv.GetAvailability(ctxT(t), &stockdv1.GetAvailabilityRequest{Channel: ch, Skus: []string{sku}, MinRevision: rev})
	if err != nil {
		t.Fatalf("GetAvailability %s %s: %v", ch, sku, err)
	}
	return resp.GetSkus()[0]
}

func (k *commerce) reserve(ch, id string, lines ...*stockdv1.ReserveLine) (*stockdv1.ReserveResponse, error) {
	return k.c.inv.Reserve(ctxT(k.t), &stockdv1.ReserveRequest{Channel: ch, ReservationId: id, Lines: lines})
}

func line(sku string, qty int64) *stockdv1.ReserveLine {
	return &stockdv1.ReserveLine{Sku: sku, Quantity: qty}
}

// allocations renders a line's allocations as "loc=base,loc=base".
func allocations(l *stockdv1.ReservationLine) string {
	s := ""
	for i, a := range l.GetAllocations() {
		if i > 0 {
			s += ","
		}
		s += a.GetLocation() + "=" + strconv.FormatInt(a.GetQuantityBaseUnits(), 10)
	}
	return s
}

// TestCommerce runs the staging scenarios every ERP-to-storefront
// integration is checked with, end to end over gRPC against a real stockd.
func TestCommerce(t *testing.T) {
	k := newCommerce(t)

	t.Run("a checkout that empties a SKU leaves 0 and the next buyer cannot reserve (I1)", func(t *testing.T) {
		k.stock(t, map[string]int64{"MUG@ams": 3, "MUG@fra": 2})
		r, err := k.reserve("web", "empty-1", line("MUG", 5))
		if err != nil {
			t.Fatalf("Reserve MUG x5 with 5 on hand: got %v, want OK", err)
		}
		if _, err := k.c.inv.Confirm(ctxT(t), &stockdv1.ConfirmRequest{Channel: "web", ReservationId: "empty-1", OrderRef: "SO-1"}); err != nil {
			t.Fatalf("Confirm: %v", err)
		}
		if got := k.avail(t, "web", "MUG", r.GetRevision()).GetAvailableSkuUnits(); got != 0 {
			t.Fatalf("web MUG after emptying checkout: got %d, want 0", got)
		}
		_, err = k.reserve("web", "empty-2", line("MUG", 1))
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("Reserve MUG x1 when empty: got %v, want FAILED_PRECONDITION", err)
		}
	})

	t.Run("a multi-warehouse order prefers one location, else splits in priority order", func(t *testing.T) {
		// ams cannot fill CUP, so the whole cart goes to fra (no split shipment).
		k.stock(t, map[string]int64{"PLATE@ams": 10, "CUP@ams": 1, "PLATE@fra": 4, "CUP@fra": 4})
		r, err := k.reserve("web", "multi-1", line("PLATE", 3), line("CUP", 2))
		if err != nil {
			t.Fatalf("Reserve PLATE x3 + CUP x2: %v", err)
		}
		for i, want := range []string{"fra=3", "fra=2"} {
			if got := allocations(r.GetReservation().GetLines()[i]); got != want {
				t.Errorf("single-location cart line %d: got %s, want %s", i, got, want)
			}
		}
		// No single location has 11 plates left (ams 10, fra 1): split, ams first.
		r, err = k.reserve("web", "multi-2", line("PLATE", 11))
		if err != nil {
			t.Fatalf("Reserve PLATE x11: %v", err)
		}
		if got := allocations(r.GetReservation().GetLines()[0]); got != "ams=10,fra=1" {
			t.Errorf("split line: got %s, want ams=10,fra=1", got)
		}
	})

	t.Run("a return raises availability on every channel that sees the location", func(t *testing.T) {
		k.stock(t, map[string]int64{"BOWL@ams": 2, "BOWL@fra": 1})
		before := map[string]int64{}
		for _, ch := range []string{"web", "rep", "market"} {
			before[ch] = k.avail(t, ch, "BOWL", 0).GetAvailableSkuUnits()
		}
		resp, err := k.c.erp.AdjustStock(ctxT(t), &stockdv1.AdjustStockRequest{Rows: []*stockdv1.StockAdjustment{
			{DeltaId: "return-1", Item: "BOWL", Location: "ams", DeltaBaseUnits: 4, Reason: "return"}}})
		if err != nil || resp.GetApplied() != 1 {
			t.Fatalf("AdjustStock +4: got %v, %v", resp, err)
		}
		want := map[string]int64{"web": before["web"] + 4, "rep": before["rep"] + 4, "market": before["market"]}
		for ch, w := range want {
			if got := k.avail(t, ch, "BOWL", resp.GetRevision()).GetAvailableSkuUnits(); got != w {
				t.Errorf("%s BOWL after a +4 return at ams: got %d, want %d", ch, got, w)
			}
		}
	})

	t.Run("two channels racing for the last units: exactly one wins (I1)", func(t *testing.T) {
		for round := range 20 {
			item := "LAST-" + strconv.Itoa(round)
			k.stock(t, map[string]int64{item + "@ams": 2})
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i, ch := range []string{"web", "rep"} {
				wg.Go(func() { _, errs[i] = k.reserve(ch, "race-"+item, line(item, 2)) })
			}
			wg.Wait()
			won := 0
			for i, err := range errs {
				switch status.Code(err) {
				case codes.OK:
					won++
				case codes.FailedPrecondition:
				default:
					t.Fatalf("round %d channel %d: got %v, want OK or FAILED_PRECONDITION", round, i, err)
				}
			}
			if won != 1 {
				t.Fatalf("round %d: two channels reserved the last 2 units, %d won; want exactly 1", round, won)
			}
		}
	})

	t.Run("pack-size rounding at the boundary", func(t *testing.T) {
		ctx := ctxT(t)
		if _, err := k.c.admin.PutSku(ctx, &stockdv1.PutSkuRequest{Sku: &stockdv1.Sku{Sku: "ROSE-CASE12", Item: "ROSE", Factor: 12}}); err != nil {
			t.Fatalf("PutSku: %v", err)
		}
		k.stock(t, map[string]int64{"ROSE@ams": 23, "ROSE@fra": 11})
		a := k.avail(t, "web", "ROSE-CASE12", 0)
		if a.GetAvailableSkuUnits() != 1 || a.GetFactor() != 12 {
			t.Fatalf("ROSE-CASE12 with 23 at ams and 11 at fra: got %d cases (factor %d), want 1 (12)", a.GetAvailableSkuUnits(), a.GetFactor())
		}
		if _, err := k.reserve("web", "case-2", line("ROSE-CASE12", 2)); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("Reserve 2 cases with 23+11 loose units: got %v, want FAILED_PRECONDITION (cases do not span locations)", err)
		}
		k.stock(t, map[string]int64{"ROSE@ams": 24})
		r, err := k.reserve("web", "case-2b", line("ROSE-CASE12", 2))
		if err != nil {
			t.Fatalf("Reserve 2 cases with 24 at ams: %v", err)
		}
		if got := allocations(r.GetReservation().GetLines()[0]); got != "ams=24" {
			t.Fatalf("2 cases of 12: got %s, want ams=24", got)
		}
		// The loose SKU draws on the same pool: 11 at fra are left.
		if got := k.avail(t, "web", "ROSE", r.GetRevision()).GetAvailableSkuUnits(); got != 11 {
			t.Fatalf("ROSE (each) after 2 cases held: got %d, want 11", got)
		}
	})

	t.Run("compare-and-reserve: a moved figure is ABORTED with the current one", func(t *testing.T) {
		k.stock(t, map[string]int64{"LAMP@ams": 5})
		seen := k.avail(t, "web", "LAMP", 0)
		if seen.GetModRevision() == 0 {
			t.Fatal("LAMP mod_revision: got 0, want the revision of its last change")
		}
		other, err := k.reserve("rep", "car-other", line("LAMP", 1))
		if err != nil {
			t.Fatalf("Reserve by rep: %v", err)
		}
		l := line("LAMP", 1)
		l.ExpectedModRevision = seen.GetModRevision()
		_, err = k.reserve("web", "car-1", l)
		if status.Code(err) != codes.Aborted {
			t.Fatalf("Reserve expecting mod_revision %d after rep reserved: got %v, want ABORTED", seen.GetModRevision(), err)
		}
		now := k.avail(t, "web", "LAMP", other.GetRevision())
		var info *errdetails.ErrorInfo
		for _, d := range status.Convert(err).Details() {
			if e, ok := d.(*errdetails.ErrorInfo); ok {
				info = e
			}
		}
		if info == nil || info.GetMetadata()["mod_revision"] != strconv.FormatUint(now.GetModRevision(), 10) ||
			info.GetMetadata()["available_sku_units"] != strconv.FormatInt(now.GetAvailableSkuUnits(), 10) {
			t.Fatalf("ABORTED detail: got %v, want mod_revision %d available %d", info, now.GetModRevision(), now.GetAvailableSkuUnits())
		}
		l.ExpectedModRevision = now.GetModRevision()
		if _, err := k.reserve("web", "car-2", l); err != nil {
			t.Fatalf("Reserve expecting the current mod_revision: got %v, want OK", err)
		}
	})

	t.Run("backorders take incoming supply and never more than it has", func(t *testing.T) {
		ctx := ctxT(t)
		eta := time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC)
		resp, err := k.c.erp.SetIncoming(ctx, &stockdv1.SetIncomingRequest{Lines: []*stockdv1.IncomingLine{
			{PoLineId: "PO-1/1", Item: "VASE", Location: "ams", QuantityBaseUnits: 10, Eta: timestamppb.New(eta), Version: 1}}})
		if err != nil || resp.GetApplied() != 1 {
			t.Fatalf("SetIncoming: got %v, %v", resp, err)
		}
		k.stock(t, map[string]int64{"VASE@ams": 2})
		l := line("VASE", 12)
		l.AllowBackorder = true
		r, err := k.reserve("web", "bo-1", l)
		if err != nil {
			t.Fatalf("Reserve 12 with 2 on hand and 10 incoming: %v", err)
		}
		got := r.GetReservation().GetLines()[0]
		if !got.GetPromisedAt().AsTime().Equal(eta) {
			t.Fatalf("promised date: got %v, want %v", got.GetPromisedAt().AsTime(), eta)
		}
		l = line("VASE", 1)
		l.AllowBackorder = true
		if _, err := k.reserve("web", "bo-2", l); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("backorder beyond incoming: got %v, want FAILED_PRECONDITION", err)
		}
	})

	t.Run("a retired SKU with live holds is refused until they drain", func(t *testing.T) {
		ctx := ctxT(t)
		if _, err := k.c.admin.PutSku(ctx, &stockdv1.PutSkuRequest{Sku: &stockdv1.Sku{Sku: "TEA-6", Item: "TEA", Factor: 6}}); err != nil {
			t.Fatalf("PutSku: %v", err)
		}
		k.stock(t, map[string]int64{"TEA@ams": 12})
		if _, err := k.reserve("web", "tea-1", line("TEA-6", 1)); err != nil {
			t.Fatalf("Reserve: %v", err)
		}
		if _, err := k.c.admin.DeleteSku(ctx, &stockdv1.DeleteSkuRequest{Sku: "TEA-6"}); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("DeleteSku with a live hold: got %v, want FAILED_PRECONDITION", err)
		}
		n, err := k.c.inv.ReleaseAll(ctx, &stockdv1.ReleaseAllRequest{Channel: "web", ReleaseAllId: "incident-1"})
		if err != nil || n.GetReleased() == 0 {
			t.Fatalf("ReleaseAll web: got %v, %v; want the live holds released", n, err)
		}
		again, err := k.c.inv.ReleaseAll(ctx, &stockdv1.ReleaseAllRequest{Channel: "web", ReleaseAllId: "incident-1"})
		if err != nil || again.GetReleased() != n.GetReleased() {
			t.Fatalf("ReleaseAll retry: got %v, %v; want the first count %d", again, err, n.GetReleased())
		}
		if _, err := k.c.admin.DeleteSku(ctx, &stockdv1.DeleteSkuRequest{Sku: "TEA-6"}); err != nil {
			t.Fatalf("DeleteSku after the holds drained: %v", err)
		}
	})
}
