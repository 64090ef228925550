package store

import (
	"errors"
	"io"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/stockd/stockd/api/logv1"
)

// packedWorld applies the commands of a small world (two locations, one
// channel, three items) and returns the machine and the next index.
func packedWorld(t *testing.T) (*Machine, Revision) {
	t.Helper()
	m := New(Config{})
	cmds := []*logv1.Command{
		{Kind: &logv1.Command_PutLocation{PutLocation: &logv1.PutLocation{Id: "ams", Name: "Amsterdam"}}},
		{Kind: &logv1.Command_PutLocation{PutLocation: &logv1.PutLocation{Id: "rtm", Name: "Rotterdam"}}},
		{Kind: &logv1.Command_PutChannel{PutChannel: &logv1.PutChannel{Id: "web", Locations: []string{"ams", "rtm"}}}},
		{Kind: &logv1.Command_SetStock{SetStock: &logv1.SetStock{Rows: []*logv1.StockCount{
			{Item: "rose", Location: "ams", OnHandBaseUnits: 100, Version: 1},
			{Item: "tulip", Location: "rtm", OnHandBaseUnits: 100, Version: 1},
			{Item: "lily", Location: "ams", OnHandBaseUnits: 100, Version: 1},
		}}}},
	}
	for i, c := range cmds {
		if res := m.Apply(Revision(i+1), 1, c); res.Err != nil {
			t.Fatalf("setup command %d: %v", i, res.Err)
		}
	}
	return m, Revision(len(cmds) + 1)
}

// packedReserve holds rose and lily wherever they fit and tulip at rtm,
// compared with tulip's mod revision rev.
func packedReserve(id string, tulip int64, rev Revision) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_Reserve{Reserve: &logv1.Reserve{
		Channel: "web", ReservationId: id, TtlNanos: int64(time.Minute),
		Lines: []*logv1.ReserveLine{
			{Sku: "rose", QuantitySkuUnits: 2},
			{Sku: "tulip", QuantitySkuUnits: tulip, Location: "rtm", ExpectedModRevision: uint64(rev)},
			{Sku: "lily", QuantitySkuUnits: 1},
		},
	}}}
}

