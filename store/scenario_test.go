package store_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// Scenario tables in the TigerBeetle style: each step applies one command as
// its own log entry at the leader clock and states the outcome, or moves the
// clock (tick), or checks what a reader sees. Steps run in order on one fresh
// machine; the clock starts at t0 and only tick or after moves it.

type step struct {
	// cmd is applied as one entry; nil makes the step a check.
	cmd *logv1.Command
	// laterBy moves the leader clock forward before the step.
	laterBy time.Duration
	// stampOffset stamps the entry at clock+stampOffset without moving the
	// clock (a slower leader); stampAbs, when set, stamps it absolutely.
	stampOffset time.Duration
	stampAbs    *int64

	want     error // nil: the command is accepted
	field    string
	asked    *[2]store.Units // Rejection.Requested, Rejection.Available
	rows     []rowWant
	state    store.ReservationState
	allocs   []allocWant
	expires  *time.Duration // ExpiresAt - CreatedAt
	created  *time.Duration // CreatedAt - t0
	orderRef string
	orderSeq uint64
	// result, when set, checks anything else of the answer.
	result func(t *testing.T, where string, res store.Result)

	// check is a check step's assertion.
	desc  string
	check func(t *testing.T, m *store.Machine, where string)
}

type rowWant struct {
	status  store.RowStatus
	field   string // the Reason's field prefix
	version uint64
	onHand  int64
}

type allocWant struct {
	line int
	loc  string
	qty  int64
}

// fig is one location's figure for a channel, base units.
type fig struct {
	OnHand, Reserved, Committed, Buffer, Available, Oversold int64
}

type scenario struct {
	name  string
	cfg   store.Config
	steps []step
}

// ok applies cmd and expects it accepted.
func ok(cmd *logv1.Command) step { return step{cmd: cmd} }

// fails applies cmd and expects a refusal unwrapping to want that names field.
func fails(cmd *logv1.Command, want error, field string) step {
	return step{cmd: cmd, want: want, field: field}
}

// tick moves the leader clock forward by d and applies a Tick.
func tick(d time.Duration) step { return step{cmd: tickCmd(), laterBy: d} }

func (s step) after(d time.Duration) step        { s.laterBy = d; return s }
func (s step) stamped(off time.Duration) step    { s.stampOffset = off; return s }
func (s step) stampedAbs(ts int64) step          { s.stampAbs = &ts; return s }
func (s step) expiresIn(d time.Duration) step    { s.expires = &d; return s }
func (s step) createdAt(d time.Duration) step    { s.created = &d; return s }
func (s step) is(st store.ReservationState) step { s.state = st; return s }
func (s step) asks(requested, available int64) step {
	s.asked = &[2]store.Units{store.Units(requested), store.Units(available)}
	return s
}

// held expects a held reservation with exactly these allocations.
func (s step) held(allocs ...allocWant) step {
	s.state, s.allocs = store.StateHeld, allocs
	return s
}

func (s step) order(ref string, seq uint64) step {
	s.state, s.orderRef, s.orderSeq = store.StateConfirmed, ref, seq
	return s
}

// rowsAre expects the per-row answers of an ERP batch.
func (s step) rowsAre(rows ...rowWant) step { s.rows = rows; return s }

func at(line int, loc string, qty int64) allocWant { return allocWant{line, loc, qty} }

func applied(version uint64, onHand int64) rowWant {
	return rowWant{status: store.RowApplied, version: version, onHand: onHand}
}

func stale(field string, version uint64, onHand int64) rowWant {
	return rowWant{status: store.RowIgnoredStale, field: field, version: version, onHand: onHand}
}

// rejected expects a rejected row whose reason names field.
func rejected(field string) rowWant { return rowWant{status: store.RowRejected, field: field} }

func checkStep(desc string, f func(t *testing.T, m *store.Machine, where string)) step {
	return step{desc: desc, check: f}
}

