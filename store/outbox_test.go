package store_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// Builders and checks for the order outbox: acks, the entries Outbox
// delivers, an order as GetOrder shows it, and the backlog.

func ackCmd(acks ...*logv1.OrderAck) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_AckOrders{AckOrders: &logv1.AckOrders{Acks: acks}}}
}

func ackBooked(seq uint64) *logv1.OrderAck {
	return &logv1.OrderAck{Seq: seq, Outcome: uint32(store.OutcomeBooked)}
}

func ackRefused(seq uint64, reason string) *logv1.OrderAck {
	return &logv1.OrderAck{Seq: seq, Outcome: uint32(store.OutcomeRefused), Reason: reason}
}

func ackDone(seq uint64) *logv1.OrderAck {
	return &logv1.OrderAck{Seq: seq, Outcome: uint32(store.OutcomeDone)}
}

// ackApplied and ackStale are the rows of acks (no version or on_hand).
func ackApplied() rowWant { return applied(0, 0) }

func ackStale(i int) rowWant { return stale(fmt.Sprintf("acks[%d].outcome", i), 0, 0) }

// entryWant is an outbox entry as a test states it: seq, kind and, for a
// cancellation, the order it cancels.
type entryWant struct {
	seq     uint64
	kind    store.OutboxKind
	cancels uint64
}

func orderEntry(seq uint64) entryWant { return entryWant{seq: seq, kind: store.OutboxOrder} }

func cancelEntry(seq, cancels uint64) entryWant {
	return entryWant{seq: seq, kind: store.OutboxCancellation, cancels: cancels}
}

// outboxIs checks what Outbox(after, 100) delivers.
func outboxIs(after uint64, want ...entryWant) step {
	return checkStep(fmt.Sprintf("outbox after %d", after), func(t *testing.T, m *store.Machine, where string) {
		var got []entryWant
		for _, e := range m.Outbox(after, 100) {
			if e.Outcome != 0 {
				t.Errorf("%s: got entry %+v with an outcome, want only pending ones", where, e)
			}
			got = append(got, entryWant{e.Seq, e.Kind, e.CancelsSeq})
		}
		if !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
			t.Errorf("%s: got entries %+v, want %+v", where, got, want)
		}
	})
}

// orderWant is what GetOrder shows of an order.
type orderWant struct {
	seq       uint64
	outcome   store.OrderOutcome
	reason    string
	absorbed  bool
	cancelled bool
}

// orderIs checks Machine.Order(ch, ref).
func orderIs(ch, ref string, want orderWant) step {
	return checkStep(fmt.Sprintf("order %s/%s", ch, ref), func(t *testing.T, m *store.Machine, where string) {
		e, err := m.Order(store.ChannelID(ch), ref)
		if err != nil {
			t.Fatalf("%s: got error %v, want %+v", where, err, want)
		}
		got := orderWant{e.Seq, e.Outcome, e.OutcomeReason, e.Absorbed, e.Cancelled}
		if got != want || e.Kind != store.OutboxOrder || e.OrderRef != ref || e.Channel != store.ChannelID(ch) {
			t.Errorf("%s: got %+v (entry %+v), want %+v", where, got, e, want)
		}
	})
}

// noOrder checks that Machine.Order finds nothing under (ch, ref).
func noOrder(ch, ref string) step {
	return checkStep(fmt.Sprintf("order %s/%s", ch, ref), func(t *testing.T, m *store.Machine, where string) {
		e, err := m.Order(store.ChannelID(ch), ref)
		var rej *store.Rejection
		if !errors.Is(err, store.ErrUnknownOrder) || !errors.As(err, &rej) || rej.Field != "order_ref" {
			t.Errorf("%s: got %+v, %v, want %v naming order_ref", where, e, err, store.ErrUnknownOrder)
		}
	})
}

