package store

import (
	"container/heap"
	"strconv"

	"github.com/stockd/stockd/api/logv1"
)

type counterKey struct {
	item     ItemID
	location LocationID
}

// reserve holds every line of a cart or none (I1), remembering the answer for
// retries by (channel, reservation id) (I3).
func (st *state) reserve(now Timestamp, c *logv1.Reserve) Result {
	if r := validateReserve(c); r != nil {
		st.stats.reserveRefused(r)
		return Result{Err: r}
	}
	key := resKey{ChannelID(c.GetChannel()), ReservationID(c.GetReservationId())}
	cat := st.catalog.Load()
	if ch := cat.channels[key.channel]; ch != nil {
		key.channel = ch.ID // the catalog's copy: a hold keeps no string of its own for it
	}
	// brokenIdempotency is false but in bench/chaos's self-test (broken_idempotency.go).
	if r := st.reservations[key]; r != nil && !brokenIdempotency {
		rq := r.remembered() // packed.go
		if d := rq.diff(key, r.rawRequest(), c); d != nil {
			st.stats.reserveRefused(d)
			return Result{Err: d}
		}
		cp := st.view(r)
		return Result{Reservation: &cp}
	}
	if f := st.refusals[key]; f != nil && !brokenIdempotency {
		if d := f.request.diff(key, f.rawRequest, c); d != nil {
			st.stats.reserveRefused(d)
			return Result{Err: d}
		}
		return Result{Err: f.rejection}
	}
	lines, rej := st.allocate(key.channel, c)
	if rej != nil {
		f := &refusal{key: key, rejection: rej, prunableAt: now}
		f.request, f.rawRequest = newReserveRequest(cat, key, c)
		f.pruneSeq = st.enqueuePrune(pruneItem{at: now, kind: pruneRefusal, key: key})
		st.refusals[key] = f
		st.stats.reserveRefused(rej)
		return Result{Err: rej}
	}
	for _, l := range lines {
		for _, a := range l.Allocations {
			if a.POLine != "" {
				continue // a backorder waits on its incoming line (holdBackorders)
			}
			sh := st.shardFor(l.Item)
			sh.mu.Lock()
			ct := sh.items[l.Item].counterAt(a.Location)
			before := ct.available(0)
			ct.reserved += a.Quantity
			st.touch(l.Item, ct)
			st.stats.dropped(before, ct)
			sh.mu.Unlock()
		}
	}
	ttl := c.GetTtlNanos()
	if ttl == 0 {
		ttl = DefaultHoldTTLNanos
	}
	r := &reservation{
		Reservation: Reservation{
			Channel: key.channel, ID: key.id, State: StateHeld, Lines: lines,
			CreatedAt: now, ExpiresAt: now + Timestamp(ttl),
		},
	}
	rq, raw := newReserveRequest(cat, key, c)
	ownStrings(&key, r, &rq) // r.req is rq packed (packed.go)
	r.setRawRequest(raw)
	st.lmu.Lock()
	st.reservations[key] = r
	st.lmu.Unlock()
	st.holdStarted(r)
	st.holdBackorders(r)
	heap.Push(&st.deadlines, deadlineItem{at: r.ExpiresAt, key: key})
	cp := st.view(r)
	st.stats.reserveAccepted()
	return Result{Reservation: &cp}
}

