package store

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/stockd/stockd/api/logv1"
)

// The order outbox (DESIGN.md "Orders flowing back, and the absorbed mark"):
// Confirm appends an order entry, CancelOrder a cancellation entry, each with
// the next sequence. The ERP pulls the entries without an outcome (Outbox)
// and reports one per entry with AckOrders: BOOKED keeps an order committed
// until the absorbed mark passes it, REFUSED frees its units at once, DONE
// closes a cancellation. Committed units live in the counters, not in the
// outbox: an entry leaves memory (trimOutbox) only once nothing about it can
// change the counters again, so trimming never frees units.
//
// What must stay true, besides restore's committed invariant:
//
//	an order holds committed units iff it is not absorbed, not cancelled
//	and not refused (holdsCommitted); absorbed, cancelled and refused
//	never change back, and a refused order is never absorbed
//	absorbed => seq <= absorbed mark; an order at or below the mark is
//	absorbed unless it was cancelled or refused first
//	pending = entries without an outcome; orders[:pendingPos] have one

// OutboxKind says what an outbox entry asks of the ERP.
type OutboxKind uint8

// Outbox kinds; the numbers are persisted in snapshots.
const (
	OutboxOrder        OutboxKind = 1
	OutboxCancellation OutboxKind = 2
)

// OrderOutcome is what the ERP reported for an outbox entry.
type OrderOutcome uint8

// Outcomes; the numbers are persisted in snapshots. 0 is none yet.
const (
	OutcomeBooked  OrderOutcome = 1
	OutcomeRefused OrderOutcome = 2
	OutcomeDone    OrderOutcome = 3
)

// OutboxLine is units of an item at a location in an order, in base units.
type OutboxLine struct {
	Item     ItemID
	Location LocationID
	Quantity Units
	// POLine is set while the units wait for that incoming line.
	POLine string
}

// OutboxEntry is a confirmed order or a cancellation on its way to the ERP.
type OutboxEntry struct {
	Seq           uint64
	Kind          OutboxKind
	Channel       ChannelID
	ReservationID ReservationID
	OrderRef      string
	Lines         []OutboxLine
	CreatedAt     Timestamp
	CancelsSeq    uint64
	Outcome       OrderOutcome
	OutcomeReason string
	Absorbed      bool
	Cancelled     bool
}

// OutboxStatus is the outbox backlog.
type OutboxStatus struct {
	Pending                uint64
	OldestPendingSeq       uint64
	OldestPendingCreatedAt Timestamp
	NextSeq                uint64
	AbsorbedMark           uint64
}

// RejectedRow is one rejected ERP row kept in the dead-letter list.
type RejectedRow struct {
	Revision Revision
	At       Timestamp
	Source   string
	Row      uint32
	Key      string
	Reason   string
}

// RejectedCount counts rejections by reason since the state began.
type RejectedCount struct {
	Reason string
	Count  uint64
}

// Page sizes of Outbox.
const (
	defaultOutboxPage = 100
	maxOutboxPage     = 10000
)

// orderRefKey finds an order by what the channel called it.
type orderRefKey struct {
	channel ChannelID
	ref     string
}

// holdsCommitted reports whether the order's units (those not waiting on an
// incoming line) are in committed now.
func (o *order) holdsCommitted() bool {
	return o.kind == OutboxOrder && !o.absorbed && !o.cancelled && o.outcome != OutcomeRefused
}

// finished reports whether nothing the ERP or a channel can still send would
// change the entry: it has an outcome and, for an order, the absorbed mark
// passed it and no line still waits on an incoming line, it was refused, or
// it was cancelled and the ERP processed the cancellation (an order cancelled
// before this build wrote cancellations has none to wait for).
//
// An absorbed order with waiting lines is not finished: its units still
// count in the incoming line's backordered figure and a receipt moves them
// (incoming.go receive), so it must stay in the outbox, and in snapshots,
// where Restore's backorder check counts it (checkBackorders).
func (o *order) finished() bool {
	switch {
	case o.outcome == 0:
		return false
	case o.kind == OutboxCancellation, o.outcome == OutcomeRefused:
		return true
	case o.absorbed:
		return !o.waitsOnIncoming()
	}
	return o.cancelled && (o.cancellation == nil || o.cancellation.outcome == OutcomeDone)
}

