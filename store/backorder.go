package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
)

// Backorders and incoming supply (DESIGN.md "Reservations", issue 4 item 6).
//
// An incoming line is a purchase-order line the ERP reports: quantity,
// received so far and ETA, versioned. A Reserve line with allow_backorder
// takes what on-hand cannot fill from incoming lines; those backorder
// allocations carry the line's id, do not touch reserved, and raise the
// line's backordered instead. A confirmed order keeps such units waiting
// (orderLine.poLine), not committed. When the ERP reports units received, the
// waiting units move onto on-hand at the line's location, oldest waiter
// first: confirmed orders in sequence order, then held reservations by
// (created at, channel, id). A hold's units become reserved, an order's
// committed (unless the ERP already absorbed the order), so the receipt is
// not sold to someone else. What must stay true, per line:
//
//	0 <= backordered <= quantity - received
//	backordered = sum of live backorder allocations (held reservations)
//	            + waiting lines of confirmed orders
//
// The waiter lists are derived from reservations and orders, so a snapshot
// holds only the line and its backordered figure; Restore rebuilds them.
//
// incoming.go holds the lines, SetIncoming, receipts and the incoming reads
// and records; this file the backorder allocations, the hooks the hold
// lifecycle calls, promised dates and the restore check.

// holdBackorders raises the backordered figure of every incoming line a new
// hold takes units of, and lists the hold as waiting on it.
func (st *state) holdBackorders(r *reservation) {
	key := resKey{r.Channel, r.ID}
	for _, l := range r.Lines {
		for _, a := range l.Allocations {
			if a.POLine == "" {
				continue
			}
			in := st.incoming[a.POLine]
			sh := st.shardFor(in.Item)
			sh.mu.Lock()
			in.Backordered += a.Quantity
			sh.mu.Unlock()
			st.noteItem(in.Item, "", in.Location)
			if !slices.Contains(in.holds, key) {
				in.holds = append(in.holds, key)
			}
		}
	}
}

// unholdBackorders gives back what a hold that ends (released, expired)
// takes of incoming lines.
func (st *state) unholdBackorders(r *reservation) {
	key := resKey{r.Channel, r.ID}
	for _, l := range r.Lines {
		for _, a := range l.Allocations {
			if a.POLine == "" {
				continue
			}
			st.backorderReleased(a.POLine, a.Quantity)
			in := st.incoming[a.POLine]
			in.holds = slices.DeleteFunc(in.holds, func(k resKey) bool { return k == key })
		}
	}
}

// backorderReleased lowers a line's backordered figure by base units a hold
// gives back (a release, an expiry, a partial release that shrinks a
// backorder allocation). Apply goroutine only. Keep the name: lifecycle.go
// calls it.
func (st *state) backorderReleased(poLine string, base Units) {
	in := st.incoming[poLine]
	if in == nil || base <= 0 {
		return
	}
	sh := st.shardFor(in.Item)
	sh.mu.Lock()
	in.Backordered -= base
	sh.mu.Unlock()
	st.noteItem(in.Item, "", in.Location)
}

// confirmBackorders moves a hold that became order o from the waiting holds
// to the waiting orders of each incoming line it takes units of. The units
// stay backordered: they wait in the order (orderLine.poLine).
func (st *state) confirmBackorders(r *reservation, o *order) {
	key := resKey{r.Channel, r.ID}
	for _, l := range o.lines {
		if l.poLine == "" {
			continue
		}
		in := st.incoming[l.poLine]
		in.holds = slices.DeleteFunc(in.holds, func(k resKey) bool { return k == key })
		if n := len(in.orders); n == 0 || in.orders[n-1] != o {
			in.orders = append(in.orders, o)
		}
	}
}

// cancelBackorders gives back what a cancelled order's waiting lines take of
// incoming lines. The order's lines are left as they are.
func (st *state) cancelBackorders(o *order) {
	for _, l := range o.lines {
		if l.poLine == "" {
			continue
		}
		st.backorderReleased(l.poLine, l.quantity)
		in := st.incoming[l.poLine]
		in.orders = slices.DeleteFunc(in.orders, func(x *order) bool { return x == o })
	}
}

// wantsBackorder reports whether any line of a Reserve allows a backorder.
func wantsBackorder(c *logv1.Reserve) bool {
	for _, l := range c.GetLines() {
		if l.GetAllowBackorder() {
			return true
		}
	}
	return false
}

