package store_test

import (
	"math"
	"testing"
	"time"

	"github.com/stockd/stockd/store"
)

// Scenarios of a reservation's life after Reserve: expiry by log time,
// Confirm, Release, the absorbed mark and the pruning of remembered answers.

func TestScenarioExpiry(t *testing.T) {
	runAll(t, []scenario{
		{name: "I1 a hold expires exactly at its deadline, not a nanosecond before", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 4))).held(at(0, "ams", 4)),
			deadlineIs(time.Minute),
			tick(time.Minute-1), reservationIs("web", "r1", store.StateHeld),
			figure("web", "rose", "ams", fig{OnHand: 10, Reserved: 4, Available: 6}),
			tick(1), reservationIs("web", "r1", store.StateExpired),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}), avail("web", "rose", 20), noDeadline(),
		)},
		{name: "expiry is checked in every apply, not only on ticks", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, lineAt("rose", 10, "ams"))),
			fails(reserve("web", "r2", 0, lineAt("rose", 10, "ams")), store.ErrInsufficientStock, "lines[0].quantity").after(time.Minute-1).asks(10, 0),
			ok(reserve("web", "r3", 0, lineAt("rose", 10, "ams"))).after(1).held(at(0, "ams", 10)),
			reservationIs("web", "r1", store.StateExpired),
		)},
		{name: "a Tick moves time", steps: with(reserveWorld,
			timeIs(0), tick(5*time.Minute), timeIs(5*time.Minute),
		)},
		{name: "I4 an out-of-order stamp never moves time backwards", steps: with(reserveWorld,
			tick(10*time.Minute),
			ok(reserve("web", "r1", time.Minute, line("rose", 4))).stamped(-5*time.Minute).
				is(store.StateHeld).createdAt(10*time.Minute).expiresIn(time.Minute),
			timeIs(10*time.Minute),
			ok(tickCmd()).stamped(-30*time.Minute), timeIs(10*time.Minute), reservationIs("web", "r1", store.StateHeld),
			tick(time.Minute), reservationIs("web", "r1", store.StateExpired), timeIs(11*time.Minute),
		)},
		{name: "I4 a zero, negative or minimal stamp neither panics nor moves time", steps: with(reserveWorld,
			tick(time.Minute),
			ok(tickCmd()).stampedAbs(0), ok(tickCmd()).stampedAbs(math.MinInt64),
			ok(reserve("web", "r1", 0, line("rose", 1))).stampedAbs(-1).is(store.StateHeld).createdAt(time.Minute),
			timeIs(time.Minute),
		)},
		{name: "NextDeadline is the earliest live hold", steps: with(reserveWorld,
			noDeadline(),
			ok(reserve("web", "r1", 2*time.Minute, line("rose", 1))), ok(reserve("web", "r2", time.Minute, line("rose", 1))),
			deadlineIs(time.Minute),
			ok(release("web", "r2")), deadlineIs(2*time.Minute),
			tick(2*time.Minute), noDeadline(), reservationIs("web", "r1", store.StateExpired),
		)},
		{name: "holds due together expire in one apply", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 4))), ok(reserve("web", "r2", 30*time.Second, line("tulip", 3))),
			ok(reserve("rep", "r1", time.Minute, line("rose", 5))),
			tick(2*time.Minute),
			reservationIs("web", "r1", store.StateExpired), reservationIs("web", "r2", store.StateExpired),
			reservationIs("rep", "r1", store.StateExpired),
			avail("web", "rose", 20), avail("web", "tulip", 8), avail("rep", "rose", 30),
		)},
		{name: "I1 an expired hold's units can be held again", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 20))),
			fails(reserve("web", "r2", 0, line("rose", 1)), store.ErrInsufficientStock, "lines[0].quantity").asks(1, 0),
			tick(time.Minute),
			ok(reserve("web", "r3", 0, line("rose", 1))).held(at(0, "ams", 1)),
		)},
		{name: "the longest TTL expires after 24 hours of log time", steps: with(reserveWorld,
			ok(reserve("web", "r1", 24*time.Hour, line("rose", 1))),
			tick(24*time.Hour-1), reservationIs("web", "r1", store.StateHeld),
			tick(1), reservationIs("web", "r1", store.StateExpired),
		)},
	})
}

