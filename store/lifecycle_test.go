package store_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// Scenarios of the hold lifecycle after Reserve: Extend, partial Release,
// CancelOrder and ReleaseAll, the Reservations listing, and their snapshots.

func extendCmd(ch, id, extendID string, ttl time.Duration) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_Extend{Extend: &logv1.Extend{
		Channel: ch, ReservationId: id, ExtendId: extendID, TtlNanos: int64(ttl),
	}}}
}

// releasePart gives back lines of a hold under releaseID.
func releasePart(ch, id, releaseID string, lines ...*logv1.ReleaseLine) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_Release{Release: &logv1.Release{
		Channel: ch, ReservationId: id, ReleaseId: releaseID, Lines: lines,
	}}}
}

// give is a partial release line: qty SKU units of reservation line n.
func give(n uint32, qty int64) *logv1.ReleaseLine {
	return &logv1.ReleaseLine{Line: n, QuantitySkuUnits: qty}
}

func cancelOrder(ch, id string) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_CancelOrder{CancelOrder: &logv1.CancelOrder{Channel: ch, ReservationId: id}}}
}

func releaseAll(ch, id string) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_ReleaseAll{ReleaseAll: &logv1.ReleaseAll{Channel: ch, ReleaseAllId: id}}}
}

// also chains a check of the answer after the step's others.
func (s step) also(f func(t *testing.T, where string, res store.Result)) step {
	prev := s.result
	s.result = func(t *testing.T, where string, res store.Result) {
		if prev != nil {
			prev(t, where, res)
		}
		f(t, where, res)
	}
	return s
}

// counts expects ReleaseAll's count.
func (s step) counts(n uint32) step {
	return s.also(func(t *testing.T, where string, res store.Result) {
		if res.Count != n {
			t.Errorf("%s: got count %d, want %d", where, res.Count, n)
		}
	})
}

// quantities expects the answer's line quantities in SKU units.
func (s step) quantities(want ...int64) step {
	return s.also(func(t *testing.T, where string, res store.Result) {
		if res.Reservation == nil {
			t.Errorf("%s: got no reservation, want line quantities %v", where, want)
			return
		}
		var got []int64
		for _, l := range res.Reservation.Lines {
			got = append(got, int64(l.Quantity))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: got line quantities %v, want %v", where, got, want)
		}
	})
}

// deadline expects the answer's ExpiresAt, relative to t0.
func (s step) deadline(d time.Duration) step {
	return s.also(func(t *testing.T, where string, res store.Result) {
		if res.Reservation == nil {
			t.Errorf("%s: got no reservation, want deadline t0%+v", where, d)
			return
		}
		if got := res.Reservation.ExpiresAt; got != store.Timestamp(t0+int64(d)) {
			t.Errorf("%s: got deadline t0%+v, want t0%+v", where, time.Duration(int64(got)-t0), d)
		}
	})
}

// restoresCleanly checks that the state passes Restore's invariant checks
// (reserved = live holds, committed = unabsorbed uncancelled orders) and
// restores to the same digest.
func restoresCleanly() step {
	return checkStep("restore", func(t *testing.T, m *store.Machine, where string) {
		back, err := restored(m, store.Config{})
		if err != nil {
			t.Fatalf("%s: got restore error %v, want ok", where, err)
		}
		if got, want := digest(back), digest(m); got != want {
			t.Errorf("%s (I4): got digest %s after restore, want %s", where, got, want)
		}
	})
}