// statusIs checks Machine.OutboxStatus; created is the oldest pending
// entry's creation time relative to t0 (ignored when nothing is pending).
func statusIs(pending, oldest uint64, created time.Duration, next, mark uint64) step {
	return checkStep("outbox status", func(t *testing.T, m *store.Machine, where string) {
		want := store.OutboxStatus{Pending: pending, OldestPendingSeq: oldest, NextSeq: next, AbsorbedMark: mark}
		if oldest != 0 {
			want.OldestPendingCreatedAt = store.Timestamp(t0 + int64(created))
		}
		if got := m.OutboxStatus(); got != want {
			t.Errorf("%s: got %+v, want %+v", where, got, want)
		}
	})
}

// outboxSurvivesRestore checks that a machine restored from a snapshot
// delivers the same entries and reports the same backlog and orders (a
// server killed between Confirm and AckOrders delivers the order again).
func outboxSurvivesRestore(refs ...[2]string) step {
	return checkStep("outbox after a restore", func(t *testing.T, m *store.Machine, where string) {
		back, err := restored(m, store.Config{})
		if err != nil {
			t.Fatalf("%s: got restore error %v, want ok", where, err)
		}
		if got, want := back.Outbox(0, 1000), m.Outbox(0, 1000); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got entries %+v after a restore, want %+v", where, got, want)
		}
		if got, want := back.OutboxStatus(), m.OutboxStatus(); got != want {
			t.Errorf("%s: got status %+v after a restore, want %+v", where, got, want)
		}
		for _, r := range refs {
			got, errGot := back.Order(store.ChannelID(r[0]), r[1])
			want, errWant := m.Order(store.ChannelID(r[0]), r[1])
			if !reflect.DeepEqual(got, want) || fmt.Sprint(errGot) != fmt.Sprint(errWant) {
				t.Errorf("%s: got order %v %+v (%v) after a restore, want %+v (%v)", where, r, got, errGot, want, errWant)
			}
		}
	})
}

// ackRow expects one ack row naming field with a reason containing text.
func (s step) ackRowSays(i int, text string) step {
	return s.also(func(t *testing.T, where string, res store.Result) {
		if i >= len(res.Rows) || !strings.Contains(res.Rows[i].Reason, text) {
			t.Errorf("%s: got rows %+v, want row %d to say %q", where, res.Rows, i, text)
		}
	})
}

// confirmedFive: web holds 5 rose at ams and confirms it as order o1, seq 1.
var confirmedFive = with(reserveWorld,
	ok(reserve("web", "r1", 0, lineAt("rose", 5, "ams"))), ok(confirm("web", "r1", "o1")).order("o1", 1),
	figure("web", "rose", "ams", fig{OnHand: 10, Committed: 5, Available: 5}),
)

