package store

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"

	"github.com/stockd/stockd/api/logv1"
)

// Incoming supply: purchase-order lines the ERP reports with SetIncoming, and
// receipts that move the backorders waiting on them onto on-hand (see
// backorder.go for what must stay true).

// incomingLine is one purchase-order line plus who waits on it. Its
// IncomingLine fields change only under its item's shard write lock (readers
// take the read lock); holds and orders are apply-goroutine only.
type incomingLine struct {
	IncomingLine
	// holds are the held reservations with backorder allocations on the line,
	// in no particular order (a receipt sorts them). An entry may outlive its
	// allocation (a partial release); a receipt drops it then.
	holds []resKey
	// orders are the confirmed orders with lines waiting on the line, in
	// sequence order.
	orders []*order
}

func cmpIncoming(a, b *incomingLine) int {
	return cmp.Or(cmp.Compare(a.ETA, b.ETA), cmp.Compare(a.POLine, b.POLine))
}

// insertIncoming adds a line to the item's (eta, po line) order. Caller holds
// the shard write lock.
func (is *itemState) insertIncoming(in *incomingLine) {
	lines := is.incomingLines()
	i, _ := slices.BinarySearchFunc(lines, in, cmpIncoming)
	is.setIncoming(slices.Insert(lines, i, in))
}

// removeIncoming takes a line out of the item's list; its ETA and id must be
// the ones it was inserted with. Caller holds the shard write lock.
func (is *itemState) removeIncoming(in *incomingLine) {
	if i, ok := slices.BinarySearchFunc(is.incomingLines(), in, cmpIncoming); ok {
		is.setIncoming(slices.Delete(is.incomingLines(), i, i+1))
	}
}

// findIncoming returns the item's line with this id, or nil. Caller holds the
// shard lock (read or write) or is the apply goroutine.
func (is *itemState) findIncoming(poLine string) *incomingLine {
	for _, in := range is.incomingLines() {
		if in.POLine == poLine {
			return in
		}
	}
	return nil
}

// itemFor returns the item's state, creating it. Caller holds the shard
// write lock.
func (sh *shard) itemFor(item ItemID) *itemState {
	is := sh.items[item]
	if is == nil {
		is = &itemState{}
		sh.items[item] = is
	}
	return is
}

// free is what backorders may still take from the line, in base units.
func (in *incomingLine) free() Units { return in.Quantity - in.Received - in.Backordered }

// setIncoming applies ERP incoming lines row by row: each applied, ignored as
// stale, or rejected on its own.
func (st *state) setIncoming(c *logv1.SetIncoming) Result {
	if r := checkIncomingLines(len(c.GetLines())); r != nil {
		return Result{Err: r}
	}
	cat := st.catalog.Load()
	rows := make([]RowResult, len(c.GetLines()))
	for i, row := range c.GetLines() {
		rows[i] = st.setIncomingRow(cat, i, row)
	}
	st.recordRejected(sourceSetIncoming, rows, func(i int) string { return c.GetLines()[i].GetPoLineId() }) // deadletter.go
	return Result{Rows: rows}
}

// checkIncomingLines bounds a SetIncoming batch: 1 to MaxRows lines.
func checkIncomingLines(n int) *Rejection {
	if n == 0 {
		return invalid("lines", "at least one line is required")
	}
	if n > MaxRows {
		return invalid("lines", "at most "+strconv.Itoa(MaxRows)+" lines, got "+strconv.Itoa(n))
	}
	return nil
}

// checkIncomingRow checks one row on its own: ids, a declared location, 0 <=
// received <= quantity, a version, an ETA that is not negative.
func checkIncomingRow(cat *catalog, i int, row *logv1.IncomingLine) *Rejection {
	f := func(name string) string { return indexed("lines", i, name) }
	if r := firstOf(checkID(f("po_line_id"), row.GetPoLineId()), checkID(f("item"), row.GetItem()),
		checkID(f("location"), row.GetLocation())); r != nil {
		return r
	}
	if _, ok := cat.locations[LocationID(row.GetLocation())]; !ok {
		return reject(ErrUnknownLocation, f("location"), "unknown location "+strconv.Quote(row.GetLocation()))
	}
	q, rcv := row.GetQuantityBaseUnits(), row.GetReceivedBaseUnits()
	switch {
	case q < 0:
		return invalid(f("quantity_base_units"), "must be >= 0, got "+strconv.FormatInt(q, 10))
	case rcv < 0:
		return invalid(f("received_base_units"), "must be >= 0, got "+strconv.FormatInt(rcv, 10))
	case rcv > q:
		return invalid(f("received_base_units"), "must not exceed quantity_base_units "+strconv.FormatInt(q, 10)+
			", got "+strconv.FormatInt(rcv, 10))
	case row.GetVersion() == 0:
		return invalid(f("version"), "must be > 0")
	case row.GetEtaUnixNanos() < 0:
		return invalid(f("eta_unix_nanos"), "must be >= 0, got "+strconv.FormatInt(row.GetEtaUnixNanos(), 10))
	}
	return nil
}