func TestScenarioExtend(t *testing.T) {
	runAll(t, []scenario{
		{name: "extend pushes the deadline and the hold survives past the old one", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 4))),
			ok(extendCmd("web", "r1", "e1", 2*time.Minute)).after(30*time.Second).is(store.StateHeld).deadline(150*time.Second),
			deadlineIs(150*time.Second),
			tick(30*time.Second), reservationIs("web", "r1", store.StateHeld),
			figure("web", "rose", "ams", fig{OnHand: 10, Reserved: 4, Available: 6}),
			tick(90*time.Second-1), reservationIs("web", "r1", store.StateHeld),
			tick(1), reservationIs("web", "r1", store.StateExpired),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}), noDeadline(), restoresCleanly(),
		)},
		{name: "extend may shorten the deadline", steps: with(reserveWorld,
			ok(reserve("web", "r1", 10*time.Minute, line("rose", 4))),
			ok(extendCmd("web", "r1", "e1", time.Minute)).deadline(time.Minute), deadlineIs(time.Minute),
			tick(time.Minute), reservationIs("web", "r1", store.StateExpired), noDeadline(),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}),
		)},
		{name: "an extend back to an earlier deadline expires the hold once", steps: with(reserveWorld,
			// r0 keeps the heap's top, so r1's first item is still in the heap
			// when an extend brings r1 back to that deadline.
			ok(reserve("web", "r0", time.Minute, line("tulip", 1))),
			ok(reserve("web", "r1", 2*time.Minute, line("rose", 4))),
			ok(extendCmd("web", "r1", "e1", 5*time.Minute)).deadline(5*time.Minute),
			ok(extendCmd("web", "r1", "e2", 2*time.Minute)).deadline(2*time.Minute),
			tick(2*time.Minute), reservationIs("web", "r1", store.StateExpired),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}), restoresCleanly(),
			tick(5*time.Minute), figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}), noDeadline(),
		)},
		{name: "a retry with the same extend_id and ttl answers the first deadline", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 4))),
			ok(extendCmd("web", "r1", "e1", 2*time.Minute)).after(10*time.Second).deadline(130*time.Second),
			ok(extendCmd("web", "r1", "e1", 2*time.Minute)).after(20*time.Second).is(store.StateHeld).deadline(130*time.Second),
			deadlineIs(130*time.Second),
			ok(extendCmd("web", "r1", "e2", 2*time.Minute)).deadline(150*time.Second),
			// e1's answer stays the first one even after e2 moved the deadline.
			ok(extendCmd("web", "r1", "e1", 2*time.Minute)).deadline(130*time.Second),
			reservationIs("web", "r1", store.StateHeld), deadlineIs(150*time.Second),
		)},
		{name: "the same extend_id with another ttl is a conflict and changes nothing", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 4))),
			ok(extendCmd("web", "r1", "e1", 2*time.Minute)),
			fails(extendCmd("web", "r1", "e1", 3*time.Minute), store.ErrIdempotencyConflict, "extend_id"),
			deadlineIs(2*time.Minute),
		)},
		{name: "a retry after the hold ended answers from the op record", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 4))),
			ok(extendCmd("web", "r1", "e1", 2*time.Minute)).deadline(2*time.Minute),
			ok(release("web", "r1")),
			ok(extendCmd("web", "r1", "e1", 2*time.Minute)).after(time.Second).is(store.StateReleased).deadline(2*time.Minute),
			fails(extendCmd("web", "r1", "e1", time.Minute), store.ErrIdempotencyConflict, "extend_id"),
			fails(extendCmd("web", "r1", "e2", 2*time.Minute), store.ErrNotHeld, "reservation_id"),
		)},
		{name: "only a held reservation can be extended", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 1))), ok(confirm("web", "r1", "o1")),
			fails(extendCmd("web", "r1", "e1", time.Minute), store.ErrNotHeld, "reservation_id"),
			ok(reserve("web", "r2", time.Minute, line("rose", 1))), tick(time.Minute),
			fails(extendCmd("web", "r2", "e1", time.Minute), store.ErrNotHeld, "reservation_id"),
			fails(extendCmd("web", "r9", "e1", time.Minute), store.ErrUnknownReservation, "reservation_id"),
			fails(extendCmd("rep", "r1", "e1", time.Minute), store.ErrUnknownReservation, "reservation_id"),
		)},
		{name: "malformed extends are invalid", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 1))),
			fails(extendCmd("web", "r1", "e1", 0), store.ErrInvalid, "ttl"),
			fails(extendCmd("web", "r1", "e1", 999*time.Millisecond), store.ErrInvalid, "ttl"),
			fails(extendCmd("web", "r1", "e1", 24*time.Hour+1), store.ErrInvalid, "ttl"),
			fails(extendCmd("web", "r1", "", time.Minute), store.ErrInvalid, "extend_id"),
			fails(extendCmd("", "r1", "e1", time.Minute), store.ErrInvalid, "channel"),
			fails(extendCmd("web", "", "e1", time.Minute), store.ErrInvalid, "reservation_id"),
			ok(extendCmd("web", "r1", "e1", 24*time.Hour)).deadline(24*time.Hour),
			ok(extendCmd("web", "r1", "e2", time.Second)).deadline(time.Second),
		)},
	})
}

