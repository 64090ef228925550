package store

import (
	"container/heap"
	"math"
	"slices"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
)

// A hold's life after Reserve: Extend, partial Release, CancelOrder of a
// confirmed order, ReleaseAll of one channel, and the ListReservations read.

// opKind says what a holdOp was; the numbers are persisted in snapshots
// (OpRecord.kind).
type opKind uint8

const (
	opExtend  opKind = 1
	opRelease opKind = 2
)

// holdOp is an Extend or partial Release applied to a reservation. It stays
// with the reservation so a retry with the same id gets the first answer
// (I3), even after the hold ended. Nothing in it changes once written:
// snapshots share it.
type holdOp struct {
	kind     opKind
	id       string
	ttlNanos int64
	lines    []*logv1.ReleaseLine
	// expiresAt is the deadline the op answered.
	expiresAt Timestamp
}

// maxHoldOps bounds the extends and partial releases one reservation
// remembers, so a caller cannot grow one hold without bound.
const maxHoldOps = 1000

// releaseAll remembers a ReleaseAll's count by (channel, release_all_id).
type releaseAll struct {
	released   uint32
	pruneSeq   uint64
	prunableAt Timestamp
}

// op finds the applied op of a kind by its id, or nil.
func (r *reservation) op(kind opKind, id string) *holdOp {
	ops := r.holdOps()
	for i := range ops {
		if ops[i].kind == kind && ops[i].id == id {
			return &ops[i]
		}
	}
	return nil
}

// opAnswer answers a retried op: the reservation as it stands, with the
// deadline the op first answered (a later Extend does not change it).
func (st *state) opAnswer(r *reservation, op *holdOp) Result {
	cp := st.view(r)
	cp.ExpiresAt = op.expiresAt
	return Result{Reservation: &cp}
}

// opRoom refuses a new op once the reservation holds maxHoldOps of them.
func (r *reservation) opRoom(field string) *Rejection {
	if len(r.holdOps()) < maxHoldOps {
		return nil
	}
	return invalid(field, "a reservation takes at most "+strconv.Itoa(maxHoldOps)+" extends and partial releases")
}

// extend moves a live hold's deadline to the entry's time plus the TTL,
// earlier or later than before. It is idempotent by extend_id within the
// reservation: a retry answers the deadline first set, also once the hold
// ended; the same id with another TTL is a conflict.
func (st *state) extend(now Timestamp, c *logv1.Extend) Result {
	if r := validateExtend(c); r != nil {
		return Result{Err: r}
	}
	r, rej := st.lookup(c.GetChannel(), c.GetReservationId())
	if rej != nil {
		return Result{Err: rej}
	}
	if op := r.op(opExtend, c.GetExtendId()); op != nil {
		if op.ttlNanos != c.GetTtlNanos() {
			return Result{Err: reject(ErrIdempotencyConflict, "extend_id", "extend id "+strconv.Quote(op.id)+
				" was used with ttl_nanos "+strconv.FormatInt(op.ttlNanos, 10))}
		}
		return st.opAnswer(r, op)
	}
	if r.State != StateHeld {
		return Result{Err: reject(ErrNotHeld, "reservation_id", "reservation is "+r.State.String())}
	}
	if rej := r.opRoom("extend_id"); rej != nil {
		return Result{Err: rej}
	}
	at := deadlineAfter(now, c.GetTtlNanos())
	moved := at != r.ExpiresAt
	st.lmu.Lock()
	r.ExpiresAt = at
	r.addOp(holdOp{kind: opExtend, id: c.GetExtendId(), ttlNanos: c.GetTtlNanos(), expiresAt: at})
	st.lmu.Unlock()
	if moved {
		// The item of the old deadline goes stale: expire and settleDeadline
		// skip an item whose time is not the hold's current deadline.
		heap.Push(&st.deadlines, deadlineItem{at: at, key: resKey{r.Channel, r.ID}})
	}
	cp := st.view(r)
	return Result{Reservation: &cp}
}

// deadlineAfter is now + ttl, saturating rather than wrapping.
func deadlineAfter(now Timestamp, ttlNanos int64) Timestamp {
	if int64(now) > math.MaxInt64-ttlNanos {
		return math.MaxInt64
	}
	return now + Timestamp(ttlNanos)
}

