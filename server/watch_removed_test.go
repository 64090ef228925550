package server

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// A SKU whose mapping is deleted on a channel that requires mappings stops
// resolving (GetAvailability answers NOT_FOUND): Watch and ListChanges say
// so instead of leaving a client with its last figure.

// seedMapped adds channel "shop" (WH1 and WH2, requiring mappings) and maps
// ROSE-1 (factor 1) and ROSE-6 (factor 6) to ROSE; after seed, shop sees
// ROSE-1 15 and ROSE-6 2.
func (h *harness) seedMapped(t testing.TB) {
	t.Helper()
	h.putShop(t, 0)
	h.putSku(t, "ROSE-1", "ROSE", 1)
	h.putSku(t, "ROSE-6", "ROSE", 6)
}

func (h *harness) putShop(t testing.TB, bufferBaseUnits int64) {
	t.Helper()
	if _, err := h.adm.PutChannel(testContext(t), &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{
		Id: "shop", Locations: []string{"WH1", "WH2"}, RequireSkuMapping: true, DefaultBufferBaseUnits: bufferBaseUnits}}); err != nil {
		t.Fatalf("PutChannel(shop, require_sku_mapping, buffer %d): %v", bufferBaseUnits, err)
	}
}

func (h *harness) putSku(t testing.TB, sku, item string, factor int64) uint64 {
	t.Helper()
	resp, err := h.adm.PutSku(testContext(t), &stockdv1.PutSkuRequest{Sku: &stockdv1.Sku{Sku: sku, Item: item, Factor: factor}})
	if err != nil {
		t.Fatalf("PutSku(%s -> %s x%d): %v", sku, item, factor, err)
	}
	return resp.GetRevision()
}

func (h *harness) deleteSku(t testing.TB, sku string) uint64 {
	t.Helper()
	resp, err := h.adm.DeleteSku(testContext(t), &stockdv1.DeleteSkuRequest{Sku: sku})
	if err != nil {
		t.Fatalf("DeleteSku(%s): %v", sku, err)
	}
	return resp.GetRevision()
}

// eventLines renders events as "SKU=available@revision", or
// "SKU removed@revision".
func eventLines(events []*stockdv1.WatchEvent) []string {
	out := []string{}
	for _, e := range events {
		if e.GetRemoved() {
			out = append(out, fmt.Sprintf("%s removed@%d", e.GetAvailability().GetSku(), e.GetRevision()))
			continue
		}
		out = append(out, fmt.Sprintf("%s=%d@%d", e.GetAvailability().GetSku(), e.GetAvailability().GetAvailableSkuUnits(), e.GetRevision()))
	}
	return out
}

func checkEventLines(t testing.TB, input string, got []*stockdv1.WatchEvent, want ...string) {
	t.Helper()
	if g := eventLines(got); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("%s: got events %v, want %v", input, g, want)
	}
}

// checkState fails unless c holds exactly want (SKU=available).
func (c *watchClient) checkState(t testing.TB, input string, want ...string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	got := []string{}
	for _, sku := range slices.Sorted(maps.Keys(c.last)) {
		got = append(got, fmt.Sprintf("%s=%d", sku, c.last[sku].GetAvailableSkuUnits()))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: got state %v, want %v", input, got, want)
	}
}