func TestScenarioPartialRelease(t *testing.T) {
	runAll(t, []scenario{
		{name: "a partial release gives back units of one line and keeps the hold", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 4), line("tulip", 2))).held(at(0, "ams", 4), at(1, "ams", 2)),
			ok(releasePart("web", "r1", "p1", give(0, 3))).held(at(0, "ams", 1), at(1, "ams", 2)).quantities(1, 2).deadline(time.Minute),
			figure("web", "rose", "ams", fig{OnHand: 10, Reserved: 1, Available: 9}),
			figure("web", "tulip", "ams", fig{OnHand: 3, Reserved: 2, Available: 1}),
			deadlineIs(time.Minute), restoresCleanly(),
		)},
		{name: "a split line gives back from its lowest priority location first", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 15))).held(at(0, "ams", 10), at(0, "fra", 5)),
			ok(releasePart("web", "r1", "p1", give(0, 7))).held(at(0, "ams", 8)).quantities(8),
			figure("web", "rose", "ams", fig{OnHand: 10, Reserved: 8, Available: 2}),
			figure("web", "rose", "fra", fig{OnHand: 10, Available: 10}),
			ok(releasePart("web", "r1", "p2", give(0, 3))).held(at(0, "ams", 5)).quantities(5),
			figure("web", "rose", "ams", fig{OnHand: 10, Reserved: 5, Available: 5}), restoresCleanly(),
		)},
		{name: "lines naming one line twice are summed", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 15))),
			ok(releasePart("web", "r1", "p1", give(0, 2), give(0, 4))).held(at(0, "ams", 9)).quantities(9),
		)},
		{name: "over-releasing is refused and changes nothing", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 4), line("tulip", 2))),
			fails(releasePart("web", "r1", "p1", give(0, 5)), store.ErrInvalid, "lines[0].quantity"),
			fails(releasePart("web", "r1", "p1", give(1, 1), give(0, 3), give(0, 2)), store.ErrInvalid, "lines[2].quantity"),
			fails(releasePart("web", "r1", "p1", give(0, 1), give(2, 1)), store.ErrInvalid, "lines[1].line"),
			figure("web", "rose", "ams", fig{OnHand: 10, Reserved: 4, Available: 6}),
			figure("web", "tulip", "ams", fig{OnHand: 3, Reserved: 2, Available: 1}),
			// A refused release id is not remembered: it may be used once the input is right.
			ok(releasePart("web", "r1", "p1", give(0, 4))).held(at(1, "ams", 2)).quantities(0, 2),
			fails(releasePart("web", "r1", "p2", give(0, 1)), store.ErrInvalid, "lines[0].quantity"),
			restoresCleanly(),
		)},
		{name: "releasing every line to 0 releases the reservation", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 4), line("tulip", 2))),
			ok(releasePart("web", "r1", "p1", give(0, 4))).is(store.StateHeld).quantities(0, 2),
			ok(releasePart("web", "r1", "p2", give(1, 2))).is(store.StateReleased).quantities(0, 0),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}),
			figure("web", "tulip", "ams", fig{OnHand: 3, Available: 3}),
			noDeadline(), restoresCleanly(),
			fails(releasePart("web", "r1", "p3", give(0, 1)), store.ErrNotHeld, "reservation_id"),
			ok(release("web", "r1")).is(store.StateReleased),
		)},
		{name: "one partial release of every line releases the reservation", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 15), line("tulip", 2))),
			ok(releasePart("web", "r1", "p1", give(1, 2), give(0, 15))).is(store.StateReleased).quantities(0, 0),
			avail("web", "rose", 20), avail("web", "tulip", 8),
		)},
		{name: "a retry with the same release_id answers without releasing again", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 4))),
			ok(releasePart("web", "r1", "p1", give(0, 1))).quantities(3),
			ok(releasePart("web", "r1", "p1", give(0, 1))).quantities(3).held(at(0, "ams", 3)),
			figure("web", "rose", "ams", fig{OnHand: 10, Reserved: 3, Available: 7}),
			fails(releasePart("web", "r1", "p1", give(0, 2)), store.ErrIdempotencyConflict, "release_id"),
			fails(releasePart("web", "r1", "p1", give(0, 1), give(0, 1)), store.ErrIdempotencyConflict, "release_id"),
			ok(releasePart("web", "r1", "p2", give(0, 3))).is(store.StateReleased),
			// After the hold ended the retry still answers from the op record.
			ok(releasePart("web", "r1", "p1", give(0, 1))).after(time.Second).is(store.StateReleased).deadline(time.Minute),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}),
		)},
		{name: "only a held reservation can be partly released", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 2))), ok(confirm("web", "r1", "o1")),
			fails(releasePart("web", "r1", "p1", give(0, 1)), store.ErrNotHeld, "reservation_id"),
			ok(reserve("web", "r2", time.Minute, line("rose", 2))), tick(time.Minute),
			fails(releasePart("web", "r2", "p1", give(0, 1)), store.ErrNotHeld, "reservation_id"),
			fails(releasePart("web", "r9", "p1", give(0, 1)), store.ErrUnknownReservation, "reservation_id"),
		)},
		{name: "malformed partial releases are invalid", steps: with(reserveWorld,
			ok(reserve("web", "r1", 0, line("rose", 2))),
			fails(releasePart("web", "r1", "", give(0, 1)), store.ErrInvalid, "release_id"),
			fails(releasePart("web", "r1", "p1", give(0, 0)), store.ErrInvalid, "lines[0].quantity"),
			fails(releasePart("web", "r1", "p1", give(0, 1), give(0, -1)), store.ErrInvalid, "lines[1].quantity"),
			reservationIs("web", "r1", store.StateHeld),
		)},
	})
}