// allocateBackorder places a cart with lines allowing a backorder. If on-hand
// alone fills it, it is placed as allocate places any cart. Else: lines hold
// the resolved item, quantity and factor of each request line, base their
// quantity in base units, pinned locations were checked (allocate did all
// that). Lines without allow_backorder are placed first, on
// on-hand only: pinned ones at their location, the others at one location
// that fills them all, else greedily in the channel's priority order. Then
// each backorder line in cart order takes what on-hand can give (its pinned
// location, or the channel's locations in priority order), then the rest
// from the item's incoming lines at those locations in (eta, po line) order,
// never more than a line's quantity - received - backordered; all in whole
// SKU units. Nothing changes state.
func (st *state) allocateBackorder(ch *Channel, c *logv1.Reserve, lines []ReservationLine, base []Units) ([]ReservationLine, *Rejection) {
	// On-hand alone first, as if no line allowed a backorder.
	plain := proto.CloneOf(c)
	for _, l := range plain.GetLines() {
		l.AllowBackorder = false
	}
	if out, rej := st.allocate(ch.ID, plain); rej == nil || !errors.Is(rej, ErrInsufficientStock) {
		return out, rej
	}
	for i := range lines {
		lines[i].Allocations = nil
	}
	taken := make(map[counterKey]Units)
	avail := func(item ItemID, loc LocationID) Units {
		is := st.item(item)
		ct := is.counterAt(loc)
		if ct == nil {
			return 0
		}
		return max(ct.available(is.buffer(ch, loc))-taken[counterKey{item, loc}], 0)
	}
	take := func(i int, a Allocation) {
		lines[i].Allocations = append(lines[i].Allocations, a)
		if a.POLine == "" {
			taken[counterKey{lines[i].Item, a.Location}] += a.Quantity
		}
	}

	var flexible []int
	for i, l := range c.GetLines() {
		loc := LocationID(l.GetLocation())
		switch {
		case l.GetAllowBackorder():
		case loc == "":
			flexible = append(flexible, i)
		default:
			if a := avail(lines[i].Item, loc); base[i] > a {
				return nil, insufficient(i, base[i], a)
			}
			take(i, Allocation{Location: loc, Quantity: base[i]})
		}
	}
	if len(flexible) > 0 && !st.fitOneLocation(ch, lines, base, flexible, avail, take) {
		for _, i := range flexible {
			remaining := base[i]
			for _, loc := range ch.Locations {
				q := min(avail(lines[i].Item, loc), remaining)
				if q -= q % lines[i].Factor; q > 0 {
					take(i, Allocation{Location: loc, Quantity: q})
					remaining -= q
				}
				if remaining == 0 {
					break
				}
			}
			if remaining > 0 {
				return nil, insufficient(i, base[i], base[i]-remaining)
			}
		}
	}

	fromIncoming := make(map[string]Units)
	for i, l := range c.GetLines() {
		if !l.GetAllowBackorder() {
			continue
		}
		pinned := LocationID(l.GetLocation())
		visible := func(loc LocationID) bool {
			if pinned != "" {
				return loc == pinned
			}
			return ch.sees(loc)
		}
		remaining := base[i]
		onHand := ch.Locations
		if pinned != "" {
			onHand = []LocationID{pinned}
		}
		for _, loc := range onHand {
			q := min(avail(lines[i].Item, loc), remaining)
			if q -= q % lines[i].Factor; q > 0 {
				take(i, Allocation{Location: loc, Quantity: q})
				remaining -= q
			}
			if remaining == 0 {
				break
			}
		}
		if remaining > 0 {
			if is := st.item(lines[i].Item); is != nil {
				for _, in := range is.incomingLines() {
					if !visible(in.Location) {
						continue
					}
					q := min(in.free()-fromIncoming[in.POLine], remaining)
					if q -= q % lines[i].Factor; q > 0 {
						take(i, Allocation{Location: in.Location, Quantity: q, POLine: in.POLine})
						fromIncoming[in.POLine] += q
						remaining -= q
					}
					if remaining == 0 {
						break
					}
				}
			}
		}
		if remaining > 0 {
			return nil, insufficient(i, base[i], base[i]-remaining)
		}
	}
	return lines, nil
}

