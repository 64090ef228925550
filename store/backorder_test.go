package store_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// Builders and checks for backorders and incoming supply. ETAs are given as
// offsets from t0.

const day = 24 * time.Hour

// incLine is one ERP incoming (purchase-order) line.
func incLine(po, item, location string, qty, received int64, eta time.Duration, version uint64) *logv1.IncomingLine {
	return &logv1.IncomingLine{PoLineId: po, Item: item, Location: location, QuantityBaseUnits: qty,
		ReceivedBaseUnits: received, EtaUnixNanos: t0 + int64(eta), Version: version}
}

func setIncomingCmd(lines ...*logv1.IncomingLine) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_SetIncoming{SetIncoming: &logv1.SetIncoming{Lines: lines}}}
}

// boLine is a reserve line that allows a backorder.
func boLine(sku string, qty int64) *logv1.ReserveLine {
	return &logv1.ReserveLine{Sku: sku, QuantitySkuUnits: qty, AllowBackorder: true}
}

func boLineAt(sku string, qty int64, location string) *logv1.ReserveLine {
	return &logv1.ReserveLine{Sku: sku, QuantitySkuUnits: qty, Location: location, AllowBackorder: true}
}

// boWant is one expected allocation: on-hand when po is "", else a
// backorder promised at t0+eta.
type boWant struct {
	line int
	loc  string
	qty  int64
	po   string
	eta  time.Duration
}

func onHandAt(line int, loc string, qty int64) boWant { return boWant{line: line, loc: loc, qty: qty} }

func waitingOn(line int, loc string, qty int64, po string, eta time.Duration) boWant {
	return boWant{line, loc, qty, po, eta}
}

// wantLines turns expected allocations into the lines' allocations and
// promised dates.
func wantLines(n int, allocs []boWant) ([][]store.Allocation, []store.Timestamp) {
	out := make([][]store.Allocation, n)
	promised := make([]store.Timestamp, n)
	for _, a := range allocs {
		if a.line >= n {
			continue
		}
		w := store.Allocation{Location: store.LocationID(a.loc), Quantity: store.Units(a.qty), POLine: a.po}
		if a.po != "" {
			w.PromisedAt = store.Timestamp(t0 + int64(a.eta))
			promised[a.line] = max(promised[a.line], w.PromisedAt)
		}
		out[a.line] = append(out[a.line], w)
	}
	return out, promised
}

func sameAllocations(t *testing.T, where string, r store.Reservation, allocs []boWant) {
	t.Helper()
	want, promised := wantLines(len(r.Lines), allocs)
	for _, a := range allocs {
		if a.line >= len(r.Lines) {
			t.Errorf("%s: got %d lines, want an allocation on line %d", where, len(r.Lines), a.line)
			return
		}
	}
	for i, l := range r.Lines {
		if !reflect.DeepEqual(l.Allocations, want[i]) {
			t.Errorf("%s: line %d: got allocations %+v, want %+v", where, i, l.Allocations, want[i])
		}
		if l.PromisedAt != promised[i] {
			t.Errorf("%s: line %d: got promised t0%+v, want t0%+v", where, i,
				time.Duration(int64(l.PromisedAt)-t0), time.Duration(int64(promised[i])-t0))
		}
	}
}

// holdIs checks a reservation as read back: its state and allocations.
func holdIs(ch, id string, state store.ReservationState, allocs ...boWant) step {
	return checkStep(fmt.Sprintf("reservation %s/%s", ch, id), func(t *testing.T, m *store.Machine, where string) {
		r, err := m.Reservation(store.ChannelID(ch), store.ReservationID(id))
		if err != nil {
			t.Fatalf("%s: got error %v, want %v with %+v", where, err, state, allocs)
		}
		if r.State != state {
			t.Errorf("%s: got state %v, want %v", where, r.State, state)
		}
		sameAllocations(t, where, r, allocs)
	})
}

// answers applies cmd and checks the reservation in its answer.
func answers(cmd *logv1.Command, state store.ReservationState, allocs ...boWant) step {
	return checkStep("answer", func(t *testing.T, m *store.Machine, where string) {
		res := m.Apply(m.AppliedIndex()+1, m.LastTime(), cmd)
		where += fmt.Sprintf(": input %v", cmd)
		if res.Err != nil || res.Reservation == nil {
			t.Fatalf("%s: got %s, want a %v reservation", where, describe(res), state)
		}
		if res.Reservation.State != state {
			t.Errorf("%s: got state %v, want %v", where, res.Reservation.State, state)
		}
		sameAllocations(t, where, *res.Reservation, allocs)
	})
}

type incWant struct {
	po    string
	loc   string
	eta   time.Duration
	avail int64
}

// incomingAvail checks the incoming buckets of channel ch's figure for sku.
func incomingAvail(ch, sku string, want ...incWant) step {
	return checkStep(fmt.Sprintf("incoming of %s/%s", ch, sku), func(t *testing.T, m *store.Machine, where string) {
		var a store.SKUAvailability
		if err := m.Availability(store.ChannelID(ch), store.SKU(sku), &a); err != nil {
			t.Fatalf("%s: got error %v, want %+v", where, err, want)
		}
		var got []incWant
		for _, in := range a.Incoming {
			got = append(got, incWant{in.POLine, string(in.Location), time.Duration(int64(in.ETA) - t0), int64(in.Available)})
		}
		if len(got) != 0 || len(want) != 0 {
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: got %+v, want %+v", where, got, want)
			}
		}
	})
}