func TestWatchSendsARemovalWhenAMappingIsDeleted(t *testing.T) {
	h := newHarness(t, withWatchProgress(10*time.Millisecond))
	h.seed(t)
	h.seedMapped(t)
	all := h.watch(t, &stockdv1.WatchRequest{Channel: "shop"})
	one := h.watch(t, &stockdv1.WatchRequest{Channel: "shop", Skus: []string{"ROSE-6"}})
	all.waitMark(t, h.rev())
	one.waitMark(t, h.rev())
	all.checkState(t, "Watch(shop)", "ROSE-1=15", "ROSE-6=1")
	from := all.lastMark()

	del := h.deleteSku(t, "ROSE-6")
	all.waitMark(t, del)
	one.waitMark(t, del)
	want := fmt.Sprintf("ROSE-6 removed@%d", del)
	checkEventLines(t, "DeleteSku(ROSE-6), every SKU of shop", all.takeEvents(), want)
	checkEventLines(t, "DeleteSku(ROSE-6), skus [ROSE-6]", one.takeEvents(), want)
	all.checkState(t, "Watch(shop) after DeleteSku(ROSE-6)", "ROSE-1=15")

	t.Run("a resume from before the delete gets the removal", func(t *testing.T) {
		r := h.watch(t, &stockdv1.WatchRequest{Channel: "shop", FromRevision: from})
		r.waitMark(t, del)
		r.mu.Lock()
		resynced := r.msgs[0].GetResync()
		r.mu.Unlock()
		if resynced {
			t.Fatalf("resume from %d: got a resync, want the missed events", from)
		}
		checkEventLines(t, fmt.Sprintf("resume from %d across DeleteSku(ROSE-6)", from), r.takeEvents(), want)
		r.stop()
	})

	put := h.putSku(t, "ROSE-6", "ROSE", 2) // 5/2 at WH1, 2/2 at WH2
	all.waitMark(t, put)
	one.waitMark(t, put)
	checkEventLines(t, "PutSku(ROSE-6 x2) again", all.takeEvents(), fmt.Sprintf("ROSE-6=7@%d", put))
	checkEventLines(t, "PutSku(ROSE-6 x2) again, skus [ROSE-6]", one.takeEvents(), fmt.Sprintf("ROSE-6=7@%d", put))
	all.checkState(t, "Watch(shop) after the mapping is back", "ROSE-1=15", "ROSE-6=7")

	t.Run("a resume across the delete and the put gets the latest only", func(t *testing.T) {
		r := h.watch(t, &stockdv1.WatchRequest{Channel: "shop", SkuPrefix: "ROSE-6", FromRevision: from})
		r.waitMark(t, put)
		checkEventLines(t, fmt.Sprintf("resume from %d across DeleteSku and PutSku(ROSE-6)", from), r.takeEvents(), fmt.Sprintf("ROSE-6=7@%d", put))
	})
}

// TestWatchCoalescesARemovalWithALaterPut: a delete and a put of the
// mapping that the hub computes together leave only the figure.
func TestWatchCoalescesARemovalWithALaterPut(t *testing.T) {
	h := newHarness(t, withWatchProgress(10*time.Millisecond))
	h.seed(t)
	h.seedMapped(t)
	w := h.watch(t, &stockdv1.WatchRequest{Channel: "shop"})
	w.waitMark(t, h.rev())
	// The hub computes figures only after both are applied; it may have read
	// the delete alone from the change log (its figure then carries the
	// delete's revision, and the put moves nothing more).
	h.srv.watch.computeMu.Lock()
	del := h.deleteSku(t, "ROSE-6")
	put := h.putSku(t, "ROSE-6", "ROSE", 2)
	h.srv.watch.computeMu.Unlock()
	w.waitMark(t, put)
	got := eventLines(w.takeEvents())
	if fmt.Sprint(got) != fmt.Sprintf("[ROSE-6=7@%d]", del) && fmt.Sprint(got) != fmt.Sprintf("[ROSE-6=7@%d]", put) {
		t.Fatalf("DeleteSku(ROSE-6) at %d, then PutSku(ROSE-6 x2) at %d: got events %v, want ROSE-6=7 at either", del, put, got)
	}
}

func TestWatcherCoalescesARemovalLikeAnyEvent(t *testing.T) {
	w := &watcher{limit: 10, pos: map[store.SKU]int{}, wake: make(chan struct{}, 1)}
	figure := &hubEvent{sku: "A", moved: true, ev: &stockdv1.WatchEvent{
		Availability: &stockdv1.SkuAvailability{Sku: "A", AvailableSkuUnits: 3}, Revision: 4}}
	removed := &hubEvent{sku: "A", moved: true, ev: removedEvent("A", 2)}
	w.deliver([]*hubEvent{removed}, 2)
	w.deliver([]*hubEvent{figure}, 4)
	got, _, _, _ := w.take(10)
	checkEventLines(t, "A removed at 2, then A=3 at 4", got, "A=3@4")
	w.deliver([]*hubEvent{{sku: "A", moved: true, ev: removedEvent("A", 5)}}, 5)
	got, _, _, _ = w.take(10)
	checkEventLines(t, "then A removed at 5", got, "A removed@5")
}