// TestScenarioDoubleCount is the race of issue 5 that double-counts an order
// elsewhere: the ERP's counts and stockd's committed must never both take
// the same order's units (DESIGN.md "the absorbed mark").
func TestScenarioDoubleCount(t *testing.T) {
	runAll(t, []scenario{
		{name: "a count taken before booking keeps the order out, the next count with the mark past it does not take it twice", steps: with(confirmedFive,
			// The ERP counted before it booked o1: its count still holds the 5.
			ok(setStock(row("rose", "ams", 10, 2))).rowsAre(applied(2, 10)),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 5, Available: 5}), avail("web", "rose", 15),
			ok(ackCmd(ackBooked(1))).rowsAre(ackApplied()),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 5, Available: 5}),
			// Booked: the next count has the 5 out, and the mark says so.
			ok(setStockMark(1, row("rose", "ams", 5, 3))).rowsAre(applied(3, 5)),
			figure("web", "rose", "ams", fig{OnHand: 5, Available: 5}), avail("web", "rose", 15),
			orderIs("web", "o1", orderWant{seq: 1, outcome: store.OutcomeBooked, absorbed: true}),
			restoresCleanly(),
		)},
		{name: "reordered: the mark arrives in a later batch than the count, which never lets more be sold", steps: with(confirmedFive,
			ok(ackCmd(ackBooked(1))),
			// The count that reflects the booking, without its mark yet: the
			// 5 are out of on_hand and still committed, so fewer are sold for
			// a moment, never more.
			ok(setStock(row("rose", "ams", 5, 3))).rowsAre(applied(3, 5)),
			figure("web", "rose", "ams", fig{OnHand: 5, Committed: 5, Available: 0}),
			ok(setStockMark(1)),
			figure("web", "rose", "ams", fig{OnHand: 5, Available: 5}), avail("web", "rose", 15),
			// The count taken before the booking arrives last: stale, ignored.
			ok(setStock(row("rose", "ams", 10, 2))).rowsAre(stale("rows[0].version", 3, 5)),
			figure("web", "rose", "ams", fig{OnHand: 5, Available: 5}),
			// The mark again, or an older one, changes nothing.
			ok(setStockMark(1)), ok(setStockMark(0, row("rose", "ams", 5, 3))),
			figure("web", "rose", "ams", fig{OnHand: 5, Available: 5}), restoresCleanly(),
		)},
		{name: "fulfilled from another location: the count drops there, the mark frees the order's location", steps: with(confirmedFive,
			ok(setStock(row("rose", "ams", 10, 2), row("rose", "fra", 10, 2))),
			avail("web", "rose", 15),
			ok(ackCmd(ackBooked(1))),
			// The ERP shipped the 5 from fra: fra's count drops, ams keeps 10.
			ok(setStockMark(1, row("rose", "ams", 10, 3), row("rose", "fra", 5, 3))),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}),
			figure("web", "rose", "fra", fig{OnHand: 5, Available: 5}),
			avail("web", "rose", 15), restoresCleanly(),
		)},
		{name: "refused: the units come back at once, and the mark passing the order never frees them again", steps: with(confirmedFive,
			ok(reserve("web", "r2", 0, lineAt("rose", 3, "ams"))), ok(confirm("web", "r2", "o2")).order("o2", 2),
			ok(setStock(row("rose", "ams", 10, 2))),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 8, Available: 2}),
			ok(ackCmd(ackRefused(1, "no stock in the erp"), ackBooked(2))).rowsAre(ackApplied(), ackApplied()),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 3, Available: 7}),
			orderIs("web", "o1", orderWant{seq: 1, outcome: store.OutcomeRefused, reason: "no stock in the erp"}),
			// The ERP's next count has o2's 3 out; the mark passes both orders.
			ok(setStockMark(2, row("rose", "ams", 7, 3))),
			figure("web", "rose", "ams", fig{OnHand: 7, Available: 7}), avail("web", "rose", 17),
			orderIs("web", "o1", orderWant{seq: 1, outcome: store.OutcomeRefused, reason: "no stock in the erp"}),
			orderIs("web", "o2", orderWant{seq: 2, outcome: store.OutcomeBooked, absorbed: true}),
			restoresCleanly(),
		)},
		{name: "refused after the mark passed the order is rejected: its units left committed once", steps: with(confirmedFive,
			ok(setStockMark(1, row("rose", "ams", 5, 2))),
			figure("web", "rose", "ams", fig{OnHand: 5, Available: 5}),
			ok(ackCmd(ackRefused(1, "too late"))).rowsAre(rejected("acks[0].outcome")).ackRowSays(0, "already absorbed"),
			figure("web", "rose", "ams", fig{OnHand: 5, Available: 5}),
			orderIs("web", "o1", orderWant{seq: 1, absorbed: true}), restoresCleanly(),
		)},
	})
}