// avail checks channel ch's total for sku.
func avail(ch, sku string, want int64) step {
	return checkStep(fmt.Sprintf("availability %s/%s", ch, sku), func(t *testing.T, m *store.Machine, where string) {
		var a store.SKUAvailability
		if err := m.Availability(store.ChannelID(ch), store.SKU(sku), &a); err != nil {
			t.Fatalf("%s: got error %v, want total %d", where, err, want)
		}
		if int64(a.Available) != want {
			t.Errorf("%s: got total %d (locations %+v), want %d", where, a.Available, a.Locations, want)
		}
	})
}

// figure checks one location's figure of sku for channel ch.
func figure(ch, sku, location string, want fig) step {
	return checkStep(fmt.Sprintf("figure %s/%s@%s", ch, sku, location), func(t *testing.T, m *store.Machine, where string) {
		var a store.SKUAvailability
		if err := m.Availability(store.ChannelID(ch), store.SKU(sku), &a); err != nil {
			t.Fatalf("%s: got error %v, want %+v", where, err, want)
		}
		for _, l := range a.Locations {
			if l.Location != store.LocationID(location) {
				continue
			}
			got := fig{int64(l.OnHand), int64(l.Reserved), int64(l.Committed), int64(l.Buffer), int64(l.Available), int64(l.Oversold)}
			if got != want {
				t.Errorf("%s: got %+v, want %+v", where, got, want)
			}
			if got.Available < 0 || got.Oversold < 0 {
				t.Errorf("%s (I1): got negative available or oversold %+v", where, got)
			}
			return
		}
		t.Errorf("%s: got locations %+v without %s, want %+v", where, a.Locations, location, want)
	})
}

// known checks whether the ERP ever counted sku at a location channel ch sees.
func known(ch, sku string, want bool) step {
	return checkStep(fmt.Sprintf("known %s/%s", ch, sku), func(t *testing.T, m *store.Machine, where string) {
		var a store.SKUAvailability
		if err := m.Availability(store.ChannelID(ch), store.SKU(sku), &a); err != nil {
			t.Fatalf("%s: got error %v, want known %v", where, err, want)
		}
		if a.Known != want {
			t.Errorf("%s: got known %v, want %v", where, a.Known, want)
		}
	})
}

func availErr(ch, sku string, want error) step {
	return checkStep(fmt.Sprintf("availability %s/%s", ch, sku), func(t *testing.T, m *store.Machine, where string) {
		var a store.SKUAvailability
		if err := m.Availability(store.ChannelID(ch), store.SKU(sku), &a); !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", where, err, want)
		}
	})
}

// reservationIs checks a remembered reservation's state.
func reservationIs(ch, id string, want store.ReservationState) step {
	return checkStep(fmt.Sprintf("reservation %s/%s", ch, id), func(t *testing.T, m *store.Machine, where string) {
		r, err := m.Reservation(store.ChannelID(ch), store.ReservationID(id))
		if err != nil {
			t.Fatalf("%s: got error %v, want state %v", where, err, want)
		}
		if r.State != want {
			t.Errorf("%s: got state %v, want %v", where, r.State, want)
		}
	})
}

// noReservation checks that no reservation is remembered under (ch, id).
func noReservation(ch, id string) step {
	return checkStep(fmt.Sprintf("reservation %s/%s", ch, id), func(t *testing.T, m *store.Machine, where string) {
		r, err := m.Reservation(store.ChannelID(ch), store.ReservationID(id))
		if !errors.Is(err, store.ErrUnknownReservation) {
			t.Errorf("%s: got %+v, %v, want %v", where, r, err, store.ErrUnknownReservation)
		}
	})
}

// timeIs checks the machine's log time, relative to t0.
func timeIs(d time.Duration) step {
	return checkStep("log time", func(t *testing.T, m *store.Machine, where string) {
		if got, want := m.LastTime(), store.Timestamp(t0+int64(d)); got != want {
			t.Errorf("%s: got t0%+v, want t0%+v", where, time.Duration(int64(got)-t0), d)
		}
	})
}