// waitsOnIncoming reports whether any line of the order waits on an incoming
// line (orderLine.poLine).
func (o *order) waitsOnIncoming() bool {
	for _, l := range o.lines {
		if l.poLine != "" {
			return true
		}
	}
	return false
}

// appendOutbox publishes a new entry whose seq is st.nextOrderSeq.
func (st *state) appendOutbox(o *order) {
	if o.seq != st.nextOrderSeq {
		panic("store: outbox entry " + strconv.FormatUint(o.seq, 10) + " appended as " + strconv.FormatUint(st.nextOrderSeq, 10))
	}
	st.omu.Lock()
	st.orders = append(st.orders, o)
	st.nextOrderSeq++
	st.pending++
	if o.kind == OutboxOrder {
		// An order_ref confirmed twice in one channel finds the later order.
		st.orderRefs[orderRefKey{o.channel, o.orderRef}] = o
	}
	st.omu.Unlock()
}

// appendCancellation sends the cancellation of order o to the ERP: same
// channel, reservation, order_ref and lines, its own sequence.
func (st *state) appendCancellation(now Timestamp, o *order) {
	c := &order{seq: st.nextOrderSeq, kind: OutboxCancellation, channel: o.channel, reservationID: o.reservationID,
		orderRef: o.orderRef, lines: o.lines, createdAt: now, cancelsSeq: o.seq}
	st.appendOutbox(c)
	o.cancellation = c
}

// freeCommitted takes an order's units out of committed (a cancel, a
// refusal); lines waiting on incoming lines were never committed
// (cancelBackorders gives them back).
func (st *state) freeCommitted(o *order) {
	for _, l := range o.lines {
		if l.poLine != "" {
			continue
		}
		sh := st.shardFor(l.item)
		sh.mu.Lock()
		ct := sh.items[l.item].counterAt(l.location)
		ct.committed -= l.quantity
		st.touch(l.item, ct)
		sh.mu.Unlock()
	}
}

// ackOrders records the ERP's outcomes ack by ack, each applied, ignored as
// stale or rejected on its own; rejected acks go to the dead-letter list.
func (st *state) ackOrders(c *logv1.AckOrders) Result {
	if r := validateAckOrders(c); r != nil {
		return Result{Err: r}
	}
	acks := c.GetAcks()
	rows := make([]RowResult, len(acks))
	for i, a := range acks {
		rows[i] = st.ack(i, a)
	}
	st.recordRejected("ack_orders", rows, func(i int) string { return strconv.FormatUint(acks[i].GetSeq(), 10) })
	return Result{Rows: rows}
}

func (st *state) ack(i int, a *logv1.OrderAck) RowResult {
	seq, outcome := a.GetSeq(), OrderOutcome(a.GetOutcome())
	f := func(name string) string { return indexed("acks", i, name) }
	o := st.orderBySeq(seq)
	if o == nil {
		return rejectedRow(reject(ErrUnknownOrder, f("seq"), st.unknownSeq(seq)))
	}
	what := "order " + strconv.FormatUint(seq, 10)
	if o.kind == OutboxCancellation {
		what = "cancellation " + strconv.FormatUint(seq, 10)
	}
	switch {
	case o.kind == OutboxOrder && outcome == OutcomeDone:
		return rejectedRow(invalid(f("outcome"), what+" takes booked or refused; done is for a cancellation"))
	case o.kind == OutboxCancellation && outcome != OutcomeDone:
		return rejectedRow(invalid(f("outcome"), what+" takes done; booked and refused are for an order"))
	case o.outcome == outcome:
		return RowResult{Status: RowIgnoredStale, Reason: f("outcome") + ": " + what + " is already " + outcome.String()}
	case o.outcome != 0:
		return rejectedRow(reject(ErrIdempotencyConflict, f("outcome"), what+" is already "+o.outcome.String()+
			", it cannot become "+outcome.String()))
	case outcome == OutcomeRefused && o.absorbed:
		return rejectedRow(reject(ErrAbsorbed, f("outcome"), what+" is already absorbed: the absorbed mark "+
			strconv.FormatUint(st.absorbedMark, 10)+" passed it and its units left committed then"))
	}
	if outcome == OutcomeRefused && !o.cancelled {
		st.freeCommitted(o)
		st.cancelBackorders(o)
	}
	st.omu.Lock()
	o.outcome, o.outcomeReason = outcome, a.GetReason()
	st.pending--
	for st.pendingPos < len(st.orders) && st.orders[st.pendingPos].outcome != 0 {
		st.pendingPos++
	}
	st.omu.Unlock()
	return RowResult{Status: RowApplied}
}

