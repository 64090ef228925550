package store_test

import (
	"testing"

	"github.com/stockd/stockd/store"
)

// pruned expects a BackfillCommit accepted with n counters pruned.
func pruned(cmdStep step, n uint32) step {
	cmdStep.result = func(t *testing.T, where string, res store.Result) {
		if res.Count != n {
			t.Errorf("%s: got %d counters pruned (%s), want %d", where, res.Count, describe(res), n)
		}
	}
	return cmdStep
}

// A prune zeroes the on_hand of the counters a generation did not name and
// nothing else: holds stay reserved, unabsorbed orders stay committed (only
// the absorbed mark takes them out), backorders keep their incoming lines,
// and the shortfall shows as oversold exposure (I1).
func TestScenarioBackfillPruneKeepsPromisedUnits(t *testing.T) {
	runAll(t, []scenario{
		{name: "I1 a prune keeps holds, orders and backorders, and exposes the shortfall", steps: with(backorderWorld,
			ok(reserve("web", "r1", 0, line("rose", 2))).held(at(0, "ams", 2)),
			ok(reserve("web", "r2", 0, line("tulip", 3))).held(at(0, "ams", 3)),
			ok(confirm("web", "r2", "o2")).order("o2", 1),
			ok(reserve("web", "r3", 0, boLineAt("rose", 4, "fra"))),
			ok(confirm("web", "r3", "o3")).order("o3", 2),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 4), bo("PO3", 0, 0)),
			// The generation names only rose@fra: rose@ams and tulip@ams are pruned.
			ok(bfChunk("g1", 0, row("rose", "fra", 0, 2))),
			pruned(ok(bfCommit("g1", 1, true, 0)), 2),
			figure("web", "rose", "ams", fig{OnHand: 0, Reserved: 2, Oversold: 2}),
			figure("web", "tulip", "ams", fig{OnHand: 0, Committed: 3, Oversold: 3}),
			figure("web", "rose", "fra", fig{}),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 4), bo("PO3", 0, 0)),
			restoresSame(),
			// A second prune changes nothing more; its mark absorbs order 1 (tulip), not order 2's waiting units.
			ok(bfChunk("g2", 0, row("rose", "fra", 0, 3))),
			pruned(ok(bfCommit("g2", 1, true, 1)), 0),
			figure("web", "tulip", "ams", fig{}),
			figure("web", "rose", "ams", fig{OnHand: 0, Reserved: 2, Oversold: 2}),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 4), bo("PO3", 0, 0)),
			// The hold released, the exposure goes; a newer count sets on_hand again.
			ok(release("web", "r1")),
			figure("web", "rose", "ams", fig{}),
			ok(setStock(row("rose", "ams", 6, 2))).rowsAre(applied(2, 6)),
			figure("web", "rose", "ams", fig{OnHand: 6, Available: 6}),
			restoresSame(),
		)},
	})
}