// releaseLines gives back part of a live hold, idempotently by release_id:
// each line's units come off its allocations in reverse order, lowest
// priority first (a line's backorder allocations come last, so they go
// first). A line's Quantity drops by what it gave back; once every line is
// at 0 the reservation is released.
func (st *state) releaseLines(now Timestamp, r *reservation, c *logv1.Release) Result {
	if op := r.op(opRelease, c.GetReleaseId()); op != nil {
		if !sameReleaseLines(op.lines, c.GetLines()) {
			return Result{Err: reject(ErrIdempotencyConflict, "release_id", "release id "+strconv.Quote(op.id)+
				" was used with other lines")}
		}
		return st.opAnswer(r, op)
	}
	if r.State != StateHeld {
		return Result{Err: reject(ErrNotHeld, "reservation_id", "reservation is "+r.State.String())}
	}
	// Decide everything before changing anything: a release applies whole or not at all.
	give := make([]Units, len(r.Lines)) // SKU units per reservation line
	for i, l := range c.GetLines() {
		n := l.GetLine()
		if uint64(n) >= uint64(len(r.Lines)) {
			return Result{Err: invalid(indexed("lines", i, "line"), "the reservation has "+strconv.Itoa(len(r.Lines))+
				" lines, got index "+strconv.FormatUint(uint64(n), 10))}
		}
		sum, ok := addUnits(give[n], Units(l.GetQuantitySkuUnits()))
		if !ok || sum > r.Lines[n].Quantity {
			return Result{Err: invalid(indexed("lines", i, "quantity"), "line "+strconv.FormatUint(uint64(n), 10)+
				" holds "+strconv.FormatInt(int64(r.Lines[n].Quantity), 10)+" sku units, asked to give back more")}
		}
		give[n] = sum
	}
	if rej := r.opRoom("release_id"); rej != nil {
		return Result{Err: rej}
	}
	// Copy on write: snapshots share a hold's lines and allocations.
	lines := slices.Clone(r.Lines)
	empty := true
	for i := range lines {
		l := &lines[i]
		if give[i] > 0 {
			base, ok := mulUnits(give[i], l.Factor)
			if !ok {
				panic("store: a held line's base units overflow") // Quantity x Factor was checked at reserve
			}
			l.Quantity -= give[i]
			l.Allocations = st.giveBack(l, base)
		}
		if l.Quantity > 0 {
			empty = false
		}
	}
	op := holdOp{kind: opRelease, id: c.GetReleaseId(), expiresAt: r.ExpiresAt, lines: make([]*logv1.ReleaseLine, len(c.GetLines()))}
	for i, l := range c.GetLines() {
		op.lines[i] = proto.CloneOf(l)
	}
	// The live-hold counts see the lines before and after (catalog.go).
	st.holdEnded(r)
	st.lmu.Lock()
	r.Lines = lines
	r.addOp(op)
	st.lmu.Unlock()
	st.holdStarted(r)
	if empty {
		st.finish(r, StateReleased, now)
	}
	cp := st.view(r)
	return Result{Reservation: &cp}
}

// giveBack takes base units off a line's allocations, last first, returning
// them from reserved (or, for a backorder, to its incoming line), and returns
// the allocations left, without empty ones (nil if none). l.Allocations is
// not changed.
func (st *state) giveBack(l *ReservationLine, base Units) []Allocation {
	allocs := slices.Clone(l.Allocations)
	for j := len(allocs) - 1; j >= 0 && base > 0; j-- {
		a := &allocs[j]
		q := min(a.Quantity, base)
		if a.POLine != "" {
			// Not in reserved: the units wait on the incoming line.
			st.backorderReleased(a.POLine, q)
		} else {
			sh := st.shardFor(l.Item)
			sh.mu.Lock()
			ct := sh.items[l.Item].counterAt(a.Location)
			ct.reserved -= q
			st.touch(l.Item, ct)
			sh.mu.Unlock()
		}
		a.Quantity -= q
		base -= q
	}
	allocs = slices.DeleteFunc(allocs, func(a Allocation) bool { return a.Quantity == 0 })
	if len(allocs) == 0 {
		return nil // as a restored line has it
	}
	return allocs
}

func sameReleaseLines(a, b []*logv1.ReleaseLine) bool {
	return slices.EqualFunc(a, b, func(x, y *logv1.ReleaseLine) bool {
		return x.GetLine() == y.GetLine() && x.GetQuantitySkuUnits() == y.GetQuantitySkuUnits()
	})
}

// cancelOrder takes back a confirmed order the ERP has not absorbed: its
// units leave committed, the reservation is cancelled, and a cancellation
// entry goes out through the outbox (outbox.go). Cancelling again answers the
// same; an absorbed order cannot be cancelled. An order the ERP refused has
// no units left to free and nothing for the ERP to undo: it is only marked.
func (st *state) cancelOrder(now Timestamp, c *logv1.CancelOrder) Result {
	if r := validateCancelOrder(c); r != nil {
		return Result{Err: r}
	}
	r, rej := st.lookup(c.GetChannel(), c.GetReservationId())
	if rej != nil {
		return Result{Err: rej}
	}
	switch r.State {
	case StateCancelled:
	case StateConfirmed:
		o := st.orderBySeq(r.OrderSeq)
		if o == nil {
			panic("store: confirmed reservation " + strconv.Quote(string(r.ID)) + " has no order " + strconv.FormatUint(r.OrderSeq, 10))
		}
		if o.absorbed {
			return Result{Err: reject(ErrAbsorbed, "reservation_id", "order "+strconv.FormatUint(o.seq, 10)+
				" is at or below the absorbed mark "+strconv.FormatUint(st.absorbedMark, 10))}
		}
		if o.outcome == OutcomeRefused {
			st.omu.Lock()
			o.cancelled = true
			st.omu.Unlock()
		} else {
			st.freeCommitted(o) // outbox.go
			st.cancelBackorders(o)
			st.omu.Lock()
			o.cancelled = true
			st.omu.Unlock()
			st.appendCancellation(now, o)
		}
		st.lmu.Lock()
		r.State = StateCancelled
		st.lmu.Unlock()
	default:
		return Result{Err: reject(ErrNotConfirmed, "reservation_id", "reservation is "+r.State.String())}
	}
	cp := st.view(r)
	return Result{Reservation: &cp}
}