func TestScenarioCancelOrder(t *testing.T) {
	confirmed := with(reserveWorld,
		ok(reserve("web", "r1", 0, line("rose", 4))), ok(confirm("web", "r1", "o1")).order("o1", 1),
		figure("web", "rose", "ams", fig{OnHand: 10, Committed: 4, Available: 6}),
	)
	runAll(t, []scenario{
		{name: "cancelling an unabsorbed order returns its committed units", steps: with(confirmed,
			ok(cancelOrder("web", "r1")).is(store.StateCancelled),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}), avail("web", "rose", 20),
			reservationIs("web", "r1", store.StateCancelled), restoresCleanly(),
		)},
		{name: "cancelling twice answers the same and returns the units once", steps: with(confirmed,
			ok(cancelOrder("web", "r1")).is(store.StateCancelled),
			ok(cancelOrder("web", "r1")).is(store.StateCancelled).after(time.Second),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}),
		)},
		{name: "an absorbed order cannot be cancelled", steps: with(confirmed,
			ok(setStockMark(1, row("rose", "ams", 6, 2))),
			fails(cancelOrder("web", "r1"), store.ErrAbsorbed, "reservation_id"),
			reservationIs("web", "r1", store.StateConfirmed),
			figure("web", "rose", "ams", fig{OnHand: 6, Available: 6}),
		)},
		{name: "the absorbed mark passing a cancelled order never takes its units twice", steps: with(confirmed,
			ok(reserve("web", "r2", 0, line("rose", 3))), ok(confirm("web", "r2", "o2")).order("o2", 2),
			ok(cancelOrder("web", "r1")),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 3, Available: 7}),
			ok(setStockMark(2, row("rose", "ams", 7, 2))),
			figure("web", "rose", "ams", fig{OnHand: 7, Available: 7}), restoresCleanly(),
			ok(cancelOrder("web", "r1")).is(store.StateCancelled),
			fails(cancelOrder("web", "r2"), store.ErrAbsorbed, "reservation_id"),
		)},
		{name: "a held, released or expired reservation is not a confirmed order", steps: with(reserveWorld,
			ok(reserve("web", "r1", time.Minute, line("rose", 1))),
			fails(cancelOrder("web", "r1"), store.ErrNotConfirmed, "reservation_id"),
			ok(reserve("web", "r2", 0, line("rose", 1))), ok(release("web", "r2")),
			fails(cancelOrder("web", "r2"), store.ErrNotConfirmed, "reservation_id"),
			tick(time.Minute),
			fails(cancelOrder("web", "r1"), store.ErrNotConfirmed, "reservation_id"),
			fails(cancelOrder("web", "r9"), store.ErrUnknownReservation, "reservation_id"),
			fails(cancelOrder("", "r9"), store.ErrInvalid, "channel"),
			fails(cancelOrder("web", ""), store.ErrInvalid, "reservation_id"),
		)},
		{name: "a cancelled order is neither released nor confirmed again", steps: with(confirmed,
			ok(cancelOrder("web", "r1")),
			fails(release("web", "r1"), store.ErrNotHeld, "reservation_id"),
			fails(releasePart("web", "r1", "p1", give(0, 1)), store.ErrNotHeld, "reservation_id"),
			fails(confirm("web", "r1", "o2"), store.ErrIdempotencyConflict, "order_ref"),
			ok(confirm("web", "r1", "o1")).is(store.StateCancelled),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}),
		)},
		{name: "a cancelled reservation is pruned like a released one", cfg: store.Config{RetryWindowNanos: int64(time.Hour)}, steps: with(confirmed,
			ok(cancelOrder("web", "r1")).after(30*time.Minute),
			tick(30*time.Minute-1), reservationIs("web", "r1", store.StateCancelled),
			tick(1), noReservation("web", "r1"),
			fails(cancelOrder("web", "r1"), store.ErrUnknownReservation, "reservation_id"),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}),
		)},
	})
}

