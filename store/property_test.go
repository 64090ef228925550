package store_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// The property test drives the machine and the reference model (model_test.go)
// with the same random commands over a small universe, so ids collide often:
// retries, conflicts, expiry, pruning and absorbed marks all happen in a few
// dozen steps. After every step the machine's answers and figures must match
// the model's; at the end the log must replay to the same results and state.

var (
	propLocations = []string{"ams", "fra", "ber"}
	propChannels  = []string{"web", "rep", "mkt"} // mkt requires SKU mappings
	propItems     = []string{"rose", "tulip", "lily", "iris"}
	propIDs       = []string{"r1", "r2", "r3", "r4"}
	// anyLocation includes an undeclared one; "" leaves the choice to the machine.
	anyLocation = []string{"", "", "", "ams", "fra", "ber", "zrh"}
	anyChannel  = []string{"web", "web", "rep", "mkt", "ghost"}
	// allChannels is every channel a command may name, once each.
	allChannels = []string{"web", "rep", "mkt", "ghost"}
)

// propConfig makes pruning happen within a short run.
var propConfig = store.Config{RetryWindowNanos: int64(10 * time.Minute), MaxRecords: 6}

// logged is one applied command with its answer, for replay.
type logged struct {
	index store.Revision
	ts    store.Timestamp
	cmd   *logv1.Command
	res   store.Result
}

type propRun struct {
	m     *store.Machine
	md    *model
	log   []logged
	clock int64 // the leader clock; stamps jitter around it and ticks move it either way
}

func (p *propRun) apply(t *rapid.T, ts int64, cmd *logv1.Command) store.Result {
	index := store.Revision(len(p.log) + 1)
	res := p.m.Apply(index, store.Timestamp(ts), cmd)
	p.log = append(p.log, logged{index, store.Timestamp(ts), cmd, res})
	if res.Revision != index {
		t.Fatalf("input %v at index %d: got revision %d, want %d", cmd, index, res.Revision, index)
	}
	p.md.index = int64(index)
	p.md.begin(ts)
	return res
}

// stamp moves the leader clock on as real time passes between commands and
// stamps behind it by a jitter: concurrent proposals arrive out of order.
func (p *propRun) stamp(t *rapid.T) int64 {
	p.clock += rapid.Int64Range(0, 30).Draw(t, "elapsed_s") * int64(time.Second)
	return p.clock - rapid.Int64Range(0, 60).Draw(t, "jitter_s")*int64(time.Second)
}

// reserveAndCheck applies a Reserve and holds its answer to the model's. A
// new hold takes at most what the model says is available before it: on-hand
// at each counter (I1) and quantity - received - backordered of each incoming
// line.
func (p *propRun) reserveAndCheck(t *rapid.T, cmd *logv1.Command) {
	c := cmd.GetReserve()
	res := p.apply(t, p.stamp(t), cmd)
	// After the entry's expiry and pruning: is this a retry of a remembered hold?
	_, existed := p.md.res[rkey{c.GetChannel(), c.GetReservationId()}]
	before := map[mkey]int64{}
	free := map[string]int64{}
	if !existed {
		for _, item := range propItems {
			for _, l := range propLocations {
				before[mkey{item, l}] = p.md.avail(c.GetChannel(), item, l)
			}
		}
		for po, in := range p.md.incoming {
			free[po] = in.free()
		}
	}
	wantErr, field, r := p.md.reserve(c)
	expectAnswer(t, cmd, res.Err, wantErr, field)
	p.checkRevisionRefusal(t, cmd, res.Err)
	if wantErr != nil {
		return
	}
	if res.Reservation == nil {
		t.Fatalf("input %v: got no reservation, want %+v", cmd, r.reservation())
	}
	if want := r.reservation(); !reflect.DeepEqual(*res.Reservation, want) {
		t.Fatalf("input %v: got %+v, want %+v", cmd, *res.Reservation, want)
	}
	if existed {
		return
	}
	took := map[mkey]int64{}
	tookIncoming := map[string]int64{}
	for _, l := range res.Reservation.Lines {
		for _, a := range l.Allocations {
			if a.POLine != "" {
				tookIncoming[a.POLine] += int64(a.Quantity)
				continue
			}
			took[mkey{string(l.Item), string(a.Location)}] += int64(a.Quantity)
		}
	}
	for k, q := range took {
		if q > before[k] {
			t.Fatalf("input %v (I1): got %d held at %s@%s, want <= available %d", cmd, q, k.item, k.loc, before[k])
		}
	}
	for po, q := range tookIncoming {
		if q > free[po] {
			t.Fatalf("input %v: got %d backordered on %s, want <= quantity - received - backordered %d", cmd, q, po, free[po])
		}
	}
	if len(tookIncoming) > 0 {
		p.md.note("backorder held")
	}
}

