package server

import (
	"testing"

	"github.com/stockd/stockd/api/stockdv1"
)

// TestSetStockRetryAfterAdjustAcrossFeatureVersions: SetStock is proposed
// with same_version_stale, so an ERP retry of an applied row after an
// adjustment moved the count is IGNORED_STALE (not REJECTED and
// dead-lettered: bench/chaos seed 1795917697793875867). While a voter lacks
// feature 3 the leader refuses that form before proposing and the server
// proposes the older one instead: the write still lands, and the retry gets
// the older answer (REJECTED, carrying the held version).
func TestSetStockRetryAfterAdjustAcrossFeatureVersions(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxFeature uint32
		proposals  int // for the first SetStock
		retry      stockdv1.RowStatus
	}{
		{"every voter at feature 3", 0, 1, stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE},
		{"a voter still at feature 2", 2, 2, stockdv1.RowStatus_ROW_STATUS_REJECTED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.seed(t)
			h.p.mu.Lock()
			h.p.maxFeature = tc.maxFeature
			h.p.mu.Unlock()
			ctx := testContext(t)
			set := &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{{Item: "TULIP", Location: "WH1", OnHandBaseUnits: 113, Version: 21}}}
			before := h.p.count()
			resp, err := h.erp.SetStock(ctx, set)
			if err != nil || resp.GetApplied() != 1 {
				t.Fatalf("SetStock v21: got %v, %v; want applied", resp, err)
			}
			if got := h.p.count() - before; got != tc.proposals {
				t.Fatalf("SetStock v21: %d proposals, want %d", got, tc.proposals)
			}
			adj, err := h.erp.AdjustStock(ctx, &stockdv1.AdjustStockRequest{Rows: []*stockdv1.StockAdjustment{
				{DeltaId: "d1", Item: "TULIP", Location: "WH1", DeltaBaseUnits: -3}}})
			if err != nil || adj.GetApplied() != 1 {
				t.Fatalf("AdjustStock -3: got %v, %v", adj, err)
			}
			resp, err = h.erp.SetStock(ctx, set)
			if err != nil {
				t.Fatalf("retry of SetStock v21: %v", err)
			}
			r := resp.GetRows()[0]
			if r.GetStatus() != tc.retry || r.GetVersion() != 21 || r.GetOnHandBaseUnits() != 110 {
				t.Fatalf("retry of SetStock v21 after -3: got %v, want %v carrying version 21 and on_hand 110", r, tc.retry)
			}
		})
	}
}