func TestScenarioAckOrders(t *testing.T) {
	runAll(t, []scenario{
		{name: "booked keeps the order committed and out of delivery", steps: with(confirmedFive,
			outboxIs(0, orderEntry(1)),
			ok(ackCmd(ackBooked(1))).rowsAre(ackApplied()),
			outboxIs(0), figure("web", "rose", "ams", fig{OnHand: 10, Committed: 5, Available: 5}),
			orderIs("web", "o1", orderWant{seq: 1, outcome: store.OutcomeBooked}),
			statusIs(0, 0, 0, 2, 0), restoresCleanly(),
		)},
		{name: "the same outcome again is ignored as stale, another is rejected", steps: with(confirmedFive,
			ok(ackCmd(ackBooked(1))),
			ok(ackCmd(ackBooked(1), ackRefused(1, "changed my mind"))).rowsAre(ackStale(0), rejected("acks[1].outcome")).
				ackRowSays(1, "already booked"),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 5, Available: 5}),
			orderIs("web", "o1", orderWant{seq: 1, outcome: store.OutcomeBooked}),
		)},
		{name: "refused twice is stale and frees the units once", steps: with(confirmedFive,
			ok(ackCmd(ackRefused(1, "blocked customer"), ackRefused(1, "blocked customer"), ackBooked(1))).
				rowsAre(ackApplied(), ackStale(1), rejected("acks[2].outcome")),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}),
			orderIs("web", "o1", orderWant{seq: 1, outcome: store.OutcomeRefused, reason: "blocked customer"}),
			reservationIs("web", "r1", store.StateConfirmed), restoresCleanly(),
		)},
		{name: "an unknown seq is rejected and its valid neighbours still apply", steps: with(confirmedFive,
			ok(ackCmd(ackBooked(0), ackBooked(7), ackBooked(1))).
				rowsAre(rejected("acks[0].seq"), rejected("acks[1].seq"), ackApplied()).ackRowSays(1, "the next is 2"),
			orderIs("web", "o1", orderWant{seq: 1, outcome: store.OutcomeBooked}),
		)},
		{name: "done is for a cancellation, booked and refused for an order", steps: with(confirmedFive,
			ok(ackCmd(ackDone(1))).rowsAre(rejected("acks[0].outcome")),
			ok(cancelOrder("web", "r1")),
			ok(ackCmd(ackBooked(2), ackRefused(2, "x"), ackDone(2), ackDone(2))).
				rowsAre(rejected("acks[0].outcome"), rejected("acks[1].outcome"), ackApplied(), ackStale(3)),
			outboxIs(0, orderEntry(1)),
		)},
		{name: "malformed acks are invalid as a whole", steps: with(confirmedFive,
			fails(ackCmd(), store.ErrInvalid, "acks"),
			fails(ackCmd(ackBooked(1), &logv1.OrderAck{Seq: 1}), store.ErrInvalid, "acks[1].outcome"),
			fails(ackCmd(&logv1.OrderAck{Seq: 1, Outcome: 4}), store.ErrInvalid, "acks[0].outcome"),
			fails(ackCmd(ackRefused(1, strings.Repeat("x", store.MaxIDBytes+1))), store.ErrInvalid, "acks[0].reason"),
			fails(ackCmd(ackRefused(1, "a\nb")), store.ErrInvalid, "acks[0].reason"),
			ok(ackCmd(ackRefused(1, strings.Repeat("x", store.MaxIDBytes)))).rowsAre(ackApplied()),
		)},
		{name: "a refused backorder gives its waiting units back to the incoming line", steps: with(reserveWorld,
			ok(setIncomingCmd(incLine("PO1", "rose", "ams", 10, 0, 2*day, 1))),
			ok(reserve("web", "b1", 0, boLineAt("rose", 13, "ams"))), ok(confirm("web", "b1", "o1")),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 10}), backorderedIs("rose", bo("PO1", 0, 3)),
			ok(ackCmd(ackRefused(1, "no"))),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}), backorderedIs("rose", bo("PO1", 0, 0)),
			// The receipt no longer lands on the refused order.
			ok(setIncomingCmd(incLine("PO1", "rose", "ams", 10, 10, 2*day, 2))),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}), restoresCleanly(),
		)},
	})
}