func expectAnswer(t *rapid.T, cmd *logv1.Command, got error, wantErr error, wantField string) {
	t.Helper()
	if sentinelName(got) != sentinelName(wantErr) {
		t.Fatalf("input %v: got %v, want %v (field %q)", cmd, got, sentinelName(wantErr), wantField)
	}
	var rej *store.Rejection
	if got != nil && (!errors.As(got, &rej) || rej.Field != wantField) {
		t.Fatalf("input %v: got %v, want field %q", cmd, got, wantField)
	}
}

func expectRows(t *rapid.T, cmd *logv1.Command, got, want []store.RowResult) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("input %v: got rows %+v, want %+v", cmd, got, want)
	}
	for i := range want {
		g := got[i]
		if g.Status != want[i].Status || g.Version != want[i].Version || g.OnHand != want[i].OnHand {
			t.Fatalf("input %v: row %d: got %+v, want status %d version %d on_hand %d", cmd, i, g, want[i].Status, want[i].Version, want[i].OnHand)
		}
	}
}

func (p *propRun) actions() map[string]func(*rapid.T) {
	item := rapid.SampledFrom(propItems)
	id := rapid.SampledFrom(propIDs)
	reserveAction := func(t *rapid.T) {
		ch := rapid.SampledFrom(anyChannel).Draw(t, "channel")
		rid := id.Draw(t, "id")
		n := rapid.IntRange(1, 3).Draw(t, "lines")
		var lines []*logv1.ReserveLine
		for range n {
			l := lineAt(rapid.SampledFrom(propSKUs).Draw(t, "sku"), rapid.Int64Range(0, 8).Draw(t, "qty"),
				rapid.SampledFrom(anyLocation).Draw(t, "location"))
			l.ExpectedModRevision = p.expectedRevision(t, ch, l.Sku) // compare-and-reserve (model_catalog_test.go)
			l.AllowBackorder = rapid.IntRange(0, 5).Draw(t, "allow_backorder") == 0
			lines = append(lines, l)
		}
		ttl := rapid.SampledFrom([]time.Duration{0, time.Second, 30 * time.Second, 2 * time.Minute, 20 * time.Minute, 500 * time.Millisecond}).Draw(t, "ttl")
		p.reserveAndCheck(t, reserve(ch, rid, ttl, lines...))
	}
	actions := map[string]func(*rapid.T){
		"reserve":  reserveAction,
		"reserve2": reserveAction,
		"confirm": func(t *rapid.T) {
			cmd := confirm(rapid.SampledFrom(anyChannel).Draw(t, "channel"), id.Draw(t, "id"), rapid.SampledFrom([]string{"o1", "o2"}).Draw(t, "order_ref"))
			res := p.apply(t, p.stamp(t), cmd)
			wantErr, field, r := p.md.confirm(cmd.GetConfirm())
			expectAnswer(t, cmd, res.Err, wantErr, field)
			if r != nil && (res.Reservation == nil || !reflect.DeepEqual(*res.Reservation, r.reservation())) {
				t.Fatalf("input %v: got %+v, want %+v", cmd, res.Reservation, r.reservation())
			}
		},
		"release": func(t *rapid.T) {
			cmd := release(rapid.SampledFrom(anyChannel).Draw(t, "channel"), id.Draw(t, "id"))
			res := p.apply(t, p.stamp(t), cmd)
			wantErr, field, r := p.md.release(cmd.GetRelease())
			expectAnswer(t, cmd, res.Err, wantErr, field)
			if r != nil && (res.Reservation == nil || !reflect.DeepEqual(*res.Reservation, r.reservation())) {
				t.Fatalf("input %v: got %+v, want %+v", cmd, res.Reservation, r.reservation())
			}
		},
		"setStock": func(t *rapid.T) {
			n := rapid.IntRange(1, 3).Draw(t, "rows")
			var rows []*logv1.StockCount
			for range n {
				rows = append(rows, row(item.Draw(t, "item"), rapid.SampledFrom([]string{"ams", "fra", "ber", "zrh"}).Draw(t, "location"),
					rapid.Int64Range(-5, 30).Draw(t, "on_hand"), rapid.Uint64Range(0, 6).Draw(t, "version")))
			}
			var mark uint64
			if rapid.Bool().Draw(t, "with_mark") {
				mark = rapid.Uint64Range(0, p.md.nextSeq+1).Draw(t, "mark")
			}
			cmd := setStockMark(mark, rows...)
			res := p.apply(t, p.stamp(t), cmd)
			expectAnswer(t, cmd, res.Err, nil, "")
			expectRows(t, cmd, res.Rows, p.md.setStock(cmd.GetSetStock()))
		},
		"adjust": func(t *rapid.T) {
			n := rapid.IntRange(1, 2).Draw(t, "rows")
			var rows []*logv1.StockAdjustment
			for range n {
				var v uint64
				if rapid.Bool().Draw(t, "versioned") {
					v = rapid.Uint64Range(1, 6).Draw(t, "version")
				}
				rows = append(rows, delta(rapid.SampledFrom([]string{"d1", "d2", "d3", "d4"}).Draw(t, "delta_id"), item.Draw(t, "item"),
					rapid.SampledFrom([]string{"ams", "fra", "ber", "zrh"}).Draw(t, "location"), rapid.Int64Range(-10, 10).Draw(t, "delta"), v))
			}
			cmd := adjust(rows...)
			res := p.apply(t, p.stamp(t), cmd)
			expectAnswer(t, cmd, res.Err, nil, "")
			expectRows(t, cmd, res.Rows, p.md.adjust(cmd.GetAdjustStock()))
		},
		"buffer": func(t *rapid.T) {
			cmd := buffer(item.Draw(t, "item"), rapid.SampledFrom([]string{"", "web", "rep", "ghost"}).Draw(t, "channel"),
				rapid.SampledFrom([]string{"", "ams", "fra", "ber", "zrh"}).Draw(t, "location"), rapid.Int64Range(-1, 4).Draw(t, "units"))
			res := p.apply(t, p.stamp(t), cmd)
			wantErr, field := p.md.setBuffer(cmd.GetSetBuffer())
			expectAnswer(t, cmd, res.Err, wantErr, field)
		},
		"tick": func(t *rapid.T) {
			// A new leader may start behind: the clock moves either way.
			p.clock += rapid.Int64Range(-300, 900).Draw(t, "tick_s") * int64(time.Second)
			res := p.apply(t, p.clock, tickCmd())
			expectAnswer(t, tickCmd(), res.Err, nil, "")
		},
		"": func(t *rapid.T) { p.check(t) },
	}
	for name, f := range p.lifecycleActions() {
		actions[name] = f
	}
	for name, f := range p.catalogActions() {
		actions[name] = f
	}
	for name, f := range p.backorderActions() {
		actions[name] = f
	}
	for name, f := range p.outboxActions() {
		actions[name] = f
	}
	return actions
}