func TestScenarioReleaseAll(t *testing.T) {
	holds := with(reserveWorld,
		ok(reserve("web", "r2", 0, line("rose", 2))), ok(reserve("web", "r1", 0, line("rose", 1))),
		ok(reserve("web", "r3", 0, line("rose", 3))), ok(confirm("web", "r3", "o3")),
		ok(reserve("web", "r4", 0, line("tulip", 1))), ok(release("web", "r4")),
		ok(reserve("rep", "r1", 0, lineAt("rose", 5, "ber"))),
	)
	runAll(t, []scenario{
		{name: "release all ends only that channel's live holds", steps: with(holds,
			ok(releaseAll("web", "a1")).counts(2),
			reservationIs("web", "r1", store.StateReleased), reservationIs("web", "r2", store.StateReleased),
			reservationIs("web", "r3", store.StateConfirmed), reservationIs("web", "r4", store.StateReleased),
			reservationIs("rep", "r1", store.StateHeld),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 3, Available: 7}),
			figure("rep", "rose", "ber", fig{OnHand: 10, Reserved: 5, Available: 5}), restoresCleanly(),
		)},
		{name: "a retry answers the first count even after new holds", steps: with(holds,
			ok(releaseAll("web", "a1")).counts(2),
			ok(reserve("web", "r5", 0, line("rose", 1))),
			ok(releaseAll("web", "a1")).counts(2).after(time.Second), reservationIs("web", "r5", store.StateHeld),
			ok(releaseAll("web", "a2")).counts(1), reservationIs("web", "r5", store.StateReleased),
			ok(releaseAll("rep", "a1")).counts(1), reservationIs("rep", "r1", store.StateReleased),
			ok(releaseAll("rep", "a3")).counts(0),
		)},
		{name: "the count is forgotten after the retry window", cfg: store.Config{RetryWindowNanos: int64(time.Hour)}, steps: with(holds,
			ok(releaseAll("web", "a1")).counts(2),
			ok(reserve("web", "r5", 2*time.Hour, line("rose", 1))),
			tick(time.Hour-1), ok(releaseAll("web", "a1")).counts(2), reservationIs("web", "r5", store.StateHeld),
			tick(1), ok(releaseAll("web", "a1")).counts(1), reservationIs("web", "r5", store.StateReleased),
		)},
		{name: "an undeclared channel is refused", steps: with(holds,
			fails(releaseAll("ghost", "a1"), store.ErrUnknownChannel, "channel"),
			fails(releaseAll("web", ""), store.ErrInvalid, "release_all_id"),
			fails(releaseAll("", "a1"), store.ErrInvalid, "channel"),
			reservationIs("web", "r1", store.StateHeld),
		)},
	})
}