// deadlineIs checks the earliest live hold deadline, relative to t0.
func deadlineIs(d time.Duration) step {
	return checkStep("next deadline", func(t *testing.T, m *store.Machine, where string) {
		got, ok := m.NextDeadline()
		if want := store.Timestamp(t0 + int64(d)); !ok || got != want {
			t.Errorf("%s: got t0%+v (live %v), want t0%+v", where, time.Duration(int64(got)-t0), ok, d)
		}
	})
}

func noDeadline() step {
	return checkStep("next deadline", func(t *testing.T, m *store.Machine, where string) {
		if got, ok := m.NextDeadline(); ok {
			t.Errorf("%s: got deadline t0%+v, want none", where, time.Duration(int64(got)-t0))
		}
	})
}

func locationsAre(want ...store.Location) step {
	return checkStep("locations", func(t *testing.T, m *store.Machine, where string) {
		if got := m.Locations(); !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
			t.Errorf("%s: got %+v, want %+v", where, got, want)
		}
	})
}

func channelsAre(want ...store.Channel) step {
	return checkStep("channels", func(t *testing.T, m *store.Machine, where string) {
		if got := m.Channels(); !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
			t.Errorf("%s: got %+v, want %+v", where, got, want)
		}
	})
}

// run plays steps on a fresh machine and returns it.
func run(t *testing.T, cfg store.Config, steps []step) *store.Machine {
	t.Helper()
	m := store.New(cfg)
	clock := t0
	var index store.Revision
	for i, s := range steps {
		clock += int64(s.laterBy)
		if s.cmd == nil {
			s.check(t, m, fmt.Sprintf("step %d (%s, t0%+v)", i, s.desc, time.Duration(clock-t0)))
			continue
		}
		stamp := clock + int64(s.stampOffset)
		if s.stampAbs != nil {
			stamp = *s.stampAbs
		}
		index++
		res := m.Apply(index, store.Timestamp(stamp), s.cmd)
		where := fmt.Sprintf("step %d (t0%+v): input %v", i, time.Duration(clock-t0), s.cmd)
		s.verify(t, where, m, index, res)
	}
	return m
}

func (s step) verify(t *testing.T, where string, m *store.Machine, index store.Revision, res store.Result) {
	t.Helper()
	if res.Revision != index {
		t.Errorf("%s: got revision %d, want %d", where, res.Revision, index)
	}
	if s.want == nil && res.Err != nil {
		t.Errorf("%s: got %s, want ok", where, describe(res))
		return
	}
	if s.want != nil {
		var rej *store.Rejection
		switch {
		case !errors.Is(res.Err, s.want):
			t.Errorf("%s: got %s, want %v", where, describe(res), s.want)
			return
		case !errors.As(res.Err, &rej):
			t.Errorf("%s: got %T %v, want a *store.Rejection", where, res.Err, res.Err)
			return
		case rej.Field != s.field:
			t.Errorf("%s: got field %q (%v), want %q", where, rej.Field, res.Err, s.field)
		}
		if s.asked != nil && (rej.Requested != s.asked[0] || rej.Available != s.asked[1]) {
			t.Errorf("%s: got requested %d available %d, want %d and %d", where, rej.Requested, rej.Available, s.asked[0], s.asked[1])
		}
		if res.Reservation != nil {
			t.Errorf("%s: got reservation %+v with a refusal, want none", where, *res.Reservation)
		}
	}
	if s.rows != nil {
		s.verifyRows(t, where, res.Rows)
	}
	if s.state != 0 {
		s.verifyReservation(t, where, m, res.Reservation)
	}
	if s.result != nil {
		s.result(t, where, res)
	}
}