// setIncomingRow applies one row. A newer version replaces the line; when
// received rises, backorders waiting on the line move onto on-hand at its
// location. A row is rejected if it would leave less open on the line than
// backorders hold after the receipt, or move a line backorders wait on to
// another item or location.
func (st *state) setIncomingRow(cat *catalog, i int, row *logv1.IncomingLine) RowResult {
	if r := checkIncomingRow(cat, i, row); r != nil {
		return rejectedRow(r)
	}
	next := IncomingLine{
		POLine: row.GetPoLineId(), Item: ItemID(row.GetItem()), Location: cat.intern(LocationID(row.GetLocation())),
		Quantity: Units(row.GetQuantityBaseUnits()), Received: Units(row.GetReceivedBaseUnits()),
		ETA: Timestamp(row.GetEtaUnixNanos()), Version: row.GetVersion(),
	}
	in := st.incoming[next.POLine]
	st.noteItem(next.Item, "", next.Location) // changes.go; a stale row notes a no-op
	if in != nil && (in.Item != next.Item || in.Location != next.Location) {
		st.noteItem(in.Item, "", in.Location)
	}
	if in == nil {
		in = &incomingLine{IncomingLine: next}
		if st.incoming == nil {
			st.incoming = make(map[string]*incomingLine)
		}
		st.incoming[next.POLine] = in
		sh := st.shardFor(next.Item)
		sh.mu.Lock()
		sh.itemFor(next.Item).insertIncoming(in)
		sh.mu.Unlock()
		return RowResult{Status: RowApplied, Version: next.Version}
	}

	f := func(name string) string { return indexed("lines", i, name) }
	v := next.Version
	switch {
	case v < in.Version:
		return RowResult{Status: RowIgnoredStale, Version: in.Version, Reason: f("version") + ": " +
			strconv.FormatUint(v, 10) + " is older than the held version " + strconv.FormatUint(in.Version, 10)}
	case v == in.Version && sameIncoming(&in.IncomingLine, &next):
		return RowResult{Status: RowIgnoredStale, Version: in.Version, Reason: f("version") + ": version " +
			strconv.FormatUint(v, 10) + " already applied"}
	case v == in.Version:
		res := rejectedRow(invalid(f("version"), "version "+strconv.FormatUint(v, 10)+" already holds other figures for po line "+
			strconv.Quote(next.POLine)))
		res.Version = in.Version
		return res
	}
	if in.Backordered > 0 && next.Item != in.Item {
		return rejectedRow(invalid(f("item"), "po line "+strconv.Quote(next.POLine)+" has "+
			strconv.FormatInt(int64(in.Backordered), 10)+" units backordered on item "+strconv.Quote(string(in.Item))+
			"; its item cannot change while they wait"))
	}
	if in.Backordered > 0 && next.Location != in.Location {
		return rejectedRow(invalid(f("location"), "po line "+strconv.Quote(next.POLine)+" has "+
			strconv.FormatInt(int64(in.Backordered), 10)+" units backordered at location "+strconv.Quote(string(in.Location))+
			"; its location cannot change while they wait"))
	}
	var moved Units
	if next.Received > in.Received {
		moved = min(next.Received-in.Received, in.Backordered)
	}
	left := in.Backordered - moved
	if open := next.Quantity - next.Received; open < left {
		return rejectedRow(invalid(f("quantity_base_units"), "po line "+strconv.Quote(next.POLine)+" would have "+
			strconv.FormatInt(int64(open), 10)+" units open, below the "+strconv.FormatInt(int64(left), 10)+
			" units backorders hold on it"))
	}
	sh := st.shardFor(in.Item)
	if moved > 0 {
		// Every unit moved lands on one counter; refuse before anything moves
		// if it could overflow (reserved + committed is summed on reads).
		var promised Units
		if ct := st.item(in.Item).counterAt(in.Location); ct != nil {
			promised = ct.reserved + ct.committed
		}
		if _, ok := addUnits(promised, moved); !ok {
			return rejectedRow(reject(ErrOverflow, f("received_base_units"), "the counter's reserved and committed would overflow"))
		}
		reserved, committed := st.receive(in, moved)
		sh.mu.Lock()
		ct := sh.ensureCounter(cat, in.Item, in.Location)
		ct.reserved += reserved
		ct.committed += committed
		st.touch(in.Item, ct)
		sh.mu.Unlock()
	}
	if next.Item != in.Item {
		// Nothing waits on the line (checked above): move it between items.
		sh.mu.Lock()
		sh.items[in.Item].removeIncoming(in)
		sh.mu.Unlock()
		sh = st.shardFor(next.Item)
		sh.mu.Lock()
		in.IncomingLine = next
		sh.itemFor(next.Item).insertIncoming(in)
		sh.mu.Unlock()
		return RowResult{Status: RowApplied, Version: v}
	}
	sh.mu.Lock()
	is := sh.items[in.Item]
	resort := next.ETA != in.ETA
	if resort {
		is.removeIncoming(in)
	}
	next.Backordered = left
	in.IncomingLine = next
	if resort {
		is.insertIncoming(in)
	}
	sh.mu.Unlock()
	return RowResult{Status: RowApplied, Version: v}
}