func TestScenarioCancellationEntries(t *testing.T) {
	runAll(t, []scenario{
		{name: "a cancellation goes out with its own seq naming the order", steps: with(confirmedFive,
			ok(cancelOrder("web", "r1")).after(time.Second),
			outboxIs(0, orderEntry(1), cancelEntry(2, 1)), outboxIs(1, cancelEntry(2, 1)),
			orderIs("web", "o1", orderWant{seq: 1, cancelled: true}),
			statusIs(2, 1, 0, 3, 0),
			checkStep("the cancellation's fields", func(t *testing.T, m *store.Machine, where string) {
				es := m.Outbox(1, 1)
				want := store.OutboxEntry{Seq: 2, Kind: store.OutboxCancellation, Channel: "web", ReservationID: "r1", OrderRef: "o1",
					Lines: []store.OutboxLine{{Item: "rose", Location: "ams", Quantity: 5}}, CreatedAt: store.Timestamp(t0 + int64(time.Second)), CancelsSeq: 1}
				if len(es) != 1 || !reflect.DeepEqual(es[0], want) {
					t.Errorf("%s: got %+v, want [%+v]", where, es, want)
				}
			}),
			// Cancelling again sends nothing more; the next order gets seq 3.
			ok(cancelOrder("web", "r1")), outboxIs(0, orderEntry(1), cancelEntry(2, 1)),
			ok(reserve("web", "r2", 0, line("rose", 1))), ok(confirm("web", "r2", "o2")).order("o2", 3),
			restoresCleanly(),
		)},
		{name: "the mark passing a cancellation absorbs nothing", steps: with(confirmedFive,
			ok(reserve("web", "r2", 0, lineAt("rose", 2, "ams"))), ok(confirm("web", "r2", "o2")).order("o2", 2),
			ok(cancelOrder("web", "r1")),
			ok(setStockMark(3, row("rose", "ams", 8, 2))),
			figure("web", "rose", "ams", fig{OnHand: 8, Available: 8}),
			orderIs("web", "o1", orderWant{seq: 1, cancelled: true}),
			orderIs("web", "o2", orderWant{seq: 2, absorbed: true}),
			outboxIs(0, orderEntry(1), orderEntry(2), cancelEntry(3, 1)), statusIs(3, 1, 0, 4, 3),
			restoresCleanly(),
		)},
		{name: "the ERP acks the order and its cancellation; a refusal of a cancelled order frees nothing twice", steps: with(confirmedFive,
			ok(reserve("web", "r2", 0, lineAt("rose", 2, "ams"))), ok(confirm("web", "r2", "o2")),
			ok(cancelOrder("web", "r1")),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 2, Available: 8}),
			ok(ackCmd(ackRefused(1, "cancelled anyway"), ackDone(3))).rowsAre(ackApplied(), ackApplied()),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 2, Available: 8}),
			outboxIs(0, orderEntry(2)), restoresCleanly(),
		)},
		{name: "cancelling a refused order sends no cancellation and frees nothing", steps: with(confirmedFive,
			ok(ackCmd(ackRefused(1, "no"))),
			ok(cancelOrder("web", "r1")).is(store.StateCancelled),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}),
			outboxIs(0), statusIs(0, 0, 0, 2, 0),
			orderIs("web", "o1", orderWant{seq: 1, outcome: store.OutcomeRefused, reason: "no", cancelled: true}),
			restoresCleanly(),
		)},
	})
}