// backorderedIs checks Machine.Incoming of item: po line ids in order with
// their received and backordered units.
func backorderedIs(item string, want ...[3]any) step {
	return checkStep("incoming lines of "+item, func(t *testing.T, m *store.Machine, where string) {
		var got [][3]any
		for _, l := range m.Incoming(store.ItemID(item)) {
			got = append(got, [3]any{l.POLine, int64(l.Received), int64(l.Backordered)})
		}
		if !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
			t.Errorf("%s: got (po, received, backordered) %v, want %v", where, got, want)
		}
	})
}

func bo(po string, received, backordered int64) [3]any { return [3]any{po, received, backordered} }

// backorderWorld: web sees [ams fra], rep sees [fra ber]; rose 5 at ams, 0
// at fra. Incoming rose: PO1 10 at ams due in 7 days, PO2 10 at fra due in
// 3 days, PO3 50 at ber (web does not see it) due tomorrow. tulip 4 at ams.
var backorderWorld = []step{
	ok(loc("ams")), ok(loc("fra")), ok(loc("ber")),
	ok(channel("web", 0, "ams", "fra")), ok(channel("rep", 0, "fra", "ber")),
	ok(setStock(row("rose", "ams", 5, 1), row("rose", "fra", 0, 1), row("tulip", "ams", 4, 1))),
	ok(setIncomingCmd(incLine("PO1", "rose", "ams", 10, 0, 7*day, 1), incLine("PO2", "rose", "fra", 10, 0, 3*day, 1),
		incLine("PO3", "rose", "ber", 50, 0, day, 1))).rowsAre(applied(1, 0), applied(1, 0), applied(1, 0)),
}