// sameIncoming compares what the ERP sends of a line (not Backordered).
func sameIncoming(a, b *IncomingLine) bool {
	return a.POLine == b.POLine && a.Item == b.Item && a.Location == b.Location && a.Quantity == b.Quantity &&
		a.Received == b.Received && a.ETA == b.ETA && a.Version == b.Version
}

// receive moves n units waiting on the line onto on-hand at its location,
// oldest waiter first: confirmed orders in sequence order, then held
// reservations by (created at, channel, id). It returns what to add to the
// counter's reserved (holds) and committed (orders the ERP has not absorbed).
// It changes reservations and orders, not the line or the counter.
func (st *state) receive(in *incomingLine, n Units) (reserved, committed Units) {
	left := n
	keep := in.orders[:0]
	for _, o := range in.orders {
		if left > 0 {
			lines, took := receiveOrderLines(o.lines, in.POLine, left)
			st.omu.Lock() // outbox readers see order lines (outbox.go)
			o.lines = lines
			st.omu.Unlock()
			if !o.absorbed {
				committed += took
			}
			left -= took
		}
		if orderWaitsOn(o, in.POLine) {
			keep = append(keep, o)
		}
	}
	clear(in.orders[len(keep):])
	in.orders = keep

	holds := make([]*reservation, 0, len(in.holds))
	for _, k := range in.holds {
		if r := st.reservations[k]; r != nil && r.State == StateHeld && holdWaitsOn(&r.Reservation, in.POLine) {
			holds = append(holds, r)
		}
	}
	slices.SortFunc(holds, func(a, b *reservation) int {
		return cmp.Or(cmp.Compare(a.CreatedAt, b.CreatedAt), cmpKey(resKey{a.Channel, a.ID}, resKey{b.Channel, b.ID}))
	})
	holds = slices.CompactFunc(holds, func(a, b *reservation) bool { return a == b })
	in.holds = in.holds[:0]
	for _, r := range holds {
		if left > 0 {
			lines, took := receiveHoldLines(r.Lines, in.Item, in.POLine, in.Location, left)
			if took > 0 {
				st.holdEnded(r) // live-hold counts follow the allocations (catalog.go)
				st.lmu.Lock()
				r.Lines = lines
				st.lmu.Unlock()
				st.holdStarted(r)
			}
			reserved += took
			left -= took
		}
		if holdWaitsOn(&r.Reservation, in.POLine) {
			in.holds = append(in.holds, resKey{r.Channel, r.ID})
		}
	}
	return reserved, committed
}