func (s step) verifyRows(t *testing.T, where string, got []store.RowResult) {
	t.Helper()
	if len(got) != len(s.rows) {
		t.Errorf("%s: got %d rows %+v, want %d", where, len(got), got, len(s.rows))
		return
	}
	for i, w := range s.rows {
		g := got[i]
		switch {
		case g.Status != w.status:
			t.Errorf("%s: row %d: got %+v, want status %d", where, i, g, w.status)
		case w.field != "" && !strings.HasPrefix(g.Reason, w.field+": "):
			t.Errorf("%s: row %d: got reason %q, want it to name %s", where, i, g.Reason, w.field)
		case w.status != store.RowRejected && (g.Version != w.version || int64(g.OnHand) != w.onHand):
			t.Errorf("%s: row %d: got version %d on_hand %d, want %d and %d", where, i, g.Version, g.OnHand, w.version, w.onHand)
		}
	}
}

func (s step) verifyReservation(t *testing.T, where string, m *store.Machine, r *store.Reservation) {
	t.Helper()
	if r == nil {
		t.Errorf("%s: got no reservation, want state %v", where, s.state)
		return
	}
	if r.State != s.state {
		t.Errorf("%s: got state %v, want %v", where, r.State, s.state)
	}
	if s.orderRef != "" && (r.OrderRef != s.orderRef || r.OrderSeq != s.orderSeq) {
		t.Errorf("%s: got order %q seq %d, want %q seq %d", where, r.OrderRef, r.OrderSeq, s.orderRef, s.orderSeq)
	}
	if s.expires != nil && time.Duration(r.ExpiresAt-r.CreatedAt) != *s.expires {
		t.Errorf("%s: got ttl %v, want %v", where, time.Duration(r.ExpiresAt-r.CreatedAt), *s.expires)
	}
	if s.created != nil && r.CreatedAt != store.Timestamp(t0+int64(*s.created)) {
		t.Errorf("%s: got created t0%+v, want t0%+v", where, time.Duration(int64(r.CreatedAt)-t0), *s.created)
	}
	if s.allocs == nil {
		return
	}
	want := make([][]store.Allocation, len(r.Lines))
	for _, a := range s.allocs {
		if a.line >= len(want) {
			t.Errorf("%s: got %d lines, want an allocation on line %d", where, len(r.Lines), a.line)
			return
		}
		want[a.line] = append(want[a.line], store.Allocation{Location: store.LocationID(a.loc), Quantity: store.Units(a.qty)})
	}
	for i, l := range r.Lines {
		if !reflect.DeepEqual(l.Allocations, want[i]) {
			t.Errorf("%s: line %d: got allocations %+v, want %+v", where, i, l.Allocations, want[i])
		}
	}
}

// with prefixes setup steps to a scenario's own.
func with(setup []step, steps ...step) []step {
	return append(append([]step(nil), setup...), steps...)
}

func runAll(t *testing.T, scenarios []scenario) {
	t.Helper()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { run(t, sc.cfg, sc.steps) })
	}
}

func TestScenarioPutLocation(t *testing.T) {
	runAll(t, []scenario{
		{name: "declared locations are listed by id with their names", steps: []step{
			ok(locNamed("fra", "Frankfurt")), ok(locNamed("ams", "Amsterdam")),
			locationsAre(store.Location{ID: "ams", Name: "Amsterdam"}, store.Location{ID: "fra", Name: "Frankfurt"}),
		}},
		{name: "renaming keeps the id, its counters and the channels that see it", steps: []step{
			ok(locNamed("ams", "Amsterdam")), ok(channel("web", 0, "ams")), ok(setStock(row("rose", "ams", 10, 1))),
			ok(locNamed("ams", "Amsterdam Noord")),
			locationsAre(store.Location{ID: "ams", Name: "Amsterdam Noord"}),
			channelsAre(store.Channel{ID: "web", Locations: []store.LocationID{"ams"}}),
			avail("web", "rose", 10),
		}},
		{name: "an empty id is invalid", steps: []step{
			fails(locNamed("", "nowhere"), store.ErrInvalid, "location.id"), locationsAre(),
		}},
		{name: "an id longer than MaxIDBytes is invalid", steps: []step{
			fails(loc(strings.Repeat("a", store.MaxIDBytes+1)), store.ErrInvalid, "location.id"),
			ok(locNamed(strings.Repeat("a", store.MaxIDBytes), "")),
		}},
		{name: "a control character in the name is invalid", steps: []step{
			fails(locNamed("ams", "a\x00b"), store.ErrInvalid, "location.name"), locationsAre(),
		}},
	})
}