// check compares every figure and reservation of the universe with the model.
func (p *propRun) check(t *rapid.T) {
	if got, want := int64(p.m.LastTime()), p.md.now; got != want {
		t.Fatalf("log time: got %d, want %d (time = max of stamps)", got, want)
	}
	p.checkSKUFigures(t) // model_catalog_test.go: every SKU, with factors and mod revisions
	p.checkIncoming(t)   // model_backorder_test.go: incoming lines, backordered, incoming figures
	var a store.SKUAvailability
	for _, ch := range propChannels {
		for _, item := range propItems {
			if p.md.channels[ch].strict {
				continue // items are never mapped: unknown there (checkSKUFigures)
			}
			if err := p.m.Availability(store.ChannelID(ch), store.SKU(item), &a); err != nil {
				t.Fatalf("availability %s/%s: got %v, want ok", ch, item, err)
			}
			var total int64
			for i, la := range a.Locations {
				loc := p.md.channels[ch].locs[i]
				c := p.md.counters[mkey{item, loc}]
				if c == nil {
					c = &mcounter{}
				}
				want := store.LocationAvailability{
					Location: store.LocationID(loc), Available: store.Units(p.md.avail(ch, item, loc)),
					OnHand: store.Units(c.onHand), Reserved: store.Units(c.reserved), Committed: store.Units(c.committed),
					Buffer: store.Units(p.md.bufferOf(ch, item, loc)), Oversold: store.Units(p.md.oversold(item, loc)),
				}
				if la != want {
					t.Fatalf("availability %s/%s@%s: got %+v, want %+v", ch, item, loc, la, want)
				}
				if la.Available < 0 || la.Oversold < 0 {
					t.Fatalf("availability %s/%s@%s (I1): got %+v, want nothing negative", ch, item, loc, la)
				}
				total += int64(la.Available)
			}
			if int64(a.Available) != total || a.Available < 0 {
				t.Fatalf("availability %s/%s (I1): got total %d, want %d", ch, item, a.Available, total)
			}
		}
	}
	// Reserved is the sum of the live holds the machine reports (backorders
	// aside: they wait on incoming lines), and committed the sum of the
	// unabsorbed orders' units not waiting for incoming supply, per counter.
	held := map[mkey]int64{}
	for _, ch := range allChannels {
		for _, id := range propIDs {
			r, err := p.m.Reservation(store.ChannelID(ch), store.ReservationID(id))
			mr := p.md.res[rkey{ch, id}]
			switch {
			case mr == nil && !errors.Is(err, store.ErrUnknownReservation):
				t.Fatalf("reservation %s/%s: got %+v, %v, want unknown", ch, id, r, err)
			case mr != nil && (err != nil || !reflect.DeepEqual(r, mr.reservation())):
				t.Fatalf("reservation %s/%s: got %+v, %v, want %+v", ch, id, r, err, mr.reservation())
			}
			if err == nil && r.State == store.StateHeld {
				for _, l := range r.Lines {
					for _, al := range l.Allocations {
						if al.POLine != "" {
							continue
						}
						held[mkey{string(l.Item), string(al.Location)}] += int64(al.Quantity)
					}
				}
			}
		}
	}
	p.checkListing(t)
	committed := map[mkey]int64{}
	for _, o := range p.md.orders {
		if !o.absorbed && !o.cancelled && !o.refused {
			for _, l := range o.lines {
				if l.po != "" {
					continue
				}
				committed[mkey{l.item, l.loc}] += l.qty
			}
		}
	}
	for _, item := range propItems {
		for _, loc := range propLocations {
			// rep sees every location.
			if err := p.m.Availability("rep", store.SKU(item), &a); err != nil {
				t.Fatal(err)
			}
			for _, la := range a.Locations {
				if string(la.Location) != loc {
					continue
				}
				if k := (mkey{item, loc}); int64(la.Reserved) != held[k] || int64(la.Committed) != committed[k] {
					t.Fatalf("counter %s@%s: got reserved %d committed %d, want live holds %d unabsorbed orders %d",
						item, loc, la.Reserved, la.Committed, held[k], committed[k])
				}
			}
		}
	}
}