func TestScenarioBackorder(t *testing.T) {
	runAll(t, []scenario{
		{name: "the figure lists incoming at the channel's locations in ETA order", steps: with(backorderWorld,
			avail("web", "rose", 5),
			incomingAvail("web", "rose", incWant{"PO2", "fra", 3 * day, 10}, incWant{"PO1", "ams", 7 * day, 10}),
			incomingAvail("rep", "rose", incWant{"PO3", "ber", day, 50}, incWant{"PO2", "fra", 3 * day, 10}),
			incomingAvail("web", "tulip"),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 0), bo("PO3", 0, 0)),
		)},
		{name: "a backorder takes on-hand first then incoming and promises the line's ETA", steps: with(backorderWorld,
			answers(reserve("web", "r1", 0, boLine("rose", 8)), store.StateHeld,
				onHandAt(0, "ams", 5), waitingOn(0, "fra", 3, "PO2", 3*day)),
			holdIs("web", "r1", store.StateHeld, onHandAt(0, "ams", 5), waitingOn(0, "fra", 3, "PO2", 3*day)),
			// Holds on incoming do not touch reserved: fra still shows 0 reserved.
			figure("web", "rose", "ams", fig{OnHand: 5, Reserved: 5}),
			figure("web", "rose", "fra", fig{}),
			avail("web", "rose", 0),
			incomingAvail("web", "rose", incWant{"PO2", "fra", 3 * day, 7}, incWant{"PO1", "ams", 7 * day, 10}),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 3), bo("PO3", 0, 0)),
		)},
		{name: "a cart on-hand can fill is held on-hand though it allows a backorder", steps: with(backorderWorld,
			ok(reserve("web", "r1", 0, boLine("rose", 4), line("tulip", 2))).held(at(0, "ams", 4), at(1, "ams", 2)),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 0), bo("PO3", 0, 0)),
		)},
		{name: "two incoming lines are used in ETA order", steps: with(backorderWorld,
			ok(reserve("web", "r1", 0, boLine("rose", 18))),
			holdIs("web", "r1", store.StateHeld, onHandAt(0, "ams", 5),
				waitingOn(0, "fra", 10, "PO2", 3*day), waitingOn(0, "ams", 3, "PO1", 7*day)),
			incomingAvail("web", "rose", incWant{"PO1", "ams", 7 * day, 7}),
		)},
		{name: "I1 a backorder beyond incoming is refused and nothing changes", steps: with(backorderWorld,
			// 5 on hand + 10 + 10 incoming at web's locations; PO3 is at ber, which web does not see.
			fails(reserve("web", "r1", 0, boLine("rose", 26)), store.ErrInsufficientStock, "lines[0].quantity").asks(26, 25),
			noReservation("web", "r1"),
			avail("web", "rose", 5),
			incomingAvail("web", "rose", incWant{"PO2", "fra", 3 * day, 10}, incWant{"PO1", "ams", 7 * day, 10}),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 0), bo("PO3", 0, 0)),
			ok(reserve("web", "r2", 0, boLine("rose", 25))),
		)},
		{name: "I1 a line without allow_backorder never takes incoming", steps: with(backorderWorld,
			fails(reserve("web", "r1", 0, line("rose", 8)), store.ErrInsufficientStock, "lines[0].quantity").asks(8, 5),
			fails(reserve("web", "r2", 0, boLine("rose", 3), line("tulip", 5)), store.ErrInsufficientStock, "lines[1].quantity").asks(5, 4),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 0), bo("PO3", 0, 0)),
		)},
		{name: "lines without a backorder take on-hand before backorder lines of the same item", steps: with(backorderWorld,
			ok(reserve("web", "r1", 0, boLine("rose", 4), line("rose", 3), line("tulip", 1))),
			holdIs("web", "r1", store.StateHeld, onHandAt(0, "ams", 2), waitingOn(0, "fra", 2, "PO2", 3*day),
				onHandAt(1, "ams", 3), onHandAt(2, "ams", 1)),
		)},
		{name: "a pinned backorder takes on-hand and incoming at its location only", steps: with(backorderWorld,
			ok(reserve("web", "r1", 0, boLineAt("rose", 7, "ams"))),
			holdIs("web", "r1", store.StateHeld, onHandAt(0, "ams", 5), waitingOn(0, "ams", 2, "PO1", 7*day)),
			ok(reserve("web", "r2", 0, boLineAt("rose", 4, "fra"))),
			holdIs("web", "r2", store.StateHeld, waitingOn(0, "fra", 4, "PO2", 3*day)),
			fails(reserve("web", "r3", 0, boLineAt("rose", 9, "ams")), store.ErrInsufficientStock, "lines[0].quantity").asks(9, 8),
		)},
		{name: "lines of one cart share what an incoming line has left", steps: with(backorderWorld,
			ok(reserve("web", "r1", 0, boLineAt("rose", 6, "fra"), boLineAt("rose", 4, "fra"))),
			holdIs("web", "r1", store.StateHeld, waitingOn(0, "fra", 6, "PO2", 3*day), waitingOn(1, "fra", 4, "PO2", 3*day)),
			fails(reserve("web", "r2", 0, boLineAt("rose", 1, "fra")), store.ErrInsufficientStock, "lines[0].quantity").asks(1, 0),
		)},
		{name: "I1 lines of one cart cannot together take more than an incoming line has open", steps: with(backorderWorld,
			fails(reserve("web", "r1", 0, boLineAt("rose", 6, "fra"), boLineAt("rose", 5, "fra")),
				store.ErrInsufficientStock, "lines[1].quantity").asks(5, 4),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 0), bo("PO3", 0, 0)),
		)},
		{name: "pack sizes: incoming buckets and backorders count whole SKU units", steps: with(backorderWorld,
			ok(putSku("ROSE-6", "rose", 6)),
			avail("web", "ROSE-6", 0),
			incomingAvail("web", "ROSE-6", incWant{"PO2", "fra", 3 * day, 1}, incWant{"PO1", "ams", 7 * day, 1}),
			// 5 loose units at ams make no case: both cases wait, 6 units on each line.
			ok(reserve("web", "r1", 0, boLine("ROSE-6", 2))),
			holdIs("web", "r1", store.StateHeld, waitingOn(0, "fra", 6, "PO2", 3*day), waitingOn(0, "ams", 6, "PO1", 7*day)),
			incomingAvail("web", "ROSE-6"),
			incomingAvail("web", "rose", incWant{"PO2", "fra", 3 * day, 4}, incWant{"PO1", "ams", 7 * day, 4}),
			fails(reserve("web", "r2", 0, boLine("ROSE-6", 1)), store.ErrInsufficientStock, "lines[0].quantity").asks(6, 0),
			ok(reserve("web", "r3", 0, boLine("rose", 13))),
			holdIs("web", "r3", store.StateHeld, onHandAt(0, "ams", 5), waitingOn(0, "fra", 4, "PO2", 3*day), waitingOn(0, "ams", 4, "PO1", 7*day)),
		)},
		{name: "a retry answers the first hold and another allow_backorder is a conflict", steps: with(backorderWorld,
			ok(reserve("web", "r1", 0, boLine("rose", 8))),
			answers(reserve("web", "r1", 0, boLine("rose", 8)), store.StateHeld,
				onHandAt(0, "ams", 5), waitingOn(0, "fra", 3, "PO2", 3*day)),
			fails(reserve("web", "r1", 0, line("rose", 8)), store.ErrIdempotencyConflict, "lines[0].allow_backorder"),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 3), bo("PO3", 0, 0)),
		)},
	})
}