// TestScenarioOutboxTrimming: finished entries leave memory after the retry
// window, oldest first; committed units are in the counters, so trimming
// never frees any.
func TestScenarioOutboxTrimming(t *testing.T) {
	hour := store.Config{RetryWindowNanos: int64(time.Hour)}
	runAll(t, []scenario{
		{name: "a booked and absorbed order is kept for the window after it was created, then forgotten", cfg: hour, steps: with(confirmedFive,
			ok(ackCmd(ackBooked(1))).after(time.Minute), ok(setStockMark(1, row("rose", "ams", 5, 2))),
			tick(time.Hour-time.Minute-1), orderIs("web", "o1", orderWant{seq: 1, outcome: store.OutcomeBooked, absorbed: true}),
			ok(ackCmd(ackBooked(1))).rowsAre(ackStale(0)),
			tick(1), noOrder("web", "o1"),
			ok(ackCmd(ackBooked(1))).rowsAre(rejected("acks[0].seq")).ackRowSays(0, "forgotten"),
			figure("web", "rose", "ams", fig{OnHand: 5, Available: 5}), statusIs(0, 0, 0, 2, 1), restoresCleanly(),
		)},
		{name: "I1 trimming never frees committed: a booked order the mark has not passed stays", cfg: hour, steps: with(confirmedFive,
			ok(reserve("web", "r2", 0, lineAt("rose", 3, "ams"))), ok(confirm("web", "r2", "o2")),
			ok(ackCmd(ackRefused(1, "no"), ackBooked(2))),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 3, Available: 7}),
			tick(3*time.Hour), noOrder("web", "o1"),
			orderIs("web", "o2", orderWant{seq: 2, outcome: store.OutcomeBooked}),
			figure("web", "rose", "ams", fig{OnHand: 10, Committed: 3, Available: 7}),
			restoresCleanly(),
			// The mark still finds o2 after o1 left.
			ok(setStockMark(2, row("rose", "ams", 7, 2))),
			figure("web", "rose", "ams", fig{OnHand: 7, Available: 7}),
			orderIs("web", "o2", orderWant{seq: 2, outcome: store.OutcomeBooked, absorbed: true}),
			tick(time.Hour), noOrder("web", "o2"), statusIs(0, 0, 0, 3, 2), restoresCleanly(),
		)},
		{name: "a pending order keeps the finished ones after it", cfg: hour, steps: with(confirmedFive,
			ok(reserve("web", "r2", 0, lineAt("rose", 3, "ams"))), ok(confirm("web", "r2", "o2")),
			ok(ackCmd(ackRefused(2, "no"))),
			tick(2*time.Hour), orderIs("web", "o2", orderWant{seq: 2, outcome: store.OutcomeRefused, reason: "no"}),
			statusIs(1, 1, 0, 3, 0),
			// Finished entries leave when the next entry applies.
			ok(ackCmd(ackRefused(1, "no"))), orderIs("web", "o1", orderWant{seq: 1, outcome: store.OutcomeRefused, reason: "no"}),
			tick(0), noOrder("web", "o1"), noOrder("web", "o2"),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}), restoresCleanly(),
		)},
		{name: "a refused order past the mark leaves, and the mark then absorbs the next one", cfg: hour, steps: with(confirmedFive,
			ok(reserve("web", "r2", 0, lineAt("rose", 3, "ams"))), ok(confirm("web", "r2", "o2")),
			ok(ackCmd(ackRefused(1, "no"), ackBooked(2))),
			tick(2*time.Hour), noOrder("web", "o1"),
			ok(setStockMark(2, row("rose", "ams", 7, 2))),
			figure("web", "rose", "ams", fig{OnHand: 7, Available: 7}), restoresCleanly(),
		)},
		{name: "a cancelled order leaves only once its cancellation is done", cfg: hour, steps: with(confirmedFive,
			ok(ackCmd(ackBooked(1))), ok(cancelOrder("web", "r1")),
			tick(2*time.Hour), orderIs("web", "o1", orderWant{seq: 1, outcome: store.OutcomeBooked, cancelled: true}),
			outboxIs(0, cancelEntry(2, 1)),
			ok(ackCmd(ackDone(2))), tick(0), noOrder("web", "o1"), outboxIs(0),
			ok(ackCmd(ackDone(2))).rowsAre(rejected("acks[0].seq")),
			figure("web", "rose", "ams", fig{OnHand: 10, Available: 10}), statusIs(0, 0, 0, 3, 0), restoresCleanly(),
		)},
	})
}