// fitOneLocation holds the given lines at the highest-priority location that
// fills them all, if there is one.
func (st *state) fitOneLocation(ch *Channel, lines []ReservationLine, base []Units, idx []int,
	avail func(ItemID, LocationID) Units, take func(int, Allocation)) bool {
	demand := make(map[ItemID]Units)
	for _, i := range idx {
		d, ok := addUnits(demand[lines[i].Item], base[i])
		if !ok {
			return false // no location holds more than MaxInt64 units
		}
		demand[lines[i].Item] = d
	}
	for _, loc := range ch.Locations {
		fits := true
		for _, i := range idx {
			if avail(lines[i].Item, loc) < demand[lines[i].Item] {
				fits = false
				break
			}
		}
		if fits {
			for _, i := range idx {
				take(i, Allocation{Location: loc, Quantity: base[i]})
			}
			return true
		}
	}
	return false
}

// promise fills the promised dates of a reservation copy: each backorder
// allocation's is its incoming line's current ETA, a line's the latest of
// them. Safe from any goroutine (it takes the items' shard read locks); r
// must be a private copy (see Reservation.clone).
func (st *state) promise(r *Reservation) {
	for i := range r.Lines {
		l := &r.Lines[i]
		l.PromisedAt = 0
		if !slices.ContainsFunc(l.Allocations, func(a Allocation) bool { return a.POLine != "" }) {
			continue
		}
		sh := st.shardFor(l.Item)
		sh.mu.RLock()
		is := sh.items[l.Item]
		for j := range l.Allocations {
			a := &l.Allocations[j]
			if a.POLine == "" {
				continue
			}
			if in := is.findIncoming(a.POLine); in != nil {
				a.PromisedAt = in.ETA
				l.PromisedAt = max(l.PromisedAt, in.ETA)
			}
		}
		sh.mu.RUnlock()
	}
}

// view is the copy of a reservation an answer or a read returns, promised
// dates filled.
func (st *state) view(r *reservation) Reservation {
	cp := r.public() // packed.go
	st.promise(&cp)
	return cp
}

// checkBackorders rebuilds who waits on each incoming line from the restored
// holds and orders, and checks that each line's backordered figure is what
// they hold, that every backorder names a line of its item at its location,
// and that no stored allocation carries a promised date. Orders come in
// sequence order, so each line's waiting orders do too.
func (st *state) checkBackorders() error {
	held := make(map[string]Units)
	var problems []string
	count := func(what string, item ItemID, loc LocationID, poLine string, q Units) *incomingLine {
		in := st.incoming[poLine]
		switch {
		case in == nil:
			problems = append(problems, fmt.Sprintf("%s waits on unknown incoming line %q", what, poLine))
			return nil
		case in.Item != item || in.Location != loc:
			problems = append(problems, fmt.Sprintf("%s waits on incoming line %q as %s@%s, the line is %s@%s",
				what, poLine, item, loc, in.Item, in.Location))
			return nil
		case q <= 0:
			problems = append(problems, fmt.Sprintf("%s waits for %d units of incoming line %q", what, q, poLine))
			return nil
		}
		sum, ok := addUnits(held[poLine], q)
		if !ok {
			problems = append(problems, fmt.Sprintf("backorders on incoming line %q overflow", poLine))
			return nil
		}
		held[poLine] = sum
		return in
	}
	for key, r := range st.reservations {
		what := fmt.Sprintf("reservation %s/%s", key.channel, key.id)
		for _, l := range r.Lines {
			for _, a := range l.Allocations {
				if a.PromisedAt != 0 {
					problems = append(problems, what+" stores a promised date")
				}
				if a.POLine == "" || r.State != StateHeld {
					continue
				}
				if in := count(what, l.Item, a.Location, a.POLine, a.Quantity); in != nil && !slices.Contains(in.holds, key) {
					in.holds = append(in.holds, key)
				}
			}
		}
	}
	for _, o := range st.orders {
		if o.kind != OutboxOrder || o.cancelled || o.outcome == OutcomeRefused {
			continue // CancelOrder or the refusal gave its waiting units back; a cancellation holds none
		}
		for _, l := range o.lines {
			if l.poLine == "" {
				continue
			}
			in := count(fmt.Sprintf("order %d", o.seq), l.item, l.location, l.poLine, l.quantity)
			if in != nil {
				if n := len(in.orders); n == 0 || in.orders[n-1] != o {
					in.orders = append(in.orders, o)
				}
			}
		}
	}
	for id, in := range st.incoming {
		if in.Backordered != held[id] {
			problems = append(problems, fmt.Sprintf("incoming line %q backordered %d, waiting holds and orders %d", id, in.Backordered, held[id]))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}