// TestFinishedHoldsArePacked: every way a hold ends packs its lines (its
// request is packed from the start), and a packed hold reads, answers
// retries, snapshots and restores exactly as the unpacked hold did.
func TestFinishedHoldsArePacked(t *testing.T) {
	m, idx := packedWorld(t)
	apply := func(c *logv1.Command) Result {
		t.Helper()
		idx++
		return m.Apply(idx, 1, c)
	}
	ends := map[string]*logv1.Command{
		"confirmed": {Kind: &logv1.Command_Confirm{Confirm: &logv1.Confirm{Channel: "web", ReservationId: "confirmed", OrderRef: "o1"}}},
		"released":  {Kind: &logv1.Command_Release{Release: &logv1.Release{Channel: "web", ReservationId: "released"}}},
		"given-back": {Kind: &logv1.Command_Release{Release: &logv1.Release{Channel: "web", ReservationId: "given-back", ReleaseId: "g1",
			Lines: []*logv1.ReleaseLine{{Line: 0, QuantitySkuUnits: 2}, {Line: 1, QuantitySkuUnits: 3}, {Line: 2, QuantitySkuUnits: 1}}}}},
		"expired": nil, // the tick below
	}
	held := map[string]Reservation{}
	revs := map[string]Revision{}
	tulipRev := idx - 1 // the stock count
	for id := range ends {
		res := apply(packedReserve(id, 3, tulipRev))
		if res.Err != nil {
			t.Fatalf("reserve %s: %v", id, res.Err)
		}
		held[id], revs[id], tulipRev = *res.Reservation, tulipRev, idx
		if r := m.st.Load().reservations[resKey{"web", ReservationID(id)}]; r.req == "" || r.packed != "" || len(r.Lines) != 3 {
			t.Fatalf("held %s: request %d bytes packed (want some), lines %d bytes packed (want none), %d unpacked",
				id, len(r.req), len(r.packed), len(r.Lines))
		}
	}
	for id, c := range ends {
		if c != nil {
			if res := apply(c); res.Err != nil {
				t.Fatalf("end %s: %v", id, res.Err)
			}
		}
	}
	if res := m.Apply(idx+1, 1+Timestamp(time.Minute), &logv1.Command{Kind: &logv1.Command_Tick{Tick: &logv1.Tick{}}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	idx++

	check := func(t *testing.T, m *Machine, label string) {
		t.Helper()
		st := m.st.Load()
		for id, before := range held {
			r := st.reservations[resKey{"web", ReservationID(id)}]
			if r == nil {
				t.Fatalf("%s: %s is gone", label, id)
			}
			if r.State == StateHeld || r.packed == "" || r.Lines != nil || r.req == "" {
				t.Errorf("%s: %s (%v) not packed: lines %d bytes packed and %d unpacked, request %d bytes packed",
					label, id, r.State, len(r.packed), len(r.Lines), len(r.req))
			}
			got, err := m.Reservation("web", ReservationID(id))
			if err != nil {
				t.Fatalf("%s: read %s: %v", label, id, err)
			}
			want := before.Lines
			if id == "given-back" {
				want = given(before.Lines)
			}
			if !reflect.DeepEqual(got.Lines, want) {
				t.Errorf("%s: %s reads lines %+v, want %+v", label, id, got.Lines, want)
			}
			// The record a snapshot writes is the one the unpacked hold writes.
			unpacked := *r
			unpacked.Reservation.Lines, unpacked.packed = r.lines(), ""
			if a, b := reservationRecord(r), reservationRecord(&unpacked); !proto.Equal(a, b) {
				t.Errorf("%s: %s packed record %v, unpacked %v", label, id, a, b)
			}
		}
	}
	check(t, m, "after the ends")

	// A retry answers as before; a changed one names the field.
	for id := range held {
		idx++
		res := m.Apply(idx, 1, packedReserve(id, 3, revs[id]))
		if res.Err != nil || res.Reservation == nil || res.Reservation.ID != ReservationID(id) {
			t.Errorf("retry of %s: %+v", id, res)
		}
		idx++
		res = m.Apply(idx, 1, packedReserve(id, 4, revs[id]))
		var rej *Rejection
		if !errors.Is(res.Err, ErrIdempotencyConflict) || !errors.As(res.Err, &rej) || rej.Field != "lines[1].quantity" {
			t.Errorf("changed retry of %s: %v, want an idempotency conflict on lines[1].quantity", id, res.Err)
		}
	}

	var recs [][]byte
	if err := m.Snapshot().WriteRecords(func(b []byte) error { recs = append(recs, append([]byte(nil), b...)); return nil }); err != nil {
		t.Fatal(err)
	}
	r2 := New(Config{})
	i := 0
	if err := r2.Restore(func() ([]byte, error) {
		if i == len(recs) {
			return nil, io.EOF
		}
		i++
		return recs[i-1], nil
	}); err != nil {
		t.Fatal(err)
	}
	check(t, r2, "restored")
	d1, err1 := m.Digest()
	d2, err2 := r2.Digest()
	if err1 != nil || err2 != nil || d1 != d2 {
		t.Errorf("digests %x (%v) and restored %x (%v) differ", d1, err1, d2, err2)
	}
}

// given is lines after every unit was given back: each line holds 0 SKU
// units and no allocation.
func given(lines []ReservationLine) []ReservationLine {
	out := make([]ReservationLine, len(lines))
	for i, l := range lines {
		l.Quantity, l.Allocations = 0, nil
		out[i] = l
	}
	return out
}

// TestPackRoundTrips: whatever a hold's lines and request hold, they read
// back exactly as they were packed.
func TestPackRoundTrips(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		text := rapid.StringMatching(`[a-z0-9é-]{0,12}`)
		units := rapid.Int64Range(math.MinInt64, math.MaxInt64)
		lines := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) ReservationLine {
			l := ReservationLine{SKU: SKU(text.Draw(t, "sku")), Quantity: Units(units.Draw(t, "quantity")),
				Factor: Units(units.Draw(t, "factor")), PromisedAt: Timestamp(units.Draw(t, "promised"))}
			l.Item = ItemID(l.SKU)
			if rapid.Bool().Draw(t, "mapped") {
				l.Item = ItemID(text.Draw(t, "item"))
			}
			l.Allocations = rapid.SliceOfN(rapid.Custom(func(t *rapid.T) Allocation {
				return Allocation{Location: LocationID(text.Draw(t, "location")), Quantity: Units(units.Draw(t, "quantity")),
					POLine: text.Draw(t, "po"), PromisedAt: Timestamp(units.Draw(t, "promised"))}
			}), 0, 3).Draw(t, "allocations")
			if len(l.Allocations) == 0 {
				l.Allocations = nil
			}
			return l
		}), 0, 4).Draw(t, "lines")
		if len(lines) == 0 {
			lines = nil
		}
		var rq reserveRequest
		if rapid.Bool().Draw(t, "request") {
			rq.ttlNanos = units.Draw(t, "ttl")
			rq.lines = rapid.SliceOfN(rapid.Custom(func(t *rapid.T) requestLine {
				return requestLine{sku: SKU(text.Draw(t, "sku")), location: LocationID(text.Draw(t, "location")),
					quantity: Units(units.Draw(t, "quantity")), expectedModRev: Revision(rapid.Uint64().Draw(t, "rev")),
					allowBackorder: rapid.Bool().Draw(t, "backorder")}
			}), 1, 4).Draw(t, "request lines")
			for i := range rq.lines {
				if i < len(lines) && rapid.Bool().Draw(t, "same sku") {
					rq.lines[i].sku = lines[i].SKU
				}
			}
		}
		id := ReservationID(text.Draw(t, "id"))
		key := resKey{"web", id}
		r := &reservation{Reservation: Reservation{State: StateConfirmed, ID: id, Lines: slices.Clone(lines)}}
		ownStrings(&key, r, &rq)
		if key.id != id || r.ID != id || !reflect.DeepEqual(r.Lines, lines) {
			t.Fatalf("ownStrings changed the hold: id %q key %q lines %+v, want %q and %+v", r.ID, key.id, r.Lines, id, lines)
		}
		r.pack()
		if r.packed == "" || r.Lines != nil || (r.req == "") != (rq.lines == nil) {
			t.Fatalf("not packed: lines %q, %d unpacked; request %q", r.packed, len(r.Lines), r.req)
		}
		gotLines, gotRq := r.lines(), r.remembered()
		if !reflect.DeepEqual(gotLines, lines) {
			t.Fatalf("lines %+v, want %+v", gotLines, lines)
		}
		if !reflect.DeepEqual(gotRq, rq) {
			t.Fatalf("request %+v, want %+v", gotRq, rq)
		}
	})
}