func TestScenarioOutboxReads(t *testing.T) {
	three := with(reserveWorld,
		ok(reserve("web", "r1", 0, lineAt("rose", 1, "ams"))), ok(confirm("web", "r1", "o1")),
		ok(reserve("web", "r2", 0, lineAt("rose", 2, "fra"), lineAt("tulip", 1, "ams"))), ok(confirm("web", "r2", "o2")).after(time.Second),
		ok(reserve("rep", "r3", 0, lineAt("rose", 3, "ber"))), ok(confirm("rep", "r3", "o1")).after(time.Second),
	)
	runAll(t, []scenario{
		{name: "the outbox pages pending entries in seq order", steps: with(three,
			outboxIs(0, orderEntry(1), orderEntry(2), orderEntry(3)), outboxIs(2, orderEntry(3)), outboxIs(3),
			checkStep("pages", func(t *testing.T, m *store.Machine, where string) {
				for _, c := range []struct {
					after uint64
					limit int
					want  []uint64
				}{{0, 2, []uint64{1, 2}}, {1, 1, []uint64{2}}, {0, 0, []uint64{1, 2, 3}}, {^uint64(0), 5, nil}, {^uint64(0) - 1, 5, nil}} {
					var got []uint64
					for _, e := range m.Outbox(c.after, c.limit) {
						got = append(got, e.Seq)
					}
					if !reflect.DeepEqual(got, c.want) {
						t.Errorf("%s: input Outbox(%d, %d): got seqs %v, want %v", where, c.after, c.limit, got, c.want)
					}
				}
			}),
			outboxSurvivesRestore([2]string{"web", "o1"}, [2]string{"rep", "o1"}),
			ok(ackCmd(ackBooked(2))), outboxIs(0, orderEntry(1), orderEntry(3)),
			ok(ackCmd(ackBooked(1))), outboxIs(0, orderEntry(3)),
			statusIs(1, 3, 2*time.Second, 4, 0),
			ok(reserve("web", "r4", 0, lineAt("rose", 1, "ams"))), ok(confirm("web", "r4", "o4")), ok(cancelOrder("web", "r4")),
			ok(ackCmd(ackRefused(3, "no"))),
			outboxSurvivesRestore([2]string{"web", "o1"}, [2]string{"web", "o2"}, [2]string{"rep", "o1"}, [2]string{"web", "o4"}),
			outboxIs(0, orderEntry(4), cancelEntry(5, 4)),
		)},
		{name: "orders are found by channel and order_ref with their lines", steps: with(three,
			orderIs("web", "o1", orderWant{seq: 1}), orderIs("rep", "o1", orderWant{seq: 3}), noOrder("rep", "o2"), noOrder("nope", "o1"),
			checkStep("lines and copies", func(t *testing.T, m *store.Machine, where string) {
				e, err := m.Order("web", "o2")
				want := []store.OutboxLine{{Item: "rose", Location: "fra", Quantity: 2}, {Item: "tulip", Location: "ams", Quantity: 1}}
				if err != nil || !reflect.DeepEqual(e.Lines, want) || e.ReservationID != "r2" || e.CreatedAt != store.Timestamp(t0+int64(time.Second)) {
					t.Fatalf("%s: got %+v, %v, want lines %+v of r2 created at t0+1s", where, e, err, want)
				}
				e.Lines[0].Quantity = 99
				m.Outbox(0, 10)[1].Lines[0].Quantity = 99
				if again, _ := m.Order("web", "o2"); again.Lines[0].Quantity != 2 {
					t.Errorf("%s: got quantity %d after changing copies, want 2", where, again.Lines[0].Quantity)
				}
			}),
		)},
		{name: "an order_ref confirmed twice in a channel finds the later order", steps: with(three,
			ok(reserve("web", "r4", 0, lineAt("rose", 1, "ams"))), ok(confirm("web", "r4", "o1")),
			orderIs("web", "o1", orderWant{seq: 4}),
		)},
		{name: "an empty outbox", steps: []step{
			outboxIs(0), statusIs(0, 0, 0, 1, 0), noOrder("web", "o1"),
		}},
	})
}