// lifecycleLog exercises every lifecycle command, retries included; the
// state it leaves holds ops of both kinds, a cancelled order and a
// remembered ReleaseAll.
func lifecycleLog() []*logv1.Entry {
	s := int64(time.Second)
	setup := []*logv1.Command{loc("ams"), loc("fra"), channel("web", 0, "ams", "fra"), channel("rep", 0, "fra", "ams"),
		setStock(row("rose", "ams", 10, 1), row("rose", "fra", 10, 1), row("tulip", "ams", 5, 1))}
	return []*logv1.Entry{
		entry(t0, setup...),
		entry(t0+1*s, reserve("web", "r1", time.Minute, line("rose", 15), line("tulip", 2)),
			reserve("web", "r2", time.Minute, line("rose", 2)), reserve("rep", "r1", time.Minute, line("tulip", 1)),
			reserve("web", "r3", 0, line("rose", 1))),
		entry(t0+2*s, extendCmd("web", "r1", "e1", 10*time.Minute), releasePart("web", "r1", "p1", give(0, 6)),
			confirm("web", "r2", "o2"), confirm("web", "r3", "o3")),
		entry(t0+3*s, extendCmd("web", "r1", "e1", 10*time.Minute), releasePart("web", "r1", "p1", give(0, 6)),
			cancelOrder("web", "r2"), cancelOrder("web", "r2"), releaseAll("rep", "a1")),
		entry(t0+4*s, reserve("rep", "r2", time.Minute, line("rose", 1)), releaseAll("rep", "a1"), setStockMark(2)),
		entry(t0+90*s, tickCmd()),
	}
}

func TestI4LifecycleSnapshotRoundtripAndDeterminism(t *testing.T) {
	log := lifecycleLog()
	a, b := store.New(store.Config{}), store.New(store.Config{})
	var results [][]store.Result
	for i, e := range log {
		ra, rb := a.ApplyEntry(store.Revision(i+1), e), b.ApplyEntry(store.Revision(i+1), e)
		if !reflect.DeepEqual(ra, rb) {
			t.Fatalf("input entry %d (I4): got %+v and %+v, want equal results", i, ra, rb)
		}
		for j, r := range ra {
			if r.Err != nil {
				t.Fatalf("input entry %d command %d %v: got %s, want ok", i, j, e.Commands[j], describe(r))
			}
		}
		results = append(results, ra)
	}
	sameRecords(t, "lifecycle log", a, b)
	if got := results[4][1].Count; got != 1 {
		t.Errorf("input release all retry: got count %d, want the first answer 1", got)
	}

	// The state holds what this test is about.
	recs, err := records(a)
	if err != nil {
		t.Fatal(err)
	}
	var ops, cancelled, releaseAlls int
	for _, r := range recs {
		var rec logv1.SnapshotRecord
		if err := unmarshalRecord(r, &rec); err != nil {
			t.Fatal(err)
		}
		ops += len(rec.GetReservation().GetOps())
		if rec.GetOrder().GetCancelled() {
			cancelled++
		}
		if rec.GetReleaseAll() != nil {
			releaseAlls++
		}
	}
	if ops != 2 || cancelled != 1 || releaseAlls != 1 {
		t.Fatalf("input lifecycle log: got %d ops, %d cancelled orders, %d release-all records, want 2, 1, 1", ops, cancelled, releaseAlls)
	}

	back, err := restored(a, store.Config{})
	if err != nil {
		t.Fatalf("input lifecycle snapshot: got restore error %v, want ok", err)
	}
	sameRecords(t, "lifecycle snapshot restored", back, a)
	// Retries after the restore answer as before it (I3 across snapshots).
	retries := entry(t0+91*int64(time.Second), extendCmd("web", "r1", "e1", 10*time.Minute), releasePart("web", "r1", "p1", give(0, 6)),
		cancelOrder("web", "r2"), releaseAll("rep", "a1"), extendCmd("web", "r1", "e1", time.Minute), releasePart("web", "r1", "p1", give(0, 5)))
	want := a.ApplyEntry(store.Revision(len(log)+1), retries)
	got := back.ApplyEntry(store.Revision(len(log)+1), retries)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("input retries after restore (I4): got %+v, want %+v", got, want)
	}
	if r := want[0].Reservation; r == nil || r.ExpiresAt != store.Timestamp(t0+2*int64(time.Second)+int64(10*time.Minute)) || r.State != store.StateHeld {
		t.Errorf("input extend retry: got %s, want the first deadline t0+2s+10m, held", describe(want[0]))
	}
	if r := want[1].Reservation; r == nil || r.Lines[0].Quantity != 9 {
		t.Errorf("input partial release retry: got %s, want line 0 at 9", describe(want[1]))
	}
	if r := want[2].Reservation; r == nil || r.State != store.StateCancelled {
		t.Errorf("input cancel retry: got %s, want cancelled", describe(want[2]))
	}
	if want[3].Count != 1 {
		t.Errorf("input release all retry: got count %d, want 1", want[3].Count)
	}
	for i, f := range map[int]string{4: "extend_id", 5: "release_id"} {
		var rej *store.Rejection
		if !errors.As(want[i].Err, &rej) || !errors.Is(rej, store.ErrIdempotencyConflict) || rej.Field != f {
			t.Errorf("input retry %d with another payload: got %s, want %v naming %s", i, describe(want[i]), store.ErrIdempotencyConflict, f)
		}
	}
	sameRecords(t, "after the retries", back, a)

	// A snapshot at every point plus the tail equals the straight run.
	for cut := range len(log) {
		prefix := store.New(store.Config{})
		applyLog(prefix, log[:cut], 0)
		tail, err := restored(prefix, store.Config{})
		if err != nil {
			t.Fatalf("input snapshot at entry %d: got restore error %v, want ok", cut, err)
		}
		for i, r := range applyLog(tail, log, cut) {
			if !reflect.DeepEqual(r, results[cut+i]) {
				t.Fatalf("input snapshot at %d, entry %d (I4): got %+v, want %+v", cut, cut+i, r, results[cut+i])
			}
		}
		tail.ApplyEntry(store.Revision(len(log)+1), retries)
		sameRecords(t, fmt.Sprintf("snapshot at %d plus tail", cut), tail, a)
	}
}