// unknownSeq says why no entry has seq.
func (st *state) unknownSeq(seq uint64) string {
	if seq == 0 || seq >= st.nextOrderSeq {
		return "no outbox entry has seq " + strconv.FormatUint(seq, 10) + " (the next is " + strconv.FormatUint(st.nextOrderSeq, 10) + ")"
	}
	return "outbox entry " + strconv.FormatUint(seq, 10) + " was finished and forgotten after the retry window"
}

// String names the outcome in lower case.
func (o OrderOutcome) String() string {
	switch o {
	case OutcomeBooked:
		return "booked"
	case OutcomeRefused:
		return "refused"
	case OutcomeDone:
		return "done"
	}
	return "none"
}

// trimOutbox drops finished entries (see order.finished) from the front of
// the outbox once they were created at least the retry window ago, so
// GetOrder and re-acks still find them for that long. Only the front moves:
// an entry that is not finished keeps the ones after it, which a pending
// entry's age in OutboxStatus shows. Committed units are in the counters, so
// nothing here touches them.
func (st *state) trimOutbox(now Timestamp, windowNanos int64) {
	n := 0
	for n < len(st.orders) {
		o := st.orders[n]
		if !o.finished() || int64(now)-int64(o.createdAt) < windowNanos {
			break
		}
		n++
	}
	if n == 0 {
		return
	}
	st.omu.Lock()
	defer st.omu.Unlock()
	for _, o := range st.orders[:n] {
		k := orderRefKey{o.channel, o.orderRef}
		if o.kind == OutboxOrder && st.orderRefs[k] == o {
			delete(st.orderRefs, k)
		}
	}
	clear(st.orders[:n]) // the array's head stays until append moves it: let the entries go now
	st.orders = st.orders[n:]
	st.absorbedPos = max(0, st.absorbedPos-n) // the entries past the mark that left were refused or cancellations
	st.pendingPos -= n                        // every trimmed entry had an outcome
}

// view copies an entry for a reader. Caller holds st.omu or is the apply goroutine.
func (o *order) view() OutboxEntry {
	e := OutboxEntry{
		Seq: o.seq, Kind: o.kind, Channel: o.channel, ReservationID: o.reservationID, OrderRef: o.orderRef,
		CreatedAt: o.createdAt, CancelsSeq: o.cancelsSeq, Outcome: o.outcome, OutcomeReason: o.outcomeReason,
		Absorbed: o.absorbed, Cancelled: o.cancelled, Lines: make([]OutboxLine, len(o.lines)),
	}
	for i, l := range o.lines {
		e.Lines[i] = OutboxLine{Item: l.item, Location: l.location, Quantity: l.quantity, POLine: l.poLine}
	}
	return e
}

// Outbox returns up to limit entries with sequence > afterSeq that have no
// outcome yet, in sequence order, as copies. limit <= 0 means 100; at most
// 10,000. Safe from any goroutine.
func (m *Machine) Outbox(afterSeq uint64, limit int) []OutboxEntry {
	if limit <= 0 {
		limit = defaultOutboxPage
	}
	limit = min(limit, maxOutboxPage)
	if afterSeq == ^uint64(0) {
		return nil
	}
	st := m.st.Load()
	st.omu.RLock()
	defer st.omu.RUnlock()
	i, _ := slices.BinarySearchFunc(st.orders, afterSeq+1, cmpSeq)
	var out []OutboxEntry
	for i = max(i, st.pendingPos); i < len(st.orders) && len(out) < limit; i++ {
		if o := st.orders[i]; o.outcome == 0 {
			out = append(out, o.view())
		}
	}
	return out
}