func TestScenarioBackorderReceipt(t *testing.T) {
	// r1 (older) waits for 3 of PO2, r2 for 4 of PO2.
	waiting := with(backorderWorld,
		ok(reserve("web", "r1", time.Hour, boLine("rose", 8))),
		ok(reserve("web", "r2", time.Hour, boLine("rose", 4))).after(time.Second),
		holdIs("web", "r2", store.StateHeld, waitingOn(0, "fra", 4, "PO2", 3*day)),
	)
	runAll(t, []scenario{
		{name: "I1 a receipt moves the oldest holds onto on-hand so a later buyer cannot take them", steps: with(waiting,
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 10, 5, 3*day, 2))).rowsAre(applied(2, 0)),
			holdIs("web", "r1", store.StateHeld, onHandAt(0, "ams", 5), onHandAt(0, "fra", 3)),
			holdIs("web", "r2", store.StateHeld, onHandAt(0, "fra", 2), waitingOn(0, "fra", 2, "PO2", 3*day)),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 5, 2), bo("PO3", 0, 0)),
			// The ERP's count has not caught up yet: the 5 received are promised, exposed as oversold.
			figure("web", "rose", "fra", fig{Reserved: 5, Oversold: 5}),
			fails(reserve("web", "r3", 0, lineAt("rose", 1, "fra")), store.ErrInsufficientStock, "lines[0].quantity").asks(1, 0),
			// Once the count includes the receipt, the receipt is still not for sale.
			ok(setStock(row("rose", "fra", 5, 2))),
			figure("web", "rose", "fra", fig{OnHand: 5, Reserved: 5}),
			fails(reserve("web", "r4", 0, lineAt("rose", 1, "fra")), store.ErrInsufficientStock, "lines[0].quantity").asks(1, 0),
			incomingAvail("web", "rose", incWant{"PO2", "fra", 3 * day, 3}, incWant{"PO1", "ams", 7 * day, 10}),
			// Releasing r1 frees its now on-hand units at fra.
			ok(release("web", "r1")),
			figure("web", "rose", "fra", fig{OnHand: 5, Reserved: 2, Available: 3}),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 5, 2), bo("PO3", 0, 0)),
		)},
		{name: "a partial receipt moves part and a second one merges into the on-hand allocation", steps: with(waiting,
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 10, 1, 3*day, 2))),
			holdIs("web", "r1", store.StateHeld, onHandAt(0, "ams", 5), onHandAt(0, "fra", 1), waitingOn(0, "fra", 2, "PO2", 3*day)),
			holdIs("web", "r2", store.StateHeld, waitingOn(0, "fra", 4, "PO2", 3*day)),
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 10, 3, 3*day, 3))),
			holdIs("web", "r1", store.StateHeld, onHandAt(0, "ams", 5), onHandAt(0, "fra", 3)),
			holdIs("web", "r2", store.StateHeld, waitingOn(0, "fra", 4, "PO2", 3*day)),
			figure("web", "rose", "fra", fig{Reserved: 3, Oversold: 3}),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 3, 4), bo("PO3", 0, 0)),
			// Received beyond what waits: the rest of the receipt is the ERP's to count.
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 10, 10, 3*day, 4))),
			holdIs("web", "r2", store.StateHeld, onHandAt(0, "fra", 4)),
			figure("web", "rose", "fra", fig{Reserved: 7, Oversold: 7}),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 10, 0), bo("PO3", 0, 0)),
			incomingAvail("web", "rose", incWant{"PO1", "ams", 7 * day, 10}),
		)},
		{name: "a slipped ETA changes the promised date read back and the order of the buckets", steps: with(waiting,
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 10, 0, 10*day, 2))),
			holdIs("web", "r1", store.StateHeld, onHandAt(0, "ams", 5), waitingOn(0, "fra", 3, "PO2", 10*day)),
			incomingAvail("web", "rose", incWant{"PO1", "ams", 7 * day, 10}, incWant{"PO2", "fra", 10 * day, 3}),
			// A new backorder now takes PO1 first.
			ok(reserve("web", "r3", 0, boLine("rose", 2))),
			holdIs("web", "r3", store.StateHeld, waitingOn(0, "ams", 2, "PO1", 7*day)),
		)},
		{name: "releasing a backorder hold frees the incoming for others", steps: with(waiting,
			ok(release("web", "r1")),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 4), bo("PO3", 0, 0)),
			figure("web", "rose", "ams", fig{OnHand: 5, Available: 5}),
			ok(reserve("web", "r3", 0, boLineAt("rose", 6, "fra"))),
			holdIs("web", "r3", store.StateHeld, waitingOn(0, "fra", 6, "PO2", 3*day)),
			// A receipt now skips the released hold.
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 10, 10, 3*day, 2))),
			holdIs("web", "r1", store.StateReleased, onHandAt(0, "ams", 5), waitingOn(0, "fra", 3, "PO2", 3*day)),
			holdIs("web", "r2", store.StateHeld, onHandAt(0, "fra", 4)),
			holdIs("web", "r3", store.StateHeld, onHandAt(0, "fra", 6)),
			figure("web", "rose", "fra", fig{Reserved: 10, Oversold: 10}),
		)},
		{name: "an expired backorder hold frees the incoming", steps: with(backorderWorld,
			ok(reserve("web", "r1", time.Minute, boLine("rose", 25))),
			incomingAvail("web", "rose"),
			tick(2*time.Minute),
			reservationIs("web", "r1", store.StateExpired),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 0), bo("PO3", 0, 0)),
			incomingAvail("web", "rose", incWant{"PO2", "fra", 3 * day, 10}, incWant{"PO1", "ams", 7 * day, 10}),
			figure("web", "rose", "ams", fig{OnHand: 5, Available: 5}),
		)},
		{name: "a confirmed order waits uncommitted until the receipt, then commits until absorbed", steps: with(waiting,
			ok(confirm("web", "r1", "o-1")).order("o-1", 1),
			holdIs("web", "r1", store.StateConfirmed, onHandAt(0, "ams", 5), waitingOn(0, "fra", 3, "PO2", 3*day)),
			figure("web", "rose", "ams", fig{OnHand: 5, Committed: 5}),
			figure("web", "rose", "fra", fig{}),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 7), bo("PO3", 0, 0)),
			// A receipt serves waiting orders first, then holds oldest first.
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 10, 4, 3*day, 2))),
			figure("web", "rose", "fra", fig{Reserved: 1, Committed: 3, Oversold: 4}),
			holdIs("web", "r2", store.StateHeld, onHandAt(0, "fra", 1), waitingOn(0, "fra", 3, "PO2", 3*day)),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 4, 3), bo("PO3", 0, 0)),
			ok(setStockMark(1, row("rose", "fra", 1, 2))),
			figure("web", "rose", "fra", fig{OnHand: 1, Reserved: 1}),
			figure("web", "rose", "ams", fig{OnHand: 5, Available: 5}),
		)},
		{name: "cancelling an order gives its waiting units back to the incoming line", steps: with(waiting,
			ok(confirm("web", "r1", "o-1")),
			ok(&logv1.Command{Kind: &logv1.Command_CancelOrder{CancelOrder: &logv1.CancelOrder{Channel: "web", ReservationId: "r1"}}}),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 4), bo("PO3", 0, 0)),
			figure("web", "rose", "ams", fig{OnHand: 5, Available: 5}),
			// The receipt now goes to r2 alone.
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 10, 10, 3*day, 2))),
			holdIs("web", "r2", store.StateHeld, onHandAt(0, "fra", 4)),
			figure("web", "rose", "fra", fig{Reserved: 4, Oversold: 4}),
		)},
		{name: "a partial release gives back backorder units first, and a receipt moves only what still waits", steps: with(waiting,
			ok(&logv1.Command{Kind: &logv1.Command_Release{Release: &logv1.Release{Channel: "web", ReservationId: "r1",
				ReleaseId: "rel-1", Lines: []*logv1.ReleaseLine{{Line: 0, QuantitySkuUnits: 2}}}}}),
			holdIs("web", "r1", store.StateHeld, onHandAt(0, "ams", 5), waitingOn(0, "fra", 1, "PO2", 3*day)),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 5), bo("PO3", 0, 0)),
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 10, 2, 3*day, 2))),
			holdIs("web", "r1", store.StateHeld, onHandAt(0, "ams", 5), onHandAt(0, "fra", 1)),
			holdIs("web", "r2", store.StateHeld, onHandAt(0, "fra", 1), waitingOn(0, "fra", 3, "PO2", 3*day)),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 2, 3), bo("PO3", 0, 0)),
		)},
		{name: "an order absorbed before its receipt stops waiting without being committed", steps: with(waiting,
			ok(confirm("web", "r1", "o-1")),
			ok(setStockMark(1, row("rose", "ams", 0, 2))),
			figure("web", "rose", "ams", fig{}),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 7), bo("PO3", 0, 0)),
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 10, 3, 3*day, 2))),
			figure("web", "rose", "fra", fig{}),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 3, 4), bo("PO3", 0, 0)),
			holdIs("web", "r2", store.StateHeld, waitingOn(0, "fra", 4, "PO2", 3*day)),
		)},
	})
}