func TestScenarioConfirm(t *testing.T) {
	runAll(t, []scenario{
		{name: "confirm moves reserved to committed", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 4))),
			ok(confirm("web", "r1", "o1")).order("o1", 1),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 4, Available: 6}),
			reservationIs("web", "r1", store.StateConfirmed), noDeadline(),
		)},
		{name: "confirming again with the same order_ref answers the same", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 4))),
			ok(confirm("web", "r1", "o1")).order("o1", 1),
			ok(confirm("web", "r1", "o1")).after(time.Minute).order("o1", 1),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 4, Available: 6}),
		)},
		{name: "another order_ref is a conflict", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 4))), ok(confirm("web", "r1", "o1")),
			fails(confirm("web", "r1", "o2"), store.ErrIdempotencyConflict, "order_ref"),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 4, Available: 6}),
		)},
		{name: "after expiry the reservation is not held", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 4))), tick(time.Minute),
			fails(confirm("web", "r1", "o1"), store.ErrNotHeld, "reservation_id"),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}),
		)},
		{name: "a confirm stamped at the deadline is too late", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 4))),
			fails(confirm("web", "r1", "o1"), store.ErrNotHeld, "reservation_id").after(time.Minute),
		)},
		{name: "a confirm stamped a nanosecond before the deadline is in time", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 4))),
			ok(confirm("web", "r1", "o1")).after(time.Minute-1).order("o1", 1),
			tick(time.Hour), figure("web", "rose", "ams", fig{OnHand: 10, Committed: 4, Available: 6}),
		)},
		{name: "after release the reservation is not held", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 4))), ok(release("web", "r1")),
			fails(confirm("web", "r1", "o1"), store.ErrNotHeld, "reservation_id"),
		)},
		{name: "an unknown reservation is refused", steps: with(reserveWorld,
			fails(confirm("web", "r1", "o1"), store.ErrUnknownReservation, "reservation_id"),
		)},
		{name: "another channel's reservation is unknown", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 4))),
			fails(confirm("rep", "r1", "o1"), store.ErrUnknownReservation, "reservation_id"),
		)},
		{name: "a refused reserve leaves nothing to confirm", steps: with(reserveWorld,
			fails(reserve("web", "r1", 0, line("rose", 99)), store.ErrInsufficientStock, "lines[0].quantity"),
			fails(confirm("web", "r1", "o1"), store.ErrUnknownReservation, "reservation_id"),
		)},
		{name: "a missing order_ref is invalid", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 4))),
			fails(confirm("web", "r1", ""), store.ErrInvalid, "order_ref"), reservationIs("web", "r1", store.StateHeld),
		)},
		{name: "orders are numbered in confirm order", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 1))), ok(reserve("web", "r2", 0, line("rose", 1))),
			ok(confirm("web", "r2", "o2")).order("o2", 1), ok(confirm("web", "r1", "o1")).order("o1", 2),
		)},
		{name: "a split hold commits at every location it drew from", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 15))).held(at(0, "ams", 10), at(0, "fra", 5)),
			ok(confirm("web", "r1", "o1")),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 10}),
			figure("web", "rose", "fra", fig{OnHand: 10, Committed: 5, Available: 5}),
		)},
	})
}

func TestScenarioRelease(t *testing.T) {
	runAll(t, []scenario{
		{name: "release gives the units back", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 4))), ok(release("web", "r1")).is(store.StateReleased),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}), noDeadline(),
		)},
		{name: "release is idempotent", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 15))),
			ok(release("web", "r1")).is(store.StateReleased), ok(release("web", "r1")).is(store.StateReleased),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}),
			figure("web", "rose", "fra", fig{OnHand: 10, Available: 10}),
		)},
		{name: "release after expiry answers expired", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 4))), tick(time.Minute),
			ok(release("web", "r1")).is(store.StateExpired), avail("web", "rose", 20),
		)},
		{name: "release after confirm is refused", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 4))), ok(confirm("web", "r1", "o1")),
			fails(release("web", "r1"), store.ErrNotHeld, "reservation_id"),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 4, Available: 6}),
		)},
		{name: "release of an unknown reservation is refused", steps: with(reserveWorld,
			fails(release("web", "r1"), store.ErrUnknownReservation, "reservation_id"),
			fails(release("web", ""), store.ErrInvalid, "reservation_id"),
		)},
		{name: "I3 a released id answers released to a retried reserve", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 4))), ok(release("web", "r1")),
			ok(reserve("web", "r1", 0, line("rose", 4))).is(store.StateReleased),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}),
		)},
	})
}