// allocate decides where each line is held without changing state. Lines with
// a location are held there. The others go to the highest-priority single
// location that fills all of them (no split shipment), else each line is
// filled greedily in the channel's priority order in whole SKU units. Lines
// naming the same item draw on one pool.
func (st *state) allocate(chID ChannelID, c *logv1.Reserve) ([]ReservationLine, *Rejection) {
	cat := st.catalog.Load()
	ch := cat.channels[chID]
	if ch == nil {
		return nil, reject(ErrUnknownChannel, "channel", "unknown channel "+strconv.Quote(string(chID)))
	}
	lines, slab := newLines(len(c.GetLines()))
	base := make([]Units, len(lines))
	for i, l := range c.GetLines() {
		item, factor, _, known := cat.resolve(ch, SKU(l.GetSku()))
		if !known {
			return nil, reject(ErrUnknownSKU, indexed("lines", i, "sku"), "sku "+strconv.Quote(l.GetSku())+
				" has no mapping and channel "+strconv.Quote(string(chID))+" requires one")
		}
		lines[i] = ReservationLine{SKU: SKU(l.GetSku()), Item: item, Quantity: Units(l.GetQuantitySkuUnits()), Factor: factor}
		q, ok := mulUnits(lines[i].Quantity, lines[i].Factor)
		if !ok {
			return nil, reject(ErrOverflow, indexed("lines", i, "quantity"), "quantity times pack factor overflows")
		}
		base[i] = q
		if loc := LocationID(l.GetLocation()); loc != "" {
			if _, ok := cat.locations[loc]; !ok {
				return nil, reject(ErrUnknownLocation, indexed("lines", i, "location"), "unknown location "+strconv.Quote(string(loc)))
			}
			if !ch.sees(loc) {
				return nil, reject(ErrLocationNotVisible, indexed("lines", i, "location"),
					"location "+strconv.Quote(string(loc))+" is not one of channel "+strconv.Quote(string(chID))+"'s locations")
			}
		}
	}

	if r := st.checkExpected(cat, ch, c, lines); r != nil {
		return nil, r // compare-and-reserve (catalog.go)
	}

	if wantsBackorder(c) {
		return st.allocateBackorder(ch, c, lines, base) // backorder.go
	}

	taken := make(map[counterKey]Units)
	avail := func(item ItemID, loc LocationID) Units {
		is := st.item(item)
		ct := is.counterAt(loc)
		if ct == nil {
			return 0
		}
		return ct.available(is.buffer(ch, loc)) - taken[counterKey{item, loc}]
	}

	// Lines pinned to a location first.
	var flexible []int
	for i, l := range c.GetLines() {
		loc := cat.intern(LocationID(l.GetLocation())) // the hold keeps the catalog's copy
		if loc == "" {
			flexible = append(flexible, i)
			continue
		}
		if a := avail(lines[i].Item, loc); base[i] > a {
			return nil, insufficient(i, base[i], a-a%lines[i].Factor) // whole SKU units, as a split reports
		}
		taken[counterKey{lines[i].Item, loc}] += base[i]
		lines[i].Allocations = slab.one(Allocation{Location: loc, Quantity: base[i]})
	}
	if len(flexible) == 0 {
		return lines, nil
	}

	// One location for the whole cart, if any can.
	demand := make(map[ItemID]Units)
	for _, i := range flexible {
		d, ok := addUnits(demand[lines[i].Item], base[i])
		if !ok {
			return nil, reject(ErrOverflow, indexed("lines", i, "quantity"), "cart total overflows")
		}
		demand[lines[i].Item] = d
	}
	for _, loc := range ch.Locations {
		fits := true
		for _, i := range flexible {
			if avail(lines[i].Item, loc) < demand[lines[i].Item] {
				fits = false
				break
			}
		}
		if fits {
			for _, i := range flexible {
				lines[i].Allocations = slab.one(Allocation{Location: loc, Quantity: base[i]})
			}
			return lines, nil
		}
	}

	// Split: each line greedily in priority order.
	for _, i := range flexible {
		remaining := base[i]
		for _, loc := range ch.Locations {
			a := avail(lines[i].Item, loc)
			take := min(a, remaining)
			take -= take % lines[i].Factor
			if take <= 0 {
				continue
			}
			lines[i].Allocations = append(lines[i].Allocations, Allocation{Location: loc, Quantity: take})
			taken[counterKey{lines[i].Item, loc}] += take
			remaining -= take
			if remaining == 0 {
				break
			}
		}
		if remaining > 0 {
			return nil, insufficient(i, base[i], base[i]-remaining)
		}
	}
	return lines, nil
}