func TestScenarioSetIncoming(t *testing.T) {
	waiting := with(backorderWorld, ok(reserve("web", "r1", 0, boLineAt("rose", 3, "fra"))))
	runAll(t, []scenario{
		{name: "stale and replayed versions are ignored", steps: with(backorderWorld,
			ok(setIncomingCmd(incLine("PO1", "rose", "ams", 12, 0, 7*day, 3))).rowsAre(applied(3, 0)),
			ok(setIncomingCmd(
				incLine("PO1", "rose", "ams", 99, 0, 7*day, 2),
				incLine("PO1", "rose", "ams", 12, 0, 7*day, 3),
				incLine("PO2", "rose", "fra", 1, 0, day, 1),
			)).rowsAre(stale("lines[0].version", 3, 0), stale("lines[1].version", 3, 0), rejected("lines[2].version")),
			incomingAvail("web", "rose", incWant{"PO2", "fra", 3 * day, 10}, incWant{"PO1", "ams", 7 * day, 12}),
		)},
		{name: "bad rows are rejected each on its own", steps: with(backorderWorld,
			ok(setIncomingCmd(
				incLine("", "rose", "ams", 1, 0, day, 1),
				incLine("PO9", "", "ams", 1, 0, day, 1),
				incLine("PO9", "rose", "zrh", 1, 0, day, 1),
				incLine("PO9", "rose", "ams", -1, 0, day, 1),
				incLine("PO9", "rose", "ams", 1, 2, day, 1),
				incLine("PO9", "rose", "ams", 1, -1, day, 1),
				incLine("PO9", "rose", "ams", 1, 0, day, 0),
				&logv1.IncomingLine{PoLineId: "PO9", Item: "rose", Location: "ams", QuantityBaseUnits: 1, EtaUnixNanos: -1, Version: 1},
				incLine("PO9", "rose", "ams", 4, 0, day, 1),
			)).rowsAre(rejected("lines[0].po_line_id"), rejected("lines[1].item"), rejected("lines[2].location"),
				rejected("lines[3].quantity_base_units"), rejected("lines[4].received_base_units"),
				rejected("lines[5].received_base_units"), rejected("lines[6].version"), rejected("lines[7].eta_unix_nanos"),
				applied(1, 0)),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 0), bo("PO3", 0, 0), bo("PO9", 0, 0)),
		)},
		{name: "an empty batch is invalid", steps: with(backorderWorld,
			fails(setIncomingCmd(), store.ErrInvalid, "lines"),
		)},
		{name: "quantity below what backorders hold is rejected", steps: with(waiting,
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 2, 0, 3*day, 2))).rowsAre(rejected("lines[0].quantity_base_units")),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 0, 3), bo("PO3", 0, 0)),
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 3, 0, 3*day, 2))).rowsAre(applied(2, 0)),
			incomingAvail("web", "rose", incWant{"PO1", "ams", 7 * day, 10}),
			// Received together with a lower quantity: what was received no longer waits.
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 2, 2, 3*day, 3))).rowsAre(rejected("lines[0].quantity_base_units")),
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 3, 2, 3*day, 3))).rowsAre(applied(3, 0)),
			holdIs("web", "r1", store.StateHeld, onHandAt(0, "fra", 2), waitingOn(0, "fra", 1, "PO2", 3*day)),
		)},
		{name: "a line backorders wait on cannot move to another item or location", steps: with(waiting,
			ok(setIncomingCmd(incLine("PO2", "tulip", "fra", 10, 0, 3*day, 2), incLine("PO2", "rose", "ams", 10, 0, 3*day, 2))).
				rowsAre(rejected("lines[0].item"), rejected("lines[1].location")),
			ok(release("web", "r1")),
			ok(setIncomingCmd(incLine("PO2", "tulip", "ams", 10, 0, 3*day, 2))).rowsAre(applied(2, 0)),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO3", 0, 0)),
			backorderedIs("tulip", bo("PO2", 0, 0)),
			incomingAvail("web", "tulip", incWant{"PO2", "ams", 3 * day, 10}),
		)},
		{name: "a line with nothing left is not listed for backorders", steps: with(backorderWorld,
			ok(setIncomingCmd(incLine("PO2", "rose", "fra", 10, 10, 3*day, 2))),
			incomingAvail("web", "rose", incWant{"PO1", "ams", 7 * day, 10}),
			backorderedIs("rose", bo("PO1", 0, 0), bo("PO2", 10, 0), bo("PO3", 0, 0)),
		)},
	})
}