func TestScenarioPutChannel(t *testing.T) {
	twoLocs := []step{ok(loc("ams")), ok(loc("fra"))}
	runAll(t, []scenario{
		{name: "an undeclared location is refused naming its index", steps: with(twoLocs,
			fails(channel("web", 0, "ams", "zrh"), store.ErrUnknownLocation, "channel.locations[1]"),
			channelsAre(), availErr("web", "rose", store.ErrUnknownChannel),
		)},
		{name: "a location listed twice is invalid", steps: with(twoLocs,
			fails(channel("web", 0, "ams", "fra", "ams"), store.ErrInvalid, "channel.locations[2]"), channelsAre(),
		)},
		{name: "a channel without locations is invalid", steps: with(twoLocs,
			fails(channel("web", 0), store.ErrInvalid, "channel.locations"),
		)},
		{name: "an empty channel id is invalid", steps: with(twoLocs,
			fails(channel("", 0, "ams"), store.ErrInvalid, "channel.id"),
		)},
		{name: "a negative default buffer is invalid", steps: with(twoLocs,
			fails(channel("web", -1, "ams"), store.ErrInvalid, "channel.default_buffer_base_units"),
		)},
		{name: "replacing a channel changes what it sees and in which order", steps: with(twoLocs,
			ok(channel("web", 0, "ams")), ok(setStock(row("rose", "ams", 10, 1), row("rose", "fra", 4, 1))),
			avail("web", "rose", 10),
			ok(channel("web", 0, "fra", "ams")),
			channelsAre(store.Channel{ID: "web", Locations: []store.LocationID{"fra", "ams"}}),
			avail("web", "rose", 14), figure("web", "rose", "fra", fig{OnHand: 4, Available: 4}),
			// Priority order changed: fra now fills a single-location cart first.
			ok(reserve("web", "r1", 0, line("rose", 3))).held(at(0, "fra", 3)),
		)},
		{name: "I1 the default buffer holds units back at every location", steps: with(twoLocs,
			ok(channel("web", 2, "ams", "fra")), ok(setStock(row("rose", "ams", 10, 1), row("rose", "fra", 1, 1))),
			avail("web", "rose", 8), figure("web", "rose", "fra", fig{OnHand: 1, Buffer: 2}),
			fails(reserve("web", "r1", 0, line("rose", 9)), store.ErrInsufficientStock, "lines[0].quantity").asks(9, 8),
			ok(reserve("web", "r2", 0, line("rose", 8))).held(at(0, "ams", 8)),
		)},
	})
}