// Order returns the order entry confirmed by (channel, orderRef), with
// whether it was cancelled, its outcome and whether the ERP's counts include
// it (Absorbed), or an ErrUnknownOrder rejection naming order_ref. An order is
// found until it is finished and older than the retry window; an order_ref
// confirmed twice in a channel finds the later order. Safe from any goroutine.
func (m *Machine) Order(ch ChannelID, orderRef string) (OutboxEntry, error) {
	st := m.st.Load()
	st.omu.RLock()
	defer st.omu.RUnlock()
	o := st.orderRefs[orderRefKey{ch, orderRef}]
	if o == nil {
		return OutboxEntry{}, reject(ErrUnknownOrder, "order_ref", "no order "+strconv.Quote(orderRef)+" in channel "+strconv.Quote(string(ch)))
	}
	return o.view(), nil
}

// OutboxStatus reports the backlog: entries without an outcome, the oldest
// of them (seq 0 if none), the next sequence and the absorbed mark. Safe from
// any goroutine.
func (m *Machine) OutboxStatus() OutboxStatus {
	st := m.st.Load()
	st.omu.RLock()
	defer st.omu.RUnlock()
	s := OutboxStatus{Pending: uint64(st.pending), NextSeq: st.nextOrderSeq, AbsorbedMark: st.absorbedMark}
	if st.pendingPos < len(st.orders) {
		o := st.orders[st.pendingPos]
		s.OldestPendingSeq, s.OldestPendingCreatedAt = o.seq, o.createdAt
	}
	return s
}

func cmpSeq(o *order, seq uint64) int {
	switch {
	case o.seq < seq:
		return -1
	case o.seq > seq:
		return 1
	}
	return 0
}