// TestBackorderListsAllItemsByPOLine: Incoming("") lists every item's lines
// sorted by po line id.
func TestBackorderListsAllItemsByPOLine(t *testing.T) {
	m := run(t, store.Config{}, with(backorderWorld,
		ok(setIncomingCmd(incLine("PO0", "tulip", "fra", 4, 1, day, 1))),
		ok(reserve("web", "r1", 0, boLineAt("rose", 2, "ams"))),
	))
	var got []string
	for _, l := range m.Incoming("") {
		got = append(got, fmt.Sprintf("%s %s@%s q%d r%d b%d v%d", l.POLine, l.Item, l.Location, l.Quantity, l.Received, l.Backordered, l.Version))
	}
	want := []string{"PO0 tulip@fra q4 r1 b0 v1", "PO1 rose@ams q10 r0 b0 v1", "PO2 rose@fra q10 r0 b0 v1", "PO3 rose@ber q50 r0 b0 v1"}
	// r1 took ams on-hand only (5 there): nothing backordered.
	if !reflect.DeepEqual(got, want) {
		t.Errorf("input Incoming(\"\"): got %q, want %q", got, want)
	}
}

// TestBackorderAvailabilityReusesIncoming: the common read allocates nothing
// once dst has room.
func TestBackorderAvailabilityReusesIncoming(t *testing.T) {
	m := run(t, store.Config{}, backorderWorld)
	var a store.SKUAvailability
	if err := m.Availability("web", "rose", &a); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := m.Availability("web", "rose", &a); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 || len(a.Incoming) != 2 {
		t.Errorf("input Availability(web, rose) with incoming: got %v allocs and %d buckets, want 0 and 2", allocs, len(a.Incoming))
	}
}

// TestBackorderAnswerSurvivesEncoding: a result sent from leader to follower
// keeps the po line and promised date of each allocation.
func TestBackorderAnswerSurvivesEncoding(t *testing.T) {
	m := run(t, store.Config{}, backorderWorld)
	res := m.Apply(m.AppliedIndex()+1, m.LastTime(), reserve("web", "r1", 0, boLine("rose", 8)))
	if res.Err != nil {
		t.Fatalf("input reserve 8 with backorder: got %v, want ok", res.Err)
	}
	back := store.DecodeResult(store.EncodeResult(res))
	if !reflect.DeepEqual(back, res) {
		t.Errorf("input %+v encoded and decoded: got %+v, want it unchanged", *res.Reservation, *back.Reservation)
	}
	if got := back.Reservation.Lines[0].PromisedAt; got != store.Timestamp(t0+int64(3*day)) {
		t.Errorf("input reserve 8 with backorder: got promised t0%+v, want t0+72h", time.Duration(int64(got)-t0))
	}
}

// boGen writes a random log over a small world exercising backorders:
// incoming rows that add, raise, receive (partly) and slip lines, backorder
// and plain reserves, confirms, releases, expiries, counts with absorbed
// marks.
type boGen struct {
	r     *rand.Rand
	clock int64
	ver   map[string]uint64
	recv  map[string]int64
	qty   map[string]int64
	mark  uint64
}

