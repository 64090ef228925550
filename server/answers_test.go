package server

import (
	"fmt"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/stockd/stockd/api/stockdv1"
)

// Answers whose messages are pooled (answers.go) stay right while callers
// read different SKUs at once (under -race a message reused before gRPC
// marshalled it shows as a race), and every lent answer comes back, a
// refused read's included.
func TestPooledAnswersStayRightAndComeBack(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	if _, err := h.adm.PutChannel(testContext(t), &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: "strict", Locations: []string{"WH1"}, RequireSkuMapping: true}}); err != nil {
		t.Fatalf("PutChannel(strict): %v", err)
	}
	const items = 200
	var rows []*stockdv1.StockCount
	for i := range items {
		rows = append(rows, &stockdv1.StockCount{Item: fmt.Sprintf("P-%03d", i), Location: "WH1", OnHandBaseUnits: int64(i), Version: 1})
	}
	if _, err := h.erp.SetStock(testContext(t), &stockdv1.SetStockRequest{Rows: rows}); err != nil {
		t.Fatalf("SetStock: %v", err)
	}
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Go(func() {
			for call := range 25 {
				n := minPooledSKUs + (c*7+call)%40
				skus := make([]string, n)
				for i := range skus {
					skus[i] = fmt.Sprintf("P-%03d", (c*31+call*13+i)%items)
				}
				view := stockdv1.AvailabilityView(call % 3)
				resp, err := h.inv.GetAvailability(testContext(t), &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: skus, View: view})
				if err != nil {
					t.Errorf("GetAvailability of %d skus: %v", n, err)
					return
				}
				for i, a := range resp.GetSkus() {
					var want int64
					fmt.Sscanf(skus[i], "P-%d", &want)
					if a.GetSku() != skus[i] || a.GetAvailableSkuUnits() != want {
						t.Errorf("skus[%d] of %d (%s): got %s = %d, want %s = %d", i, n, view, a.GetSku(), a.GetAvailableSkuUnits(), skus[i], want)
						return
					}
				}
				if len(resp.GetSkus()) != n {
					t.Errorf("GetAvailability of %d skus: got %d", n, len(resp.GetSkus()))
					return
				}
			}
		})
	}
	wg.Wait()
	// A read refused half way (an unmapped SKU on a channel requiring
	// mappings) gives its messages back too.
	skus := make([]string, minPooledSKUs)
	for i := range skus {
		skus[i] = "UNMAPPED"
	}
	_, err := h.inv.GetAvailability(testContext(t), &stockdv1.GetAvailabilityRequest{Channel: "strict", Skus: skus})
	checkStatus(t, "GetAvailability of unmapped skus on strict", err, codes.NotFound, "skus[0]")
	// lentAnswers is process-wide: this holds because no server test runs
	// in parallel with another.
	lent := 0
	lentAnswers.Range(func(_, _ any) bool { lent++; return true })
	if lent != 0 {
		t.Errorf("after every call ended: %d answers still lent, want 0", lent)
	}
}