// TestRestoreRefusesACancelledOrderStillCommitted: committed must equal the
// unabsorbed, uncancelled orders; a snapshot that forgets a cancellation
// is corrupt.
func TestRestoreRefusesACancelledOrderStillCommitted(t *testing.T) {
	m := store.New(store.Config{})
	applyLog(m, lifecycleLog()[:4], 0)
	recs, err := records(m)
	if err != nil {
		t.Fatal(err)
	}
	edited := 0
	for i, r := range recs {
		var rec logv1.SnapshotRecord
		if err := unmarshalRecord(r, &rec); err != nil {
			t.Fatal(err)
		}
		if o := rec.GetOrder(); o.GetCancelled() {
			o.Cancelled = false
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&rec)
			if err != nil {
				t.Fatal(err)
			}
			recs[i] = b
			edited++
		}
	}
	if edited != 1 {
		t.Fatalf("input lifecycle log: got %d cancelled orders, want 1", edited)
	}
	if err := store.New(store.Config{}).Restore(sliceSource(recs)); !errors.Is(err, store.ErrCorruptSnapshot) {
		t.Fatalf("input a cancelled order recorded as live: got %v, want %v", err, store.ErrCorruptSnapshot)
	}
}

// lifecycleCommand is genLog's share of Extend, partial Release, CancelOrder
// and ReleaseAll, retries and conflicts included. Most name a recent hold, so
// they find something to act on, and confirm it now and then, so there are
// orders to cancel.
func (g *logGen) lifecycleCommand(ttls []time.Duration) *logv1.Command {
	ch, res := g.pick(genChannels), g.resID()
	if len(g.recent) > 0 && g.r.IntN(4) > 0 {
		k := g.recent[g.r.IntN(len(g.recent))]
		ch, res = k[0], k[1]
	}
	id := "x" + strconv.Itoa(g.r.IntN(4))
	switch g.r.IntN(6) {
	case 0:
		return extendCmd(ch, res, id, ttls[g.r.IntN(len(ttls))])
	case 1:
		var lines []*logv1.ReleaseLine
		for range 1 + g.r.IntN(2) {
			lines = append(lines, give(uint32(g.r.IntN(3)), int64(g.r.IntN(6))))
		}
		return releasePart(ch, res, id, lines...)
	case 2:
		g.lastConfirmed = [2]string{ch, res}
		return confirm(ch, res, "o"+strconv.Itoa(g.r.IntN(3)))
	case 3, 4:
		if g.lastConfirmed[0] != "" && g.r.IntN(3) > 0 {
			ch, res = g.lastConfirmed[0], g.lastConfirmed[1]
		}
		return cancelOrder(ch, res)
	}
	return releaseAll(g.pick(append(genChannels, "cx")), id)
}