func (g *boGen) command() *logv1.Command {
	items := []string{"a", "b"}
	locs := []string{"l0", "l1", "l2"}
	pick := func(s []string) string { return s[g.r.IntN(len(s))] }
	switch p := g.r.IntN(100); {
	case p < 35:
		var lines []*logv1.ReserveLine
		for range 1 + g.r.IntN(2) {
			l := line(pick(items), 1+int64(g.r.IntN(8)))
			l.AllowBackorder = g.r.IntN(3) > 0
			if g.r.IntN(4) == 0 {
				l.Location = pick(locs)
			}
			lines = append(lines, l)
		}
		ttls := []time.Duration{0, 5 * time.Second, time.Minute}
		return reserve(pick([]string{"c0", "c1"}), "r"+strconv.Itoa(g.r.IntN(60)), ttls[g.r.IntN(len(ttls))], lines...)
	case p < 55:
		var rows []*logv1.IncomingLine
		for range 1 + g.r.IntN(2) {
			po := "p" + strconv.Itoa(g.r.IntN(6))
			item, loc := "a", "l"+strconv.Itoa(g.r.IntN(2))
			if po >= "p3" {
				item = "b"
			}
			if g.r.IntN(10) > 0 {
				g.ver[po]++
			}
			if g.qty[po] == 0 || g.r.IntN(4) == 0 {
				g.qty[po] = int64(g.r.IntN(30))
			}
			if g.r.IntN(2) == 0 {
				g.recv[po] = min(g.qty[po], g.recv[po]+int64(g.r.IntN(6)))
			}
			g.recv[po] = min(g.recv[po], g.qty[po])
			rows = append(rows, incLine(po, item, loc, g.qty[po], g.recv[po], time.Duration(g.r.IntN(5))*day, g.ver[po]))
		}
		return setIncomingCmd(rows...)
	case p < 67:
		return confirm(pick([]string{"c0", "c1"}), "r"+strconv.Itoa(g.r.IntN(60)), "o")
	case p < 77:
		return release(pick([]string{"c0", "c1"}), "r"+strconv.Itoa(g.r.IntN(60)))
	case p < 90:
		g.mark += uint64(g.r.IntN(3))
		return setStockMark(g.mark, row(pick(items), pick(locs), int64(g.r.IntN(20)), uint64(1+g.r.IntN(30))))
	default:
		return tickCmd()
	}
}

func backorderLog(seed uint64, n int) []*logv1.Entry {
	g := &boGen{r: rand.New(rand.NewPCG(seed, 0xb0)), clock: t0, ver: map[string]uint64{}, recv: map[string]int64{}, qty: map[string]int64{}}
	log := []*logv1.Entry{entry(t0, loc("l0"), loc("l1"), loc("l2"), channel("c0", 0, "l0", "l1"), channel("c1", 1, "l1", "l2", "l0"),
		setStock(row("a", "l0", 5, 1), row("a", "l1", 5, 1), row("b", "l2", 5, 1)))}
	for range n {
		g.clock += int64(g.r.IntN(4000)) * int64(time.Millisecond)
		e := entry(g.clock)
		for range 1 + g.r.IntN(4) {
			e.Commands = append(e.Commands, g.command())
		}
		log = append(log, e)
	}
	return log
}

// TestI4BackorderLogIsDeterministicAndRestores: two machines fed one log with
// backorders and receipts end byte-equal; a snapshot at any cut restores
// (its invariants hold: backordered equals what waits) and, with the tail,
// equals the straight run in results and records.
func TestI4BackorderLogIsDeterministicAndRestores(t *testing.T) {
	cfg := store.Config{RetryWindowNanos: int64(2 * time.Minute), MaxRecords: 200}
	log := backorderLog(3, 1500)
	a, b := store.New(cfg), store.New(cfg)
	want := applyLog(a, log, 0)
	applyLog(b, log, 0)
	sameRecords(t, "backorder log", a, b)
	assertBackordersExercised(t, log, want, a)
	for _, cut := range []int{1, len(log) / 5, len(log) / 2, len(log) - 7, len(log)} {
		prefix := store.New(cfg)
		applyLog(prefix, log[:cut], 0)
		tail, err := restored(prefix, cfg)
		if err != nil {
			t.Fatalf("input backorder log snapshot at entry %d: got restore error %v, want ok", cut, err)
		}
		if got, wantInc := tail.Incoming(""), prefix.Incoming(""); !reflect.DeepEqual(got, wantInc) {
			t.Fatalf("input snapshot at %d: got incoming %+v, want %+v", cut, got, wantInc)
		}
		got := applyLog(tail, log, cut)
		for i := range got {
			if !reflect.DeepEqual(got[i], want[cut+i]) {
				t.Fatalf("input backorder log snapshot at %d, entry %d (I4): got %+v, want %+v", cut, cut+i, got[i], want[cut+i])
			}
		}
		sameRecords(t, fmt.Sprintf("backorder log snapshot at %d plus tail", cut), tail, a)
	}
}

// assertBackordersExercised guards the generator: the log must hold
// backorders, receipts that move them, and both confirms and releases of them.
func assertBackordersExercised(t *testing.T, log []*logv1.Entry, results [][]store.Result, m *store.Machine) {
	t.Helper()
	seen := map[string]int{}
	for i, e := range log {
		for j, c := range e.GetCommands() {
			r := results[i][j]
			if res := r.Reservation; res != nil {
				for _, l := range res.Lines {
					for _, a := range l.Allocations {
						if a.POLine != "" {
							seen["backorder "+res.State.String()]++
						}
					}
				}
			}
			if c.GetSetIncoming() != nil {
				for _, row := range r.Rows {
					seen[fmt.Sprintf("row status %d", row.Status)]++
				}
			}
		}
	}
	for _, in := range m.Incoming("") {
		if in.Received > 0 {
			seen["received"]++
		}
	}
	for _, k := range []string{"backorder held", "backorder confirmed", "backorder released", "row status 1", "row status 2", "row status 3", "received"} {
		if seen[k] == 0 {
			t.Errorf("input backorder log: got outcomes %v, want at least one %q", seen, k)
		}
	}
}