// TestHeldHoldOwnsItsStrings: a new hold keeps none of the decoded command's
// strings. Its id, its lines' SKUs (and items equal to them) and its packed
// request lie in one string of its own, and a pinned location is the
// catalog's copy, so a live hold costs the collector as few objects as it
// can. Reads, retries and the snapshot see the same hold.
func TestHeldHoldOwnsItsStrings(t *testing.T) {
	m, idx := packedWorld(t)
	// Decoded from its wire form, as a replica gets it: fresh strings.
	raw, err := proto.Marshal(packedReserve("h1", 3, idx-1))
	if err != nil {
		t.Fatal(err)
	}
	c := &logv1.Command{}
	if err := proto.Unmarshal(raw, c); err != nil {
		t.Fatal(err)
	}
	rq := c.GetReserve()
	if res := m.Apply(idx, 1, c); res.Err != nil {
		t.Fatalf("input reserve h1: %v", res.Err)
	}
	r := m.st.Load().reservations[resKey{"web", "h1"}]
	if r == nil {
		t.Fatal("input reserve h1: no hold")
	}
	// The hold's own string runs from its id's first byte to its request's last.
	own := unsafe.String(unsafe.StringData(string(r.ID)), len(r.ID)+len(r.Lines[0].SKU)+len(r.Lines[1].SKU)+len(r.Lines[2].SKU)+len(r.req))
	within := func(s string) bool {
		if s == "" {
			return true
		}
		start, end := uintptr(unsafe.Pointer(unsafe.StringData(own))), uintptr(unsafe.Pointer(unsafe.StringData(own)))+uintptr(len(own))
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		return p >= start && p+uintptr(len(s)) <= end
	}
	same := func(a, b string) bool { return a != "" && unsafe.StringData(a) == unsafe.StringData(b) }
	if same(string(r.ID), rq.GetReservationId()) {
		t.Errorf("input reserve h1: the hold's id is the command's string, want its own")
	}
	if !same(own[len(r.ID)+len(r.Lines[0].SKU)+len(r.Lines[1].SKU)+len(r.Lines[2].SKU):], r.req) && r.req != "" {
		t.Errorf("input reserve h1: the packed request is not in the hold's string")
	}
	cat := m.st.Load().catalog.Load()
	for i, l := range r.Lines {
		if !within(string(l.SKU)) || same(string(l.SKU), rq.GetLines()[i].GetSku()) {
			t.Errorf("input reserve h1: lines[%d].sku %q is not in the hold's own string", i, l.SKU)
		}
		if !same(string(l.Item), string(l.SKU)) {
			t.Errorf("input reserve h1: lines[%d].item %q does not share its sku's bytes", i, l.Item)
		}
		for _, a := range l.Allocations {
			if !same(string(a.Location), string(cat.locations[a.Location].ID)) {
				t.Errorf("input reserve h1: lines[%d] allocation at %q is not the catalog's copy", i, a.Location)
			}
		}
	}
	if len(r.Lines) != 3 || r.Lines[0].SKU != "rose" || r.Lines[1].SKU != "tulip" || r.Lines[2].SKU != "lily" || r.ID != "h1" {
		t.Fatalf("input reserve h1: got id %q lines %+v, want h1 with rose, tulip, lily", r.ID, r.Lines)
	}
	// The lines' single allocations come from one array (newLines), each
	// capped at 1 so that an append cannot write over the next line's.
	var lo, hi uintptr
	for i, l := range r.Lines {
		if len(l.Allocations) != 1 || cap(l.Allocations) != 1 {
			t.Fatalf("input reserve h1: lines[%d] allocations len %d cap %d, want 1 and 1", i, len(l.Allocations), cap(l.Allocations))
		}
		p := uintptr(unsafe.Pointer(&l.Allocations[0]))
		if i == 0 || p < lo {
			lo = p
		}
		hi = max(hi, p)
	}
	if size := unsafe.Sizeof(Allocation{}); hi-lo != 2*size {
		t.Errorf("input reserve h1: the three allocations span %d bytes, want %d (one array)", hi-lo, 2*size)
	}

	// A same-payload retry answers; one with another quantity is refused.
	idx++
	if res := m.Apply(idx, 1, packedReserve("h1", 3, idx-2)); res.Err != nil || res.Reservation.ID != "h1" {
		t.Errorf("input same-payload retry of h1: got %v, want the hold", res.Err)
	}
	idx++
	var rej *Rejection
	if res := m.Apply(idx, 1, packedReserve("h1", 4, idx-3)); !errors.Is(res.Err, ErrIdempotencyConflict) || !errors.As(res.Err, &rej) || rej.Field != "lines[1].quantity" {
		t.Errorf("input retry of h1 with tulip 4: got %v, want a conflict on lines[1].quantity", res.Err)
	}
}