// restoreOrder decodes one OrderRecord; they come in sequence order, after
// the meta record. A record without a kind (written before cancellations
// existed) is an order.
func (st *state) restoreOrder(rec *logv1.OrderRecord) error {
	o := &order{seq: rec.GetSeq(), kind: OutboxKind(rec.GetKind()), channel: ChannelID(rec.GetChannel()),
		reservationID: ReservationID(rec.GetReservationId()), orderRef: rec.GetOrderRef(), absorbed: rec.GetAbsorbed(),
		cancelled: rec.GetCancelled(), createdAt: Timestamp(rec.GetCreatedUnixNanos()), cancelsSeq: rec.GetCancelsSeq(),
		outcome: OrderOutcome(rec.GetOutcome()), outcomeReason: rec.GetOutcomeReason()}
	for _, l := range rec.GetLines() {
		o.lines = append(o.lines, orderLine{item: ItemID(l.GetItem()), location: LocationID(l.GetLocation()),
			quantity: Units(l.GetQuantityBaseUnits()), poLine: l.GetPoLineId()})
	}
	if o.kind == 0 {
		o.kind = OutboxOrder
	}
	var prev *order
	if n := len(st.orders); n > 0 {
		prev = st.orders[n-1]
	}
	switch {
	case prev != nil && prev.seq >= o.seq:
		return fmt.Errorf("order %d out of order", o.seq)
	case o.seq == 0:
		return fmt.Errorf("order seq 0")
	case o.kind != OutboxOrder && o.kind != OutboxCancellation:
		return fmt.Errorf("outbox entry %d has kind %d", o.seq, o.kind)
	case o.outcome > OutcomeDone || (o.outcome == OutcomeDone) != (o.kind == OutboxCancellation && o.outcome != 0):
		return fmt.Errorf("outbox entry %d of kind %d has outcome %d", o.seq, o.kind, o.outcome)
	case o.outcome == 0 && o.outcomeReason != "":
		return fmt.Errorf("outbox entry %d has a reason without an outcome", o.seq)
	case prev != nil && o.createdAt < prev.createdAt, o.createdAt > Timestamp(st.now.Load()):
		return fmt.Errorf("outbox entry %d created at %d, out of time order", o.seq, o.createdAt)
	case o.absorbed && (o.cancelled || o.outcome == OutcomeRefused || o.seq > st.absorbedMark):
		return fmt.Errorf("order %d is absorbed, yet cancelled %v, %s or above the absorbed mark %d", o.seq, o.cancelled, o.outcome, st.absorbedMark)
	case o.kind == OutboxOrder && o.seq <= st.absorbedMark && !o.absorbed && !o.cancelled && o.outcome != OutcomeRefused:
		return fmt.Errorf("order %d is at or below the absorbed mark %d but not absorbed", o.seq, st.absorbedMark)
	case o.kind == OutboxOrder && o.cancelsSeq != 0:
		return fmt.Errorf("order %d cancels %d", o.seq, o.cancelsSeq)
	}
	if o.kind == OutboxCancellation {
		if o.absorbed || o.cancelled {
			return fmt.Errorf("cancellation %d is marked absorbed %v cancelled %v", o.seq, o.absorbed, o.cancelled)
		}
		if o.cancelsSeq == 0 || o.cancelsSeq >= o.seq {
			return fmt.Errorf("cancellation %d names seq %d, not an earlier entry", o.seq, o.cancelsSeq)
		}
		// The order it cancels is kept unless every entry up to it left
		// (trimOutbox trims from the front).
		if i, ok := slices.BinarySearchFunc(st.orders, o.cancelsSeq, cmpSeq); ok {
			t := st.orders[i]
			if t.kind != OutboxOrder || !t.cancelled || t.cancellation != nil {
				return fmt.Errorf("cancellation %d names entry %d, which is no cancelled order awaiting one", o.seq, t.seq)
			}
			if !slices.Equal(t.lines, o.lines) {
				return fmt.Errorf("cancellation %d has other lines than order %d", o.seq, t.seq)
			}
			t.cancellation = o
		} else if n := len(st.orders); n > 0 && st.orders[0].seq < o.cancelsSeq {
			return fmt.Errorf("cancellation %d names order %d, which is not kept while older entries are", o.seq, o.cancelsSeq)
		}
	}
	st.orders = append(st.orders, o)
	return nil
}

// restoreOutbox rebuilds what the order records imply: the order index, the
// pending figures and the absorbed position.
func (st *state) restoreOutbox() {
	for _, o := range st.orders {
		if o.kind == OutboxOrder {
			st.orderRefs[orderRefKey{o.channel, o.orderRef}] = o
		}
		if o.outcome == 0 {
			st.pending++
		}
	}
	for st.pendingPos < len(st.orders) && st.orders[st.pendingPos].outcome != 0 {
		st.pendingPos++
	}
	for st.absorbedPos < len(st.orders) && st.orders[st.absorbedPos].seq <= st.absorbedMark {
		st.absorbedPos++
	}
}

// writeOrders emits one OrderRecord per entry, in sequence order.
func writeOrders(w *recordWriter, orders []order) {
	or := &logv1.OrderRecord{}
	rec := &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Order{Order: or}}
	for i := range orders {
		o := &orders[i]
		or.Seq, or.Kind, or.Channel, or.ReservationId = o.seq, uint32(o.kind), string(o.channel), string(o.reservationID)
		or.OrderRef, or.Absorbed, or.Cancelled, or.CreatedUnixNanos = o.orderRef, o.absorbed, o.cancelled, int64(o.createdAt)
		or.CancelsSeq, or.Outcome, or.OutcomeReason = o.cancelsSeq, uint32(o.outcome), o.outcomeReason
		or.Lines = reuseMessages(or.Lines, len(o.lines))
		for j, l := range o.lines {
			ol := or.Lines[j]
			ol.Item, ol.Location, ol.QuantityBaseUnits, ol.PoLineId = string(l.item), string(l.location), int64(l.quantity), l.poLine
		}
		w.write(rec)
	}
}