func TestPropertyI1I3I4MachineMatchesModel(t *testing.T) {
	seen := map[string]int{}
	rapid.Check(t, func(t *rapid.T) {
		p := &propRun{m: store.New(propConfig), md: newModel(propConfig), clock: t0}
		p.md.seen = seen
		setup := []*logv1.Command{
			loc("ams"), loc("fra"), loc("ber"), channel("web", 0, "ams", "fra"), channel("rep", 1, "fra", "ber", "ams"),
			strict(channel("mkt", 0, "ber", "ams")),
		}
		for _, c := range setup {
			if res := p.apply(t, t0, c); res.Err != nil {
				t.Fatalf("input %v: got %v, want ok", c, res.Err)
			}
		}
		for _, l := range propLocations {
			p.md.locs[l] = true
		}
		p.md.channels["web"] = mchannel{locs: []string{"ams", "fra"}, rev: 4}
		p.md.channels["rep"] = mchannel{locs: []string{"fra", "ber", "ams"}, buffer: 1, rev: 5}
		p.md.channels["mkt"] = mchannel{locs: []string{"ber", "ams"}, strict: true, rev: 6}
		// Stock from the first step, so holds exist for the lifecycle commands
		// to act on (with a dozen kinds of action, a count arriving first is rare).
		var rows []*logv1.StockCount
		for _, item := range propItems {
			for _, l := range propLocations {
				rows = append(rows, row(item, l, rapid.Int64Range(0, 20).Draw(t, "initial_on_hand"), 1))
			}
		}
		stock := setStock(rows...)
		if res := p.apply(t, t0, stock); res.Err != nil {
			t.Fatalf("input %v: got %v, want ok", stock, res.Err)
		}
		p.md.setStock(stock.GetSetStock())
		p.seedIncoming(t) // model_backorder_test.go

		// Three rounds of rapid's ~30 steps: with two dozen kinds of action,
		// a backorder needs a shortage, then a confirm or a receipt, to say much.
		for range 3 {
			t.Repeat(p.actions())
		}

		checkReplay(t, p.m, p.log)
	})
	checkBackordersReached(t, seen) // model_backorder_test.go
}

