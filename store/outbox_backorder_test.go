package store_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/stockd/stockd/store"
)

// restoresSame checks that a snapshot of the machine restores (I4): the
// restore's checks pass, and the restored machine writes the same records
// and lists the same incoming lines.
func restoresSame() step {
	return checkStep("restore", func(t *testing.T, m *store.Machine, where string) {
		back, err := restored(m, store.Config{})
		if err != nil {
			t.Fatalf("%s (I4): got restore error %v, want ok", where, err)
		}
		sameRecords(t, where, back, m)
		if got, want := back.Incoming(""), m.Incoming(""); !reflect.DeepEqual(got, want) {
			t.Errorf("%s (I4): got incoming %+v after a restore, want %+v", where, got, want)
		}
	})
}

// An order whose units partly wait on an incoming line can be booked and
// passed by the absorbed mark before the line is received. Its waiting units
// still count in the line's backordered figure, so it must outlive the retry
// window in the outbox (and in snapshots) until the receipt; trimming it made
// every later snapshot fail Restore with "incoming line ... backordered 3,
// waiting holds and orders 0".
func TestScenarioAbsorbedOrderWaitingOnIncoming(t *testing.T) {
	runAll(t, []scenario{
		{name: "I4 an absorbed order waiting on an incoming line stays until the receipt, and snapshots restore", steps: with(backorderWorld,
			ok(reserve("web", "r1", 0, boLine("rose", 8))),
			ok(confirm("web", "r1", "o1")),
			ok(ackCmd(ackBooked(1))).rowsAre(ackApplied()),
			// The ERP's counts include the 5 units from ams; the mark passes order 1.
			ok(setStockMark(1, row("rose", "ams", 0, 2))),
			statusIs(0, 0, 0, 2, 1),
			figure("web", "rose", "ams", fig{}),
			tick(2*time.Hour), // past the retry window: a finished order would leave now
			restoresSame(),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 3), bo("PO3", 0, 0)),
			incomingAvail("web", "rose", incWant{"PO2", "fra", 3 * day, 7}, incWant{"PO1", "ams", 7 * day, 10}),
			orderIs("web", "o1", orderWant{seq: 1, outcome: store.OutcomeBooked, absorbed: true}),
			// The receipt lands the 3 waiting units; the ERP already absorbed
			// the order, so they do not become committed.
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 10, 3, 3*day, 2))).rowsAre(applied(2, 0)),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 3, 0), bo("PO3", 0, 0)),
			figure("web", "rose", "fra", fig{}),
			restoresSame(),
			tick(time.Second), // nothing waits now: the order is finished and leaves
			noOrder("web", "o1"),
			restoresSame(),
		)},
		{name: "I4 an absorbed order waiting on an incoming line keeps later finished entries", steps: with(backorderWorld,
			ok(reserve("web", "r1", 0, boLine("rose", 8))),
			ok(confirm("web", "r1", "o1")),
			ok(reserve("web", "r2", 0, line("tulip", 1))),
			ok(confirm("web", "r2", "o2")),
			ok(ackCmd(ackBooked(1), ackBooked(2))).rowsAre(ackApplied(), ackApplied()),
			ok(setStockMark(2, row("rose", "ams", 0, 2), row("tulip", "ams", 3, 2))),
			tick(2*time.Hour),
			restoresSame(),
			orderIs("web", "o1", orderWant{seq: 1, outcome: store.OutcomeBooked, absorbed: true}),
			orderIs("web", "o2", orderWant{seq: 2, outcome: store.OutcomeBooked, absorbed: true}),
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 10, 10, 3*day, 2))).rowsAre(applied(2, 0)),
			tick(time.Second),
			noOrder("web", "o1"), noOrder("web", "o2"),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 10, 0), bo("PO3", 0, 0)),
			restoresSame(),
		)},
	})
}
