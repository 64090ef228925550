package store_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// Scenarios of the ERP's stock updates: absolute counts (SetStock) and
// deltas (AdjustStock), row by row.

func TestScenarioSetStock(t *testing.T) {
	world := []step{ok(loc("ams")), ok(loc("fra")), ok(loc("ber")), ok(channel("web", 0, "ams", "fra"))}
	runAll(t, []scenario{
		{name: "a count is applied", steps: with(world,
			known("web", "rose", false),
			ok(setStock(row("rose", "ams", 10, 1))).rowsAre(applied(1, 10)),
			known("web", "rose", true), figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}),
		)},
		{name: "a later version replaces the count", steps: with(world,
			ok(setStock(row("rose", "ams", 10, 1))), ok(setStock(row("rose", "ams", 3, 2))).rowsAre(applied(2, 3)),
			avail("web", "rose", 3),
		)},
		{name: "an older version is ignored as stale", steps: with(world,
			ok(setStock(row("rose", "ams", 10, 5))),
			ok(setStock(row("rose", "ams", 3, 4))).rowsAre(stale("rows[0].version", 5, 10)),
			avail("web", "rose", 10),
		)},
		{name: "an equal version with the same count is stale", steps: with(world,
			ok(setStock(row("rose", "ams", 10, 5))),
			ok(setStock(row("rose", "ams", 10, 5))).rowsAre(stale("rows[0].version", 5, 10)),
		)},
		{name: "an equal version with a different count is rejected", steps: with(world,
			ok(setStock(row("rose", "ams", 10, 5))),
			ok(setStock(row("rose", "ams", 7, 5))).rowsAre(rejected("rows[0].version")),
			avail("web", "rose", 10),
		)},
		{name: "an undeclared location is rejected while its neighbours apply", steps: with(world,
			ok(setStock(row("rose", "ams", 10, 1), row("rose", "zrh", 5, 1), row("tulip", "fra", 3, 1))).
				rowsAre(applied(1, 10), rejected("rows[1].location"), applied(1, 3)),
			avail("web", "rose", 10), avail("web", "tulip", 3),
		)},
		{name: "version 0 is rejected", steps: with(world,
			ok(setStock(row("rose", "ams", 10, 0))).rowsAre(rejected("rows[0].version")), known("web", "rose", false),
		)},
		{name: "an empty item or location is rejected", steps: with(world,
			ok(setStock(row("", "ams", 10, 1), row("rose", "", 10, 1))).
				rowsAre(rejected("rows[0].item"), rejected("rows[1].location")),
		)},
		{name: "a batch without rows is invalid", steps: with(world,
			fails(setStock(), store.ErrInvalid, "rows"),
		)},
		{name: "a batch past MaxRows is invalid", steps: with(world,
			fails(setStock(manyRows(store.MaxRows+1)...), store.ErrInvalid, "rows"), known("web", "rose", false),
		)},
		{name: "I1 a negative on_hand is accepted and shown as 0 available", steps: with(world,
			ok(setStock(row("rose", "ams", -4, 1))).rowsAre(applied(1, -4)),
			figure("web", "rose", "ams", fig{OnHand: -4}), avail("web", "rose", 0), known("web", "rose", true),
			fails(reserve("web", "r1", 0, line("rose", 1)), store.ErrInsufficientStock, "lines[0].quantity").asks(1, 0),
		)},
		{name: "I1 the ERP lowering on_hand below the holds exposes the shortfall as oversold", steps: with(world,
			ok(setStock(row("rose", "ams", 10, 1))),
			ok(reserve("web", "r1", 0, line("rose", 6))).held(at(0, "ams", 6)),
			ok(setStock(row("rose", "ams", 4, 2))).rowsAre(applied(2, 4)),
			figure("web", "rose", "ams", fig{OnHand: 4, Reserved: 6, Oversold: 2}),
			ok(setStock(row("rose", "ams", -3, 3))).rowsAre(applied(3, -3)),
			figure("web", "rose", "ams", fig{OnHand: -3, Reserved: 6, Oversold: 6}),
			fails(reserve("web", "r2", 0, line("rose", 1)), store.ErrInsufficientStock, "lines[0].quantity").asks(1, 0),
			ok(release("web", "r1")), figure("web", "rose", "ams", fig{OnHand: -3}),
		)},
	})
}

// manyRows returns n distinct valid count rows at ams.
func manyRows(n int) []*logv1.StockCount {
	rows := make([]*logv1.StockCount, n)
	for i := range rows {
		rows[i] = row(fmt.Sprintf("item-%05d", i), "ams", 10, 1)
	}
	return rows
}