func TestScenarioSetBuffer(t *testing.T) {
	world := []step{
		ok(loc("ams")), ok(loc("fra")), ok(channel("web", 0, "ams", "fra")), ok(channel("rep", 0, "ams", "fra")),
		ok(setStock(row("rose", "ams", 10, 1), row("rose", "fra", 10, 1), row("tulip", "ams", 10, 1))),
	}
	runAll(t, []scenario{
		{name: "a per item rule applies to every channel and location of that item", steps: with(world,
			ok(buffer("rose", "", "", 2)),
			avail("web", "rose", 16), avail("rep", "rose", 16), avail("web", "tulip", 10),
			figure("web", "rose", "ams", fig{OnHand: 10, Buffer: 2, Available: 8}),
		)},
		{name: "a per item and channel rule applies to that channel only", steps: with(world,
			ok(buffer("rose", "web", "", 3)), avail("web", "rose", 14), avail("rep", "rose", 20),
		)},
		{name: "a per item and location rule applies at that location only", steps: with(world,
			ok(buffer("rose", "", "ams", 4)), avail("web", "rose", 16),
			figure("web", "rose", "ams", fig{OnHand: 10, Buffer: 4, Available: 6}),
			figure("rep", "rose", "fra", fig{OnHand: 10, Available: 10}),
		)},
		{name: "the most specific rule wins and removing it uncovers the next", steps: with(world,
			ok(buffer("rose", "web", "ams", 4)), ok(buffer("rose", "web", "", 3)),
			ok(buffer("rose", "", "ams", 2)), ok(buffer("rose", "", "", 1)),
			figure("web", "rose", "ams", fig{OnHand: 10, Buffer: 4, Available: 6}),
			figure("web", "rose", "fra", fig{OnHand: 10, Buffer: 3, Available: 7}),
			figure("rep", "rose", "ams", fig{OnHand: 10, Buffer: 2, Available: 8}),
			figure("rep", "rose", "fra", fig{OnHand: 10, Buffer: 1, Available: 9}),
			avail("web", "rose", 13), avail("rep", "rose", 17),
			ok(buffer("rose", "web", "ams", 0)), figure("web", "rose", "ams", fig{OnHand: 10, Buffer: 3, Available: 7}),
			ok(buffer("rose", "web", "", 0)), figure("web", "rose", "ams", fig{OnHand: 10, Buffer: 2, Available: 8}),
			ok(buffer("rose", "", "ams", 0)), figure("web", "rose", "ams", fig{OnHand: 10, Buffer: 1, Available: 9}),
			ok(buffer("rose", "", "", 0)), avail("web", "rose", 20),
		)},
		{name: "0 removes a rule and the channel default returns", steps: with(world,
			ok(channel("web", 1, "ams", "fra")), avail("web", "rose", 18),
			ok(buffer("rose", "web", "", 5)), figure("web", "rose", "ams", fig{OnHand: 10, Buffer: 5, Available: 5}),
			ok(buffer("rose", "web", "", 0)), figure("web", "rose", "ams", fig{OnHand: 10, Buffer: 1, Available: 9}),
		)},
		{name: "removing a rule that never existed changes nothing", steps: with(world,
			ok(buffer("rose", "", "", 0)), ok(buffer("lily", "web", "ams", 0)), avail("web", "rose", 20),
		)},
		{name: "an undeclared channel is refused", steps: with(world,
			fails(buffer("rose", "nope", "", 1), store.ErrUnknownChannel, "channel"), avail("web", "rose", 20),
		)},
		{name: "an undeclared location is refused", steps: with(world,
			fails(buffer("rose", "", "zrh", 1), store.ErrUnknownLocation, "location"),
		)},
		{name: "a negative buffer is invalid", steps: with(world,
			fails(buffer("rose", "", "", -1), store.ErrInvalid, "buffer_base_units"),
		)},
		{name: "an empty item is invalid", steps: with(world,
			fails(buffer("", "", "", 1), store.ErrInvalid, "item"),
		)},
		{name: "I1 a buffer larger than the stock shows 0, never negative", steps: with(world,
			ok(buffer("rose", "", "", 50)), avail("web", "rose", 0),
			figure("web", "rose", "ams", fig{OnHand: 10, Buffer: 50}),
			fails(reserve("web", "r1", 0, line("rose", 1)), store.ErrInsufficientStock, "lines[0].quantity").asks(1, 0),
		)},
		{name: "I1 a buffer set before the first count applies once stock arrives", steps: with(world,
			ok(buffer("lily", "", "", 2)), ok(setStock(row("lily", "ams", 5, 1))), avail("web", "lily", 3),
			fails(reserve("web", "r1", 0, line("lily", 4)), store.ErrInsufficientStock, "lines[0].quantity").asks(4, 3),
		)},
	})
}