// orderBySeq finds an order in the outbox by its sequence, or nil.
func (st *state) orderBySeq(seq uint64) *order {
	i, ok := slices.BinarySearchFunc(st.orders, seq, func(o *order, s uint64) int {
		switch {
		case o.seq < s:
			return -1
		case o.seq > s:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return st.orders[i]
}

// releaseAllHolds releases every live hold of one channel, in id order, and
// remembers how many by (channel, release_all_id) for the retry window: a
// retry answers that count and releases nothing new.
func (st *state) releaseAllHolds(now Timestamp, c *logv1.ReleaseAll) Result {
	if r := validateReleaseAll(c); r != nil {
		return Result{Err: r}
	}
	ch := ChannelID(c.GetChannel())
	key := resKey{ch, ReservationID(c.GetReleaseAllId())}
	if ra := st.releaseAlls[key]; ra != nil {
		return Result{Count: ra.released}
	}
	if st.catalog.Load().channels[ch] == nil {
		return Result{Err: reject(ErrUnknownChannel, "channel", "unknown channel "+strconv.Quote(string(ch)))}
	}
	var held []*reservation
	for k, r := range st.reservations {
		if k.channel == ch && r.State == StateHeld {
			held = append(held, r)
		}
	}
	slices.SortFunc(held, func(a, b *reservation) int { return cmpKey(resKey{a.Channel, a.ID}, resKey{b.Channel, b.ID}) })
	for _, r := range held {
		st.unhold(r)
		st.finish(r, StateReleased, now)
	}
	ra := &releaseAll{released: uint32(min(len(held), math.MaxUint32)), prunableAt: now}
	ra.pruneSeq = st.enqueuePrune(pruneItem{at: now, kind: pruneReleaseAll, key: key})
	st.releaseAlls[key] = ra
	return Result{Count: ra.released}
}

// Page sizes of Reservations.
const (
	defaultReservationPage = 100
	maxReservationPage     = 1000
)

// Reservations answers a ReservationQuery: one channel's reservations
// (none for an undeclared channel) in the query's state (0: any) and, with
// ExpiringWithinNanos > 0, only live holds whose deadline is within that span
// of the log time; ids after q.After in ascending order, at most q.Limit
// (0 means 100, at most 1,000), and whether more follow. The answers are
// copies. Safe from any goroutine; it walks every remembered reservation
// under the read lock, so a page costs time in their number.
func (m *Machine) Reservations(q ReservationQuery) (page []Reservation, more bool) {
	st := m.st.Load()
	if st.catalog.Load().channels[q.Channel] == nil {
		return nil, false
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultReservationPage
	}
	limit = min(limit, maxReservationPage)
	var horizon Timestamp
	if q.ExpiringWithinNanos > 0 {
		horizon = deadlineAfter(Timestamp(st.now.Load()), q.ExpiringWithinNanos)
	}
	st.lmu.RLock()
	defer st.lmu.RUnlock()
	// Keep the limit+1 smallest matching ids in a max-heap: one more than the
	// page says whether more follow.
	h := &idHeap{}
	for k, r := range st.reservations {
		switch {
		case k.channel != q.Channel || k.id <= q.After:
		case q.State != 0 && r.State != q.State:
		case q.ExpiringWithinNanos > 0 && (r.State != StateHeld || r.ExpiresAt > horizon):
		case h.Len() <= limit:
			heap.Push(h, r)
		case k.id < (*h)[0].ID:
			(*h)[0] = r
			heap.Fix(h, 0)
		}
	}
	found := []*reservation(*h)
	slices.SortFunc(found, func(a, b *reservation) int { return cmpKey(resKey{a.Channel, a.ID}, resKey{b.Channel, b.ID}) })
	if len(found) > limit {
		found, more = found[:limit], true
	}
	page = make([]Reservation, len(found))
	for i, r := range found {
		page[i] = st.view(r)
	}
	return page, more
}

// idHeap is a max-heap of reservations by id.
type idHeap []*reservation

func (h idHeap) Len() int           { return len(h) }
func (h idHeap) Less(i, j int) bool { return h[i].ID > h[j].ID }
func (h idHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *idHeap) Push(x any)        { *h = append(*h, x.(*reservation)) }
func (h *idHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}