func TestScenarioAdjustStock(t *testing.T) {
	world := []step{ok(loc("ams")), ok(loc("fra")), ok(channel("web", 0, "ams", "fra")), ok(setStock(row("rose", "ams", 10, 1)))}
	withReason := delta("d1", "rose", "ams", 1, 0)
	withReason.Reason = "cycle\tcount"
	runAll(t, []scenario{
		{name: "a delta is applied once by its id", steps: with(world,
			ok(adjust(delta("d1", "rose", "ams", 5, 0))).rowsAre(applied(1, 15)),
			ok(adjust(delta("d1", "rose", "ams", 5, 0))).rowsAre(applied(1, 15)),
			avail("web", "rose", 15),
		)},
		{name: "a duplicate returns the first answer after the counter moved", steps: with(world,
			ok(adjust(delta("d1", "rose", "ams", 5, 0))).rowsAre(applied(1, 15)),
			ok(setStock(row("rose", "ams", 7, 2))).rowsAre(applied(2, 7)),
			ok(adjust(delta("d1", "rose", "ams", 5, 0))).rowsAre(applied(1, 15)),
			avail("web", "rose", 7),
		)},
		{name: "the same id with another payload is rejected", steps: with(world,
			ok(adjust(delta("d1", "rose", "ams", 5, 0))),
			ok(adjust(delta("d1", "rose", "ams", 6, 0))).rowsAre(rejected("rows[0].delta_id")),
			ok(adjust(delta("d1", "rose", "fra", 5, 0))).rowsAre(rejected("rows[0].delta_id")),
			avail("web", "rose", 15),
		)},
		{name: "a version not newer than the held one is stale and remembered", steps: with(world,
			ok(setStock(row("rose", "ams", 10, 5))).rowsAre(applied(5, 10)),
			ok(adjust(delta("d1", "rose", "ams", 5, 5))).rowsAre(stale("rows[0].version", 5, 10)),
			ok(adjust(delta("d2", "rose", "ams", 5, 4))).rowsAre(stale("rows[0].version", 5, 10)),
			ok(setStock(row("rose", "ams", 10, 9))),
			ok(adjust(delta("d1", "rose", "ams", 5, 5))).rowsAre(stale("rows[0].version", 5, 10)),
			avail("web", "rose", 10),
		)},
		{name: "a newer version is applied and becomes the held version", steps: with(world,
			ok(adjust(delta("d1", "rose", "ams", -3, 6))).rowsAre(applied(6, 7)),
			ok(setStock(row("rose", "ams", 7, 6))).rowsAre(stale("rows[0].version", 6, 7)),
			ok(setStock(row("rose", "ams", 9, 6))).rowsAre(rejected("rows[0].version")),
			avail("web", "rose", 7),
		)},
		{name: "a delta without a version is never stale", steps: with(world,
			ok(adjust(delta("d1", "rose", "ams", 2, 0))).rowsAre(applied(1, 12)),
		)},
		{name: "overflow is rejected and not remembered, so a resend applies once fixed", steps: with(world,
			ok(setStock(row("rose", "ams", maxUnits-1, 2))),
			ok(adjust(delta("d1", "rose", "ams", 5, 0))).rowsAre(rejected("rows[0].delta_base_units")),
			figure("web", "rose", "ams", fig{OnHand: maxUnits - 1, Available: maxUnits - 1}),
			ok(setStock(row("rose", "ams", 10, 3))),
			ok(adjust(delta("d1", "rose", "ams", 5, 0))).rowsAre(applied(3, 15)),
		)},
		{name: "underflow is rejected", steps: with(world,
			ok(setStock(row("rose", "ams", math.MinInt64+1, 2))),
			ok(adjust(delta("d1", "rose", "ams", -2, 0))).rowsAre(rejected("rows[0].delta_base_units")),
			figure("web", "rose", "ams", fig{OnHand: math.MinInt64 + 1}),
		)},
		{name: "a zero delta is rejected", steps: with(world,
			ok(adjust(delta("d1", "rose", "ams", 0, 0))).rowsAre(rejected("rows[0].delta_base_units")),
		)},
		{name: "a delta on a counter never counted creates it", steps: with(world,
			ok(adjust(delta("d1", "lily", "fra", 4, 0))).rowsAre(applied(0, 4)), avail("web", "lily", 4),
		)},
		{name: "an undeclared location is rejected while its neighbours apply", steps: with(world,
			ok(adjust(delta("d1", "rose", "zrh", 1, 0), delta("d2", "rose", "ams", 1, 0))).
				rowsAre(rejected("rows[0].location"), applied(1, 11)),
		)},
		{name: "an empty delta id is rejected", steps: with(world,
			ok(adjust(delta("", "rose", "ams", 1, 0))).rowsAre(rejected("rows[0].delta_id")), avail("web", "rose", 10),
		)},
		{name: "a reason with a control character is rejected", steps: with(world,
			ok(adjust(withReason)).rowsAre(rejected("rows[0].reason")), avail("web", "rose", 10),
		)},
		{name: "an id repeated in one batch applies once", steps: with(world,
			ok(adjust(delta("d1", "rose", "ams", 5, 0), delta("d1", "rose", "ams", 5, 0))).
				rowsAre(applied(1, 15), applied(1, 15)),
			avail("web", "rose", 15),
		)},
		{name: "a batch without rows is invalid", steps: with(world,
			fails(adjust(), store.ErrInvalid, "rows"),
		)},
	})
}

// TestScenarioI1ChannelTotalNeverWraps: the channel total is a sum over
// locations; with ERP counts near the int64 limit it must not wrap negative.
func TestScenarioI1ChannelTotalNeverWraps(t *testing.T) {
	m := run(t, store.Config{}, []step{
		ok(loc("ams")), ok(loc("fra")), ok(channel("web", 0, "ams", "fra")),
		ok(setStock(row("rose", "ams", maxUnits, 1), row("rose", "fra", maxUnits, 1))),
		figure("web", "rose", "ams", fig{OnHand: maxUnits, Available: maxUnits}),
	})
	var a store.SKUAvailability
	if err := m.Availability("web", "rose", &a); err != nil {
		t.Fatal(err)
	}
	if a.Available < 0 {
		t.Errorf("input on_hand %d at ams and at fra, channel web [ams fra]: got total %d, want >= 0 (saturated at %d)",
			int64(maxUnits), a.Available, int64(maxUnits))
	}
}