// checkReplay: I4 on the run's log. A fresh machine replaying it answers the
// same and ends with the same digest; a snapshot restored into a fresh machine
// has the same digest and figures; a snapshot at a random step plus the tail
// of the log equals the full replay.
func checkReplay(t *rapid.T, m *store.Machine, log []logged) {
	want := digest(m)
	fresh := store.New(propConfig)
	for i, e := range log {
		if got := fresh.Apply(e.index, e.ts, e.cmd); !reflect.DeepEqual(got, e.res) {
			t.Fatalf("I4 replay of entry %d input %v: got %s, want %s", i, e.cmd, describe(got), describe(e.res))
		}
	}
	if got := digest(fresh); got != want {
		t.Fatalf("I4 replay of %d entries: got digest %s, want %s", len(log), got, want)
	}

	back, err := restored(m, propConfig)
	if err != nil {
		t.Fatalf("I4 restore of the final snapshot: got %v, want ok", err)
	}
	if got := digest(back); got != want {
		t.Fatalf("I4 restore of the final snapshot: got digest %s, want %s", got, want)
	}
	sameFigures(t, back, m)

	cut := rapid.IntRange(0, len(log)).Draw(t, "snapshot_at")
	prefix := store.New(propConfig)
	for _, e := range log[:cut] {
		prefix.Apply(e.index, e.ts, e.cmd)
	}
	tail, err := restored(prefix, propConfig)
	if err != nil {
		t.Fatalf("I4 restore of the snapshot at entry %d: got %v, want ok", cut, err)
	}
	for i, e := range log[cut:] {
		if got := tail.Apply(e.index, e.ts, e.cmd); !reflect.DeepEqual(got, e.res) {
			t.Fatalf("I4 snapshot at %d plus tail entry %d input %v: got %s, want %s", cut, cut+i, e.cmd, describe(got), describe(e.res))
		}
	}
	if got := digest(tail); got != want {
		t.Fatalf("I4 snapshot at %d plus tail: got digest %s, want %s", cut, got, want)
	}
}

// sameFigures compares what readers see on two machines.
func sameFigures(t interface{ Fatalf(string, ...any) }, got, want *store.Machine) {
	var a, b store.SKUAvailability
	for _, ch := range propChannels {
		for _, item := range propSKUs {
			errA := got.Availability(store.ChannelID(ch), store.SKU(item), &a)
			errB := want.Availability(store.ChannelID(ch), store.SKU(item), &b)
			if fmt.Sprint(errA) != fmt.Sprint(errB) || (errA == nil && !reflect.DeepEqual(a, b)) {
				t.Fatalf("I4 availability %s/%s after restore: got %+v (%v), want %+v (%v)", ch, item, a, errA, b, errB)
			}
		}
	}
	if g, w := got.LastTime(), want.LastTime(); g != w {
		t.Fatalf("I4 log time after restore: got %d, want %d", g, w)
	}
	if g, w := got.AppliedIndex(), want.AppliedIndex(); g != w {
		t.Fatalf("I4 applied index after restore: got %d, want %d", g, w)
	}
	for _, ch := range allChannels {
		for _, id := range propIDs {
			r1, e1 := got.Reservation(store.ChannelID(ch), store.ReservationID(id))
			r2, e2 := want.Reservation(store.ChannelID(ch), store.ReservationID(id))
			if !reflect.DeepEqual(r1, r2) || fmt.Sprint(e1) != fmt.Sprint(e2) {
				t.Fatalf("I4 reservation %s/%s after restore: got %+v (%v), want %+v (%v)", ch, id, r1, e1, r2, e2)
			}
		}
	}
}