// newLines returns a hold's n lines and where their single allocations come
// from: one array for all of them, and for a one-line hold the same object as
// its line. A held hold is kept for its whole life (minutes), so every object
// it is made of is marked by every garbage collection meanwhile; this makes a
// one-line hold one object fewer, an n-line one n-1 fewer. Allocations are
// never changed in place (snapshots share them), so sharing an array is safe.
func newLines(n int) ([]ReservationLine, *allocSlab) {
	if n == 1 {
		one := new(struct {
			line  [1]ReservationLine
			alloc [1]Allocation
		})
		return one.line[:], &allocSlab{free: one.alloc[:]}
	}
	return make([]ReservationLine, n), &allocSlab{size: n}
}

// allocSlab hands out one-element allocation slices cut from one array.
type allocSlab struct {
	free []Allocation
	size int // the array made when free runs out
}

// one returns a slice holding only a, of capacity 1: an append to it
// reallocates rather than write over the next line's allocation.
func (s *allocSlab) one(a Allocation) []Allocation {
	if len(s.free) == 0 {
		s.free = make([]Allocation, max(s.size, 1))
	}
	s.free[0] = a
	out := s.free[:1:1]
	s.free = s.free[1:]
	return out
}

func insufficient(i int, requested, available Units) *Rejection {
	available = max(available, 0)
	return &Rejection{
		Kind: ErrInsufficientStock, Field: indexed("lines", i, "quantity"),
		Reason: "insufficient stock: requested " + strconv.FormatInt(int64(requested), 10) +
			", available " + strconv.FormatInt(int64(available), 10),
		Requested: requested, Available: available,
	}
}

// sees reports whether the channel sells from loc.
func (c *Channel) sees(loc LocationID) bool {
	for _, l := range c.Locations {
		if l == loc {
			return true
		}
	}
	return false
}

// diffReserve judges a retry field by field and names the first difference.
func diffReserve(first, retry *logv1.Reserve) *Rejection {
	conflict := func(field string) *Rejection {
		return reject(ErrIdempotencyConflict, field, "differs from the first request with reservation id "+
			strconv.Quote(first.GetReservationId()))
	}
	if len(first.GetLines()) != len(retry.GetLines()) {
		return conflict("lines")
	}
	for i, a := range first.GetLines() {
		b := retry.GetLines()[i]
		switch {
		case a.GetSku() != b.GetSku():
			return conflict(indexed("lines", i, "sku"))
		case a.GetQuantitySkuUnits() != b.GetQuantitySkuUnits():
			return conflict(indexed("lines", i, "quantity"))
		case a.GetLocation() != b.GetLocation():
			return conflict(indexed("lines", i, "location"))
		case a.GetExpectedModRevision() != b.GetExpectedModRevision():
			return conflict(indexed("lines", i, "expected_mod_revision"))
		case a.GetAllowBackorder() != b.GetAllowBackorder():
			return conflict(indexed("lines", i, "allow_backorder"))
		}
	}
	if ttlOrDefault(first.GetTtlNanos()) != ttlOrDefault(retry.GetTtlNanos()) {
		return conflict("ttl")
	}
	return nil
}

func ttlOrDefault(ttl int64) int64 {
	if ttl == 0 {
		return DefaultHoldTTLNanos
	}
	return ttl
}