func TestScenarioAbsorbedMark(t *testing.T) {
	runAll(t, []scenario{
		{name: "a mark at the order's sequence drops it from committed", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 4))), ok(confirm("web", "r1", "o1")).order("o1", 1),
			// The ERP booked o1: its count drops by 4 and its mark covers seq 1.
			ok(setStockMark(1, row("rose", "ams", 6, 2))).rowsAre(applied(2, 6)),
			figure("web", "rose", "ams", fig{OnHand: 6, Available: 6}),
		)},
		{name: "a mark below an order keeps it committed", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 4))), ok(confirm("web", "r1", "o1")).order("o1", 1),
			ok(reserve("web", "r2", 0, line("rose", 3))), ok(confirm("web", "r2", "o2")).order("o2", 2),
			ok(setStockMark(1, row("rose", "ams", 6, 2))),
			figure("web", "rose", "ams", fig{OnHand: 6, Committed: 3, Available: 3}),
		)},
		{name: "a mark beyond the last order never absorbs later orders", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 4))), ok(confirm("web", "r1", "o1")),
			ok(setStockMark(99, row("rose", "ams", 6, 2))),
			figure("web", "rose", "ams", fig{OnHand: 6, Available: 6}),
			ok(reserve("web", "r2", 0, line("rose", 3))), ok(confirm("web", "r2", "o2")).order("o2", 2),
			ok(setStock(row("tulip", "ams", 3, 2))),
			figure("web", "rose", "ams", fig{OnHand: 6, Committed: 3, Available: 3}),
			// The mark never moves back; a lower one changes nothing.
			ok(setStockMark(1, row("tulip", "ams", 3, 3))),
			figure("web", "rose", "ams", fig{OnHand: 6, Committed: 3, Available: 3}),
			ok(setStockMark(2, row("rose", "ams", 3, 3))),
			figure("web", "rose", "ams", fig{OnHand: 3, Available: 3}),
		)},
		{name: "a mark sent before any order does not pre-absorb the first", steps: with(reserveWorld,
			ok(setStockMark(5, row("rose", "ams", 10, 2))),
			ok(reserve("web", "r1", 0, line("rose", 4))), ok(confirm("web", "r1", "o1")).order("o1", 1),
			ok(setStock(row("tulip", "ams", 3, 2))),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 4, Available: 6}),
		)},
		{name: "a batch of no rows may carry just the mark", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 4))), ok(confirm("web", "r1", "o1")),
			ok(setStock(row("rose", "ams", 6, 2))),
			figure("web", "rose", "ams", fig{OnHand: 6, Committed: 4, Available: 2}),
			ok(setStockMark(1)),
			figure("web", "rose", "ams", fig{OnHand: 6, Available: 6}),
			fails(setStock(), store.ErrInvalid, "rows"),
		)},
		{name: "a mark releases an order at every location it drew from", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 15))), ok(confirm("web", "r1", "o1")),
			ok(setStockMark(1, row("rose", "ams", 0, 2), row("rose", "fra", 5, 2))),
			figure("web", "rose", "ams", fig{}), figure("web", "rose", "fra", fig{OnHand: 5, Available: 5}),
		)},
	})
}