// TestRestoreRefusesBrokenOutbox edits one order record of a valid stream at
// a time; each edit breaks an outbox invariant restore must catch.
func TestRestoreRefusesBrokenOutbox(t *testing.T) {
	m := run(t, store.Config{}, with(confirmedFive,
		ok(reserve("web", "r2", 0, lineAt("rose", 2, "ams"))), ok(confirm("web", "r2", "o2")),
		ok(ackCmd(ackBooked(1), ackRefused(2, "no"))), ok(cancelOrder("web", "r1")),
	))
	recs := mustRecords(t, m)
	for _, c := range []struct {
		name string
		seq  uint64
		edit func(o *logv1.OrderRecord)
	}{
		{"a refused order still committed", 2, func(o *logv1.OrderRecord) { o.Outcome = uint32(store.OutcomeBooked) }},
		{"a booked order with a done outcome", 1, func(o *logv1.OrderRecord) { o.Outcome = uint32(store.OutcomeDone) }},
		{"a cancellation booked", 3, func(o *logv1.OrderRecord) { o.Outcome = uint32(store.OutcomeBooked) }},
		{"an unknown kind", 3, func(o *logv1.OrderRecord) { o.Kind = 3 }},
		{"a cancellation of a live order", 1, func(o *logv1.OrderRecord) { o.Cancelled = false }},
		{"a cancellation of itself", 3, func(o *logv1.OrderRecord) { o.CancelsSeq = 3 }},
		{"a cancellation naming a refused order not cancelled", 3, func(o *logv1.OrderRecord) { o.CancelsSeq = 2 }},
		{"a cancellation with other lines", 3, func(o *logv1.OrderRecord) { o.Lines[0].QuantityBaseUnits = 4 }},
		{"an absorbed order above the mark", 1, func(o *logv1.OrderRecord) { o.Absorbed = true }},
		{"a reason without an outcome", 3, func(o *logv1.OrderRecord) { o.OutcomeReason = "why" }},
		{"an entry from the future", 3, func(o *logv1.OrderRecord) { o.CreatedUnixNanos = t0 + int64(time.Hour) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			edited := editOrderRecord(t, recs, c.seq, c.edit)
			if err := store.New(store.Config{}).Restore(sliceSource(edited)); !errors.Is(err, store.ErrCorruptSnapshot) {
				t.Errorf("input order %d edited (%s): got %v, want %v", c.seq, c.name, err, store.ErrCorruptSnapshot)
			}
		})
	}
	if err := store.New(store.Config{}).Restore(sliceSource(recs)); err != nil {
		t.Fatalf("input the unedited stream: got %v, want ok", err)
	}
}

// editOrderRecord returns recs with the order record of seq edited.
func editOrderRecord(t *testing.T, recs [][]byte, seq uint64, edit func(o *logv1.OrderRecord)) [][]byte {
	t.Helper()
	out := append([][]byte(nil), recs...)
	for i, r := range recs {
		var rec logv1.SnapshotRecord
		if err := unmarshalRecord(r, &rec); err != nil {
			t.Fatal(err)
		}
		if o := rec.GetOrder(); o != nil && o.GetSeq() == seq {
			edit(o)
			out[i] = marshalRecord(t, &rec)
			return out
		}
	}
	t.Fatalf("input records: got no order %d, want one", seq)
	return nil
}

// marshalRecord encodes a snapshot record the way Snapshot writes them.
func marshalRecord(t *testing.T, rec *logv1.SnapshotRecord) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