// confirm turns a live hold into an order in the outbox: its units move from
// reserved to committed. Confirming again with the same order_ref answers the
// same; another order_ref is a conflict.
func (st *state) confirm(now Timestamp, c *logv1.Confirm) Result {
	if r := validateConfirm(c); r != nil {
		return Result{Err: r}
	}
	r, rej := st.lookup(c.GetChannel(), c.GetReservationId())
	if rej != nil {
		return Result{Err: rej}
	}
	switch r.State {
	case StateConfirmed, StateCancelled:
		if r.OrderRef != c.GetOrderRef() {
			return Result{Err: reject(ErrIdempotencyConflict, "order_ref", "reservation was confirmed with order_ref "+strconv.Quote(r.OrderRef))}
		}
	case StateReleased, StateExpired:
		return Result{Err: reject(ErrNotHeld, "reservation_id", "reservation is "+r.State.String())}
	case StateHeld:
		o := &order{seq: st.nextOrderSeq, kind: OutboxOrder, channel: r.Channel, reservationID: r.ID, orderRef: c.GetOrderRef(), createdAt: now}
		n := 0
		for _, l := range r.Lines {
			n += len(l.Allocations)
		}
		o.lines = make([]orderLine, 0, n) // exactly: the order stays in the outbox until the ERP absorbs it
		for _, l := range r.Lines {
			for _, a := range l.Allocations {
				if a.POLine != "" {
					// Not committed: the units wait in the order for the incoming line.
					o.lines = append(o.lines, orderLine{item: l.Item, location: a.Location, quantity: a.Quantity, poLine: a.POLine})
					continue
				}
				sh := st.shardFor(l.Item)
				sh.mu.Lock()
				ct := sh.items[l.Item].counterAt(a.Location)
				ct.reserved -= a.Quantity
				ct.committed += a.Quantity
				st.touch(l.Item, ct)
				sh.mu.Unlock()
				o.lines = append(o.lines, orderLine{item: l.Item, location: a.Location, quantity: a.Quantity})
			}
		}
		st.appendOutbox(o) // outbox.go
		st.confirmBackorders(r, o)
		st.lmu.Lock()
		r.OrderRef, r.OrderSeq = o.orderRef, o.seq
		st.lmu.Unlock()
		st.finish(r, StateConfirmed, now)
	}
	cp := st.view(r)
	return Result{Reservation: &cp}
}

// release gives a hold's units back. Releasing a released or expired hold
// answers the same; a confirmed (or cancelled) order cannot be released. With
// lines it is a partial release (lifecycle.go).
func (st *state) release(now Timestamp, c *logv1.Release) Result {
	if r := validateRelease(c); r != nil {
		return Result{Err: r}
	}
	r, rej := st.lookup(c.GetChannel(), c.GetReservationId())
	if rej != nil {
		return Result{Err: rej}
	}
	if len(c.GetLines()) > 0 {
		return st.releaseLines(now, r, c)
	}
	switch r.State {
	case StateConfirmed, StateCancelled:
		return Result{Err: reject(ErrNotHeld, "reservation_id", "reservation is "+r.State.String())}
	case StateHeld:
		st.unhold(r)
		st.finish(r, StateReleased, now)
	}
	cp := st.view(r)
	return Result{Reservation: &cp}
}

// lookup finds the reservation a Confirm or Release names.
func (st *state) lookup(ch, id string) (*reservation, *Rejection) {
	r := st.reservations[resKey{ChannelID(ch), ReservationID(id)}]
	if r == nil {
		return nil, reject(ErrUnknownReservation, "reservation_id", "unknown reservation "+strconv.Quote(id))
	}
	return r, nil
}

// unhold returns a hold's units from reserved, and its backorders' units to
// their incoming lines.
func (st *state) unhold(r *reservation) {
	st.unholdBackorders(r)
	for _, l := range r.Lines {
		for _, a := range l.Allocations {
			if a.POLine != "" {
				continue
			}
			sh := st.shardFor(l.Item)
			sh.mu.Lock()
			ct := sh.items[l.Item].counterAt(a.Location)
			ct.reserved -= a.Quantity
			st.touch(l.Item, ct)
			sh.mu.Unlock()
		}
	}
}

// finish moves a reservation to a final state and starts its retry window.
func (st *state) finish(r *reservation, s ReservationState, now Timestamp) {
	if r.State == StateHeld {
		st.holdEnded(r)
	}
	st.lmu.Lock()
	r.State = s
	r.pack() // packed.go
	st.lmu.Unlock()
	r.prunableAt = now
	r.pruneSeq = st.enqueuePrune(pruneItem{at: now, kind: pruneReservation, key: resKey{r.Channel, r.ID}})
}