// receiveHoldLines returns a copy of lines with up to n units of the
// backorder allocations on poLine moved onto on-hand allocations at loc, and
// how many moved. The input is not changed: snapshots share it.
func receiveHoldLines(lines []ReservationLine, item ItemID, poLine string, loc LocationID, n Units) ([]ReservationLine, Units) {
	var out []ReservationLine
	var took Units
	for i := range lines {
		if took == n {
			break
		}
		if lines[i].Item != item {
			continue
		}
		allocs, t := moveOntoOnHand(lines[i].Allocations, poLine, loc, n-took)
		if t == 0 {
			continue
		}
		if out == nil {
			out = slices.Clone(lines)
		}
		out[i].Allocations = allocs
		took += t
	}
	return out, took
}

// moveOntoOnHand returns a new allocation list with up to n units of the
// backorder allocations on poLine moved onto an on-hand allocation at loc
// (merged with one already there, else placed after the last on-hand one,
// so backorder allocations stay last), and how many moved. allocs is not
// changed.
func moveOntoOnHand(allocs []Allocation, poLine string, loc LocationID, n Units) ([]Allocation, Units) {
	var took Units
	for _, a := range allocs {
		if a.POLine == poLine {
			took += min(a.Quantity, n-took)
		}
	}
	if took == 0 {
		return allocs, 0
	}
	out := make([]Allocation, 0, len(allocs)+1)
	rest := took
	merged := false
	for _, a := range allocs {
		if a.POLine == poLine && rest > 0 {
			t := min(a.Quantity, rest)
			rest -= t
			if a.Quantity -= t; a.Quantity == 0 {
				continue
			}
		}
		if a.POLine == "" && a.Location == loc && !merged {
			a.Quantity += took
			merged = true
		}
		out = append(out, a)
	}
	if !merged {
		k := 0
		for k < len(out) && out[k].POLine == "" {
			k++
		}
		out = slices.Insert(out, k, Allocation{Location: loc, Quantity: took})
	}
	return out, took
}

// receiveOrderLines returns a new list with up to n units of the order lines
// waiting on poLine no longer waiting (merged into a line of the same item
// and location that does not wait, else appended), and how many moved.
func receiveOrderLines(lines []orderLine, poLine string, n Units) ([]orderLine, Units) {
	out := make([]orderLine, 0, len(lines)+1)
	var took Units
	var landed orderLine
	for _, l := range lines {
		if l.poLine == poLine && took < n {
			t := min(l.quantity, n-took)
			took += t
			landed = orderLine{item: l.item, location: l.location}
			if l.quantity -= t; l.quantity == 0 {
				continue
			}
		}
		out = append(out, l)
	}
	if took == 0 {
		return lines, 0
	}
	for j := range out {
		if out[j].poLine == "" && out[j].item == landed.item && out[j].location == landed.location {
			out[j].quantity += took
			return out, took
		}
	}
	landed.quantity = took
	return append(out, landed), took
}

func orderWaitsOn(o *order, poLine string) bool {
	for _, l := range o.lines {
		if l.poLine == poLine {
			return true
		}
	}
	return false
}

func holdWaitsOn(r *Reservation, poLine string) bool {
	for _, l := range r.Lines {
		for _, a := range l.Allocations {
			if a.POLine == poLine {
				return true
			}
		}
	}
	return false
}

// appendIncoming appends to dst what backorders of channel c may still take
// of the item's incoming lines at the channel's locations, in whole SKU units
// of factor, in (eta, po line) order, lines with nothing left skipped. It
// allocates only when dst lacks room. Caller holds the shard lock.
func (is *itemState) appendIncoming(dst []IncomingAvailability, c *Channel, factor Units) []IncomingAvailability {
	if is == nil || factor <= 0 {
		return dst
	}
	for _, in := range is.incomingLines() {
		if n := in.free() / factor; n > 0 && c.sees(in.Location) {
			dst = append(dst, IncomingAvailability{POLine: in.POLine, Location: in.Location, ETA: in.ETA, Available: n})
		}
	}
	return dst
}