// TestWatchRemovesASKUOnce: the removed SKU leaves the hub's baseline, so a
// channel change (every figure compared again) does not remove it again.
func TestWatchRemovesASKUOnce(t *testing.T) {
	h := newHarness(t, withWatchProgress(10*time.Millisecond))
	h.seed(t)
	h.seedMapped(t)
	all := h.watch(t, &stockdv1.WatchRequest{Channel: "shop"})
	one := h.watch(t, &stockdv1.WatchRequest{Channel: "shop", Skus: []string{"ROSE-6"}})
	all.waitMark(t, h.rev())
	one.waitMark(t, h.rev())
	del := h.deleteSku(t, "ROSE-6")
	all.waitMark(t, del)
	one.waitMark(t, del)
	all.takeEvents()
	one.takeEvents()

	h.putShop(t, 5)
	chg := h.rev()
	all.waitMark(t, chg)
	one.waitMark(t, chg)
	checkEventLines(t, "shop's default buffer 5 after DeleteSku(ROSE-6)", all.takeEvents(), fmt.Sprintf("ROSE-1=5@%d", chg))
	checkEventLines(t, "shop's default buffer 5 after DeleteSku(ROSE-6), skus [ROSE-6]", one.takeEvents())
}

func TestWatchStateTransferLeavesOutARemovedSKU(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	h.seedMapped(t)
	h.deleteSku(t, "ROSE-6")
	w := h.watch(t, &stockdv1.WatchRequest{Channel: "shop", SkuPrefix: "ROSE"})
	w.waitMark(t, h.rev())
	w.checkState(t, "Watch(shop) after DeleteSku(ROSE-6)", "ROSE-1=15")
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msgs {
		for _, e := range m.GetEvents() {
			if e.GetRemoved() {
				t.Fatalf("Watch(shop) after DeleteSku(ROSE-6): got removed event %v in the state transfer, want none", e)
			}
		}
	}
}

func TestListChangesReportsRemovedSKUs(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	h.seedMapped(t)
	since := h.rev()
	h.putSku(t, "TULIP-1", "TULIP", 1)
	h.deleteSku(t, "ROSE-6")
	h.setStock(t, "ROSE", "WH1", 4, 2)
	h.deleteSku(t, "TULIP-1")
	end := h.rev()
	ctx := testContext(t)

	var pages []string
	req := &stockdv1.ListChangesRequest{Channel: "shop", SinceRevision: since, PageSize: 2}
	for {
		resp, err := h.inv.ListChanges(ctx, req)
		if err != nil {
			t.Fatalf("ListChanges(%v): %v", req, err)
		}
		if resp.GetRevision() != end || resp.GetResyncRequired() {
			t.Fatalf("ListChanges(%v): got revision %d resync %v, want %d without resync", req, resp.GetRevision(), resp.GetResyncRequired(), end)
		}
		var skus []string
		for _, a := range resp.GetSkus() {
			skus = append(skus, fmt.Sprintf("%s=%d", a.GetSku(), a.GetAvailableSkuUnits()))
		}
		pages = append(pages, fmt.Sprintf("%v removed %v", skus, resp.GetRemovedSkus()))
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if want := "[[ROSE-1=9] removed [ROSE-6] [] removed [TULIP-1]]"; fmt.Sprint(pages) != want {
		t.Fatalf("ListChanges(shop, since %d) in pages of 2: got %v, want %s", since, pages, want)
	}

	// On web, which does not require mappings, ROSE-6 and TULIP-1 resolve as
	// items of their own: nothing is removed.
	resp, err := h.inv.ListChanges(ctx, &stockdv1.ListChangesRequest{Channel: "web", SinceRevision: since})
	if err != nil {
		t.Fatalf("ListChanges(web, since %d): %v", since, err)
	}
	var skus []string
	for _, a := range resp.GetSkus() {
		skus = append(skus, a.GetSku())
	}
	if fmt.Sprint(skus) != "[ROSE ROSE-1 ROSE-6 TULIP-1]" || len(resp.GetRemovedSkus()) != 0 {
		t.Fatalf("ListChanges(web, since %d): got skus %v removed %v, want [ROSE ROSE-1 ROSE-6 TULIP-1] and none removed", since, skus, resp.GetRemovedSkus())
	}
}