func TestScenarioPruning(t *testing.T) {
	window := store.Config{RetryWindowNanos: int64(10 * time.Minute)}
	runAll(t, []scenario{
		{name: "I3 a final reservation is remembered for the window, then a retry is a new request", cfg: window, steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 4))), ok(release("web", "r1")),
			tick(10*time.Minute-1), reservationIs("web", "r1", store.StateReleased),
			ok(reserve("web", "r1", 0, line("rose", 4))).is(store.StateReleased),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}),
			tick(1), noReservation("web", "r1"),
			ok(reserve("web", "r1", 0, line("rose", 4))).held(at(0, "ams", 4)),
			figure("web", "rose", "ams", fig{OnHand: 10, Reserved: 4, Available: 6}),
		)},
		{name: "I3 a refusal is forgotten after the window, then a retry is a new request", cfg: window, steps: with(reserveWorld,
			fails(reserve("web", "r1", 0, line("rose", 25)), store.ErrInsufficientStock, "lines[0].quantity"),
			ok(setStock(row("rose", "ams", 100, 2))),
			tick(10*time.Minute-1),
			fails(reserve("web", "r1", 0, line("rose", 25)), store.ErrInsufficientStock, "lines[0].quantity").asks(25, 20),
			tick(1),
			ok(reserve("web", "r1", 0, line("rose", 25))).held(at(0, "ams", 25)),
		)},
		{name: "I3 a delta id is forgotten after the window and applies again", cfg: window, steps: with(reserveWorld,
			ok(adjust(delta("d1", "rose", "ams", 5, 0))).rowsAre(applied(1, 15)),
			tick(10*time.Minute-1), ok(adjust(delta("d1", "rose", "ams", 5, 0))).rowsAre(applied(1, 15)),
			tick(1), ok(adjust(delta("d1", "rose", "ams", 5, 0))).rowsAre(applied(1, 20)),
		)},
		{name: "I3 MaxRecords forgets the oldest answer first", cfg: store.Config{MaxRecords: 2}, steps: with(reserveWorld,
			fails(reserve("web", "r1", 0, line("rose", 99)), store.ErrInsufficientStock, "lines[0].quantity"),
			fails(reserve("web", "r2", 0, line("rose", 99)), store.ErrInsufficientStock, "lines[0].quantity"),
			fails(reserve("web", "r3", 0, line("rose", 99)), store.ErrInsufficientStock, "lines[0].quantity"),
			ok(setStock(row("rose", "ams", 1000, 2))),
			ok(reserve("web", "r1", 0, line("rose", 99))).held(at(0, "ams", 99)),
			fails(reserve("web", "r2", 0, line("rose", 99)), store.ErrInsufficientStock, "lines[0].quantity"),
			fails(reserve("web", "r3", 0, line("rose", 99)), store.ErrInsufficientStock, "lines[0].quantity"),
			ok(release("web", "r1")), tick(0),
			ok(reserve("web", "r2", 0, line("rose", 99))).held(at(0, "ams", 99)),
			reservationIs("web", "r1", store.StateReleased),
		)},
		{name: "I3 live holds are never pruned", cfg: store.Config{RetryWindowNanos: int64(10 * time.Minute), MaxRecords: 1}, steps: with(reserveWorld,
			ok(reserve("web", "r1", 24*time.Hour, line("rose", 1))),
			fails(reserve("web", "r2", 0, line("rose", 99)), store.ErrInsufficientStock, "lines[0].quantity"),
			fails(reserve("web", "r3", 0, line("rose", 99)), store.ErrInsufficientStock, "lines[0].quantity"),
			fails(reserve("web", "r4", 0, line("rose", 99)), store.ErrInsufficientStock, "lines[0].quantity"),
			tick(2*time.Hour), reservationIs("web", "r1", store.StateHeld),
			figure("web", "rose", "ams", fig{OnHand: 10, Reserved: 1, Available: 9}),
			tick(22*time.Hour), reservationIs("web", "r1", store.StateExpired),
			tick(10*time.Minute), noReservation("web", "r1"),
		)},
		{name: "a forgotten confirmed reservation keeps its order committed", cfg: window, steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 4))), ok(confirm("web", "r1", "o1")),
			tick(10*time.Minute), noReservation("web", "r1"),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 4, Available: 6}),
			fails(confirm("web", "r1", "o1"), store.ErrUnknownReservation, "reservation_id"),
			ok(setStockMark(1, row("rose", "ams", 6, 2))), figure("web", "rose", "ams", fig{OnHand: 6, Available: 6}),
		)},
	})
}

// TestI5ApplyEntrySharesTimeAndRevision: the commands of one entry share its
// revision and time; an empty entry still moves both.
func TestI5ApplyEntrySharesTimeAndRevision(t *testing.T) {
	m := store.New(store.Config{})
	res := m.ApplyEntry(7, entry(t0+5, loc("ams"), channel("web", 0, "ams"), setStock(row("rose", "ams", 3, 1)),
		reserve("web", "r1", time.Minute, line("rose", 1))))
	for i, r := range res {
		if r.Err != nil || r.Revision != 7 {
			t.Errorf("input entry 7 command %d: got %s, want ok at revision 7", i, describe(r))
		}
	}
	if r := res[3].Reservation; r == nil || r.CreatedAt != store.Timestamp(t0+5) {
		t.Errorf("input reserve in entry stamped t0+5: got %+v, want created at t0+5", r)
	}
	if out := m.ApplyEntry(9, entry(t0+int64(time.Minute)+5)); len(out) != 0 {
		t.Errorf("input empty entry: got %d results, want 0", len(out))
	}
	if got, want := m.AppliedIndex(), store.Revision(9); got != want {
		t.Errorf("input empty entry 9: got applied index %d, want %d", got, want)
	}
	if r, err := m.Reservation("web", "r1"); err != nil || r.State != store.StateExpired {
		t.Errorf("input empty entry at the hold's deadline: got %+v, %v, want state expired", r, err)
	}
	// I5: a lower index never moves the applied index back.
	m.ApplyEntry(8, entry(t0))
	if got := m.AppliedIndex(); got != 9 {
		t.Errorf("input entry 8 after 9: got applied index %d, want 9", got)
	}
}