// Incoming lists incoming lines sorted by po line id, of one item or (empty)
// all, with the units backorders hold on each. Safe from any goroutine; a
// listing of all items is not atomic across items.
func (m *Machine) Incoming(item ItemID) []IncomingLine {
	st := m.st.Load()
	var out []IncomingLine
	collect := func(is *itemState) {
		if is == nil {
			return
		}
		for _, in := range is.incomingLines() {
			out = append(out, in.IncomingLine)
		}
	}
	if item != "" {
		sh := st.shardFor(item)
		sh.mu.RLock()
		collect(sh.items[item])
		sh.mu.RUnlock()
	} else {
		for i := range st.shards {
			sh := &st.shards[i]
			sh.mu.RLock()
			for _, is := range sh.items {
				collect(is)
			}
			sh.mu.RUnlock()
		}
	}
	slices.SortFunc(out, func(a, b IncomingLine) int { return cmp.Compare(a.POLine, b.POLine) })
	return out
}

// incomingInUse refuses to retire a location while incoming lines there are
// open (quantity > received) or hold backorders.
func (st *state) incomingInUse(loc LocationID) *Rejection {
	n := 0
	for _, in := range st.incoming {
		if in.Location == loc && (in.Quantity > in.Received || in.Backordered > 0) {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return reject(ErrInUse, "id", "location "+strconv.Quote(string(loc))+" has "+strconv.Itoa(n)+" open incoming lines")
}

// dropIncomingAt forgets the closed incoming lines at a location being
// retired (incomingInUse found none open).
func (st *state) dropIncomingAt(loc LocationID) {
	for id, in := range st.incoming {
		if in.Location != loc {
			continue
		}
		sh := st.shardFor(in.Item)
		sh.mu.Lock()
		sh.items[in.Item].removeIncoming(in)
		sh.mu.Unlock()
		delete(st.incoming, id)
	}
}

// snapshotIncoming copies every incoming line, in map order. Apply
// goroutine only.
func (st *state) snapshotIncoming() []IncomingLine {
	out := make([]IncomingLine, 0, len(st.incoming))
	for _, in := range st.incoming {
		out = append(out, in.IncomingLine)
	}
	return out // Snapshot.sort sorts them by po line
}

// writeIncoming emits one IncomingRecord per line, in the given order.
func writeIncoming(w *recordWriter, lines []IncomingLine) {
	il := &logv1.IncomingLine{}
	ir := &logv1.IncomingRecord{Line: il}
	rec := &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Incoming{Incoming: ir}}
	for i := range lines {
		l := &lines[i]
		il.PoLineId, il.Item, il.Location = l.POLine, string(l.Item), string(l.Location)
		il.QuantityBaseUnits, il.ReceivedBaseUnits, il.EtaUnixNanos, il.Version = int64(l.Quantity), int64(l.Received), int64(l.ETA), l.Version
		ir.BackorderedBaseUnits = int64(l.Backordered)
		w.write(rec)
	}
}

// restoreIncoming decodes one IncomingRecord; they come after the locations.
func (st *state) restoreIncoming(cat *catalog, rec *logv1.IncomingRecord) error {
	l := rec.GetLine()
	in := &incomingLine{IncomingLine: IncomingLine{
		POLine: l.GetPoLineId(), Item: ItemID(l.GetItem()), Location: cat.intern(LocationID(l.GetLocation())),
		Quantity: Units(l.GetQuantityBaseUnits()), Received: Units(l.GetReceivedBaseUnits()), ETA: Timestamp(l.GetEtaUnixNanos()),
		Version: l.GetVersion(), Backordered: Units(rec.GetBackorderedBaseUnits()),
	}}
	switch {
	case in.POLine == "" || in.Item == "":
		return fmt.Errorf("incoming line %q of item %q: empty id", in.POLine, in.Item)
	case st.incoming[in.POLine] != nil:
		return fmt.Errorf("incoming line %q twice", in.POLine)
	case in.Version == 0 || in.ETA < 0:
		return fmt.Errorf("incoming line %q has version %d eta %d", in.POLine, in.Version, in.ETA)
	case in.Received < 0 || in.Received > in.Quantity || in.Backordered < 0 || in.Backordered > in.Quantity-in.Received:
		return fmt.Errorf("incoming line %q has quantity %d received %d backordered %d", in.POLine, in.Quantity, in.Received, in.Backordered)
	}
	if _, ok := cat.locations[in.Location]; !ok {
		return fmt.Errorf("incoming line %q names undeclared location %q", in.POLine, in.Location)
	}
	if st.incoming == nil {
		st.incoming = make(map[string]*incomingLine)
	}
	st.incoming[in.POLine] = in
	st.shardFor(in.Item).itemFor(in.Item).insertIncoming(in)
	return nil
}
