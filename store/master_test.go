package store_test

import (
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// counterFigures reads every counter of items at locs through channel "all",
// which sees every location with no buffer.
func counterFigures(t interface{ Fatal(...any) }, m *store.Machine, items []string) map[string]store.LocationAvailability {
	out := map[string]store.LocationAvailability{}
	var a store.SKUAvailability
	for _, it := range items {
		if err := m.Availability("all", store.SKU(it), &a); err != nil {
			t.Fatal(err)
		}
		for _, l := range a.Locations {
			out[it+"@"+string(l.Location)] = l
		}
	}
	return out
}

// TestI6OnlyTheERPMovesOnHand runs random sequences of every command stockd's
// own callers can send (reserve, confirm, release, ticks that expire holds,
// buffers, locations, channels) and checks that no counter's on_hand or ERP
// version ever moves; then that ERP commands move on_hand without touching
// the holds stockd owns (I6).
func TestI6OnlyTheERPMovesOnHand(t *testing.T) {
	items := []string{"rose", "tulip", "lily"}
	locs := []string{"ams", "fra"}
	rapid.Check(t, func(rt *rapid.T) {
		m := store.New(store.DefaultConfig())
		idx, now := store.Revision(0), store.Timestamp(1e9)
		apply := func(c *logv1.Command) store.Result {
			idx++
			return m.Apply(idx, now, c)
		}
		for _, l := range locs {
			apply(loc(l))
		}
		apply(channel("all", 0, locs...))
		apply(channel("web", 1, "fra", "ams"))
		var rows []*logv1.StockCount
		for i, it := range items {
			for j, l := range locs {
				rows = append(rows, row(it, l, int64(5+3*i+j), 1))
			}
		}
		apply(setStock(rows...))
		before := counterFigures(rt, m, items)

		for step := 0; step < 40; step++ {
			id := fmt.Sprintf("r%d", rapid.IntRange(0, 5).Draw(rt, "id"))
			ch := rapid.SampledFrom([]string{"all", "web"}).Draw(rt, "channel")
			var c *logv1.Command
			switch rapid.IntRange(0, 6).Draw(rt, "kind") {
			case 0, 1:
				it := rapid.SampledFrom(items).Draw(rt, "item")
				c = reserve(ch, id, time.Duration(rapid.IntRange(1, 5).Draw(rt, "ttl"))*time.Second,
					line(it, int64(rapid.IntRange(1, 6).Draw(rt, "qty"))))
			case 2:
				c = confirm(ch, id, "o-"+id)
			case 3:
				c = release(ch, id)
			case 4:
				now += store.Timestamp(rapid.IntRange(0, 3).Draw(rt, "secs")) * 1e9
				c = tickCmd()
			case 5:
				c = buffer(rapid.SampledFrom(items).Draw(rt, "item"), "web", "", int64(rapid.IntRange(0, 3).Draw(rt, "units")))
			case 6:
				c = channel("web", int64(rapid.IntRange(0, 2).Draw(rt, "buf")), "ams")
			}
			apply(c)
			after := counterFigures(rt, m, items)
			for k, b := range before {
				if a := after[k]; a.OnHand != b.OnHand {
					rt.Fatalf("I6: after %v, on_hand of %s: got %d, want %d (only the ERP moves it)", c, k, a.OnHand, b.OnHand)
				}
			}
		}

		// The ERP moves on_hand and leaves stockd's holds and orders alone.
		held := counterFigures(rt, m, items)
		var recount []*logv1.StockCount
		for _, it := range items {
			for _, l := range locs {
				recount = append(recount, row(it, l, 100, 2))
			}
		}
		apply(setStock(recount...))
		apply(adjust(delta("d1", items[0], locs[0], -7, 0)))
		after := counterFigures(rt, m, items)
		for k, h := range held {
			a := after[k]
			if a.Reserved != h.Reserved || a.Committed != h.Committed {
				rt.Fatalf("I6: ERP counts changed stockd's figures at %s: got reserved %d committed %d, want %d %d",
					k, a.Reserved, a.Committed, h.Reserved, h.Committed)
			}
		}
		if got := after[items[0]+"@"+locs[0]].OnHand; got != 93 {
			rt.Fatalf("I6: on_hand after the ERP's count 100 and delta -7: got %d, want 93", got)
		}
	})
}