// TestI4RestoreChecksBackorderedAgainstWaiters: a stream whose incoming line
// claims other backordered units than its holds and orders wait for is
// corrupt, and so is a backorder naming a line that is not in the stream.
func TestI4RestoreChecksBackorderedAgainstWaiters(t *testing.T) {
	m := run(t, store.Config{}, with(backorderWorld,
		ok(reserve("web", "r1", 0, boLine("rose", 8))),
		ok(reserve("web", "r2", 0, boLineAt("rose", 2, "ams"))),
		ok(confirm("web", "r2", "o-1")),
		ok(reserve("web", "r3", 0, boLineAt("rose", 4, "ams"))),
		ok(confirm("web", "r3", "o-2")),
	))
	recs := mustRecords(t, m)
	if back, err := restored(m, store.Config{}); err != nil || digest(back) != digest(m) {
		t.Fatalf("input intact stream: got %v, want it to restore to digest %s", err, digest(m))
	}
	edit := func(f func(*logv1.SnapshotRecord) bool) ([][]byte, bool) {
		out := make([][]byte, 0, len(recs))
		hit := false
		for _, b := range recs {
			var rec logv1.SnapshotRecord
			if err := proto.Unmarshal(b, &rec); err != nil {
				t.Fatal(err)
			}
			if f(&rec) {
				hit = true
				if rec.GetKind() == nil {
					continue // dropped
				}
				b2, err := proto.MarshalOptions{Deterministic: true}.Marshal(&rec)
				if err != nil {
					t.Fatal(err)
				}
				b = b2
			}
			out = append(out, b)
		}
		return out, hit
	}
	for name, f := range map[string]func(*logv1.SnapshotRecord) bool{
		"a line claiming one more backordered unit": func(r *logv1.SnapshotRecord) bool {
			if in := r.GetIncoming(); in != nil && in.GetLine().GetPoLineId() == "PO2" {
				in.BackorderedBaseUnits++
				return true
			}
			return false
		},
		"a line without the units a waiting order holds": func(r *logv1.SnapshotRecord) bool {
			if in := r.GetIncoming(); in != nil && in.GetLine().GetPoLineId() == "PO1" {
				in.BackorderedBaseUnits = 0
				return true
			}
			return false
		},
		"a backorder naming a missing line": func(r *logv1.SnapshotRecord) bool {
			if in := r.GetIncoming(); in != nil && in.GetLine().GetPoLineId() == "PO2" {
				r.Kind = nil
				return true
			}
			return false
		},
		"a waiting order line counted as committed": func(r *logv1.SnapshotRecord) bool {
			if o := r.GetOrder(); o != nil && o.GetSeq() == 2 {
				o.Lines[len(o.Lines)-1].PoLineId = ""
				return true
			}
			return false
		},
		"a line whose backordered exceeds what is open": func(r *logv1.SnapshotRecord) bool {
			if in := r.GetIncoming(); in != nil && in.GetLine().GetPoLineId() == "PO2" {
				in.Line.ReceivedBaseUnits = 9
				return true
			}
			return false
		},
	} {
		t.Run(name, func(t *testing.T) {
			stream, hit := edit(f)
			if !hit {
				t.Fatalf("input %s: the edit matched no record", name)
			}
			err := store.New(store.Config{}).Restore(sliceSource(stream))
			if !errors.Is(err, store.ErrCorruptSnapshot) {
				t.Errorf("input %s: got %v, want %v", name, err, store.ErrCorruptSnapshot)
			}
		})
	}
}

// TestI5BackorderReadsDuringApply reads figures, incoming lines and
// reservations (promised dates come from the lines) on other goroutines while
// a backorder log applies; run it with -race. Every incoming line a reader
// sees keeps 0 <= backordered <= quantity - received (I1 for backorders).
func TestI5BackorderReadsDuringApply(t *testing.T) {
	log := backorderLog(9, 1500)
	m := store.New(store.Config{RetryWindowNanos: int64(2 * time.Minute), MaxRecords: 200})
	m.ApplyEntry(1, log[0])
	done := make(chan struct{})
	errs := make(chan error, 2)
	for r := range 2 {
		go func() {
			var a store.SKUAvailability
			for n := 0; ; n++ {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				ch := store.ChannelID([]string{"c0", "c1"}[n%2])
				if err := m.Availability(ch, store.SKU([]string{"a", "b"}[n/2%2]), &a); err != nil {
					errs <- fmt.Errorf("reader %d: availability: got %v, want ok", r, err)
					return
				}
				for _, in := range a.Incoming {
					if in.Available <= 0 {
						errs <- fmt.Errorf("reader %d: got incoming bucket %+v, want only positive ones", r, in)
						return
					}
				}
				for _, l := range m.Incoming("") {
					if l.Backordered < 0 || l.Backordered > l.Quantity-l.Received {
						errs <- fmt.Errorf("reader %d (I1): got incoming line %+v, want 0 <= backordered <= quantity - received", r, l)
						return
					}
				}
				if res, err := m.Reservation(ch, store.ReservationID("r"+strconv.Itoa(n%60))); err == nil {
					for _, l := range res.Lines {
						for _, al := range l.Allocations {
							if al.POLine == "" && al.PromisedAt != 0 {
								errs <- fmt.Errorf("reader %d: got allocation %+v, want a promised date only on a backorder", r, al)
								return
							}
						}
					}
				}
			}
		}()
	}
	for i := 1; i < len(log); i++ {
		m.ApplyEntry(store.Revision(i+1), log[i])
	}
	close(done)
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
