package store

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
)

// ErrCorruptSnapshot: a snapshot stream failed to decode or broke an invariant.
var ErrCorruptSnapshot = errors.New("corrupt snapshot")

// Restore replaces the state with the one a record stream describes. next
// returns one record at a time and io.EOF after the last. The stream is
// decoded into fresh state and its invariants checked (reserved equals the
// live holds, committed equals the orders neither absorbed, cancelled nor
// refused, the outbox and dead-letter list consistent, ids unique); only then
// is it swapped in. On error the machine is unchanged. Call it on the apply
// goroutine.
func (m *Machine) Restore(next func() ([]byte, error)) error {
	st, err := decodeState(next)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	m.applyMu.Lock()
	st.changes = &m.changes
	st.stats = m.stats
	m.changes.reset(Revision(st.applied.Load())) // changes.go: nothing before is known
	m.st.Store(st)
	m.applyMu.Unlock()
	return nil
}

func decodeState(next func() ([]byte, error)) (*state, error) {
	st := newState()
	cat := emptyCatalog()
	var queue []pruneItem
	var run counterRun
	sawMeta := false
	for n := 0; ; n++ {
		b, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if f, ok := decodeCounterRecord(b); ok && sawMeta {
			if err := st.restoreCounter(cat, &run, &f); err != nil {
				return nil, fmt.Errorf("%w: record %d: %w", ErrCorruptSnapshot, n, err)
			}
			continue
		}
		var rec logv1.SnapshotRecord
		if err := proto.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("%w: record %d: %w", ErrCorruptSnapshot, n, err)
		}
		if _, isMeta := rec.GetKind().(*logv1.SnapshotRecord_Meta); isMeta == sawMeta {
			return nil, fmt.Errorf("%w: record %d: the meta record must come first, once", ErrCorruptSnapshot, n)
		}
		if err := st.restoreRecord(cat, &rec, &queue, &run); err != nil {
			return nil, fmt.Errorf("%w: record %d: %w", ErrCorruptSnapshot, n, err)
		}
		sawMeta = true
	}
	run.flush()
	if !sawMeta {
		return nil, fmt.Errorf("%w: no meta record", ErrCorruptSnapshot)
	}
	st.catalog.Store(cat)
	if n := len(st.orders); n > 0 && st.orders[n-1].seq >= st.nextOrderSeq {
		return nil, fmt.Errorf("%w: order %d is not before next_order_seq %d", ErrCorruptSnapshot, st.orders[n-1].seq, st.nextOrderSeq)
	}
	if st.nextOrderSeq == 0 || st.nextPruneSeq == 0 {
		return nil, fmt.Errorf("%w: next_order_seq and next_prune_seq start at 1", ErrCorruptSnapshot)
	}
	for _, it := range queue {
		if it.seq == 0 || it.seq >= st.nextPruneSeq {
			return nil, fmt.Errorf("%w: prune seq %d outside [1, next_prune_seq %d)", ErrCorruptSnapshot, it.seq, st.nextPruneSeq)
		}
	}
	slices.SortFunc(queue, func(a, b pruneItem) int { return cmp.Compare(a.seq, b.seq) })
	for i := 1; i < len(queue); i++ {
		if queue[i].seq == queue[i-1].seq {
			return nil, fmt.Errorf("%w: prune seq %d used twice", ErrCorruptSnapshot, queue[i].seq)
		}
	}
	st.pruneQueue = queue
	st.restoreOutbox() // outbox.go
	if err := st.checkDeadLetters(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptSnapshot, err)
	}
	if err := st.checkInvariants(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptSnapshot, err)
	}
	st.countLiveHolds() // catalog.go
	if err := st.checkBackorders(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptSnapshot, err)
	}
	for _, r := range st.reservations {
		r.pack() // a finished hold costs what it did before the restart (packed.go)
	}
	st.settleDeadline()
	return st, nil
}

func (st *state) restoreRecord(cat *catalog, rec *logv1.SnapshotRecord, queue *[]pruneItem, run *counterRun) error {
	if _, ok := rec.GetKind().(*logv1.SnapshotRecord_Counter); !ok {
		run.flush() // the counters are all in place before anything else reads them
	}
	switch k := rec.GetKind().(type) {
	case *logv1.SnapshotRecord_Meta:
		m := k.Meta
		if m.GetFormat() != snapshotFormat {
			return fmt.Errorf("snapshot format %d, this build reads %d", m.GetFormat(), snapshotFormat)
		}
		st.applied.Store(m.GetAppliedIndex())
		st.now.Store(m.GetTimeUnixNanos())
		st.nextOrderSeq, st.absorbedMark, st.nextPruneSeq = m.GetNextOrderSeq(), m.GetAbsorbedMark(), m.GetNextPruneSeq()
	case *logv1.SnapshotRecord_Node:
		n := k.Node
		if _, dup := cat.nodes[n.GetId()]; dup {
			return fmt.Errorf("node %q twice", n.GetId())
		}
		cat.nodes[n.GetId()] = Node{ID: n.GetId(), RaftAddr: n.GetRaftAddr(), GRPCAddr: n.GetGrpcAddr(), FeatureVersion: n.GetFeatureVersion()}
	case *logv1.SnapshotRecord_Location:
		id := LocationID(k.Location.GetId())
		if _, dup := cat.locations[id]; dup {
			return fmt.Errorf("location %q twice", id)
		}
		cat.locations[id] = Location{ID: id, Name: k.Location.GetName()}
	case *logv1.SnapshotRecord_Channel:
		return st.restoreChannel(cat, k.Channel) // catalog.go
	case *logv1.SnapshotRecord_LocationGroup:
		return st.restoreLocationGroup(cat, k.LocationGroup)
	case *logv1.SnapshotRecord_Sku:
		return st.restoreSKU(cat, k.Sku)
	case *logv1.SnapshotRecord_Buffer:
		b := k.Buffer
		sh := st.shardFor(ItemID(b.GetItem()))
		is := sh.items[ItemID(b.GetItem())]
		if is == nil {
			is = &itemState{}
			sh.items[ItemID(b.GetItem())] = is
		}
		rule := bufferRule{channel: ChannelID(b.GetChannel()), location: LocationID(b.GetLocation()), units: Units(b.GetBufferBaseUnits())}
		if err := cat.checkBufferTarget(rule); err != nil {
			return err
		}
		if rule.units <= 0 {
			return fmt.Errorf("buffer of item %q is %d, want > 0", b.GetItem(), rule.units)
		}
		if n := len(is.bufferRules()); n > 0 && cmpRule(is.bufferRules()[n-1], rule) >= 0 {
			return fmt.Errorf("buffer rules of item %q out of order", b.GetItem())
		}
		is.setBuffers(append(is.bufferRules(), rule))
	case *logv1.SnapshotRecord_Counter:
		c := k.Counter
		return st.restoreCounter(cat, run, &counterFields{item: []byte(c.GetItem()), location: []byte(c.GetLocation()),
			onHand: c.GetOnHandBaseUnits(), reserved: c.GetReservedBaseUnits(), committed: c.GetCommittedBaseUnits(),
			version: c.GetVersion(), modRev: c.GetModRevision()})
	case *logv1.SnapshotRecord_Incoming:
		return st.restoreIncoming(cat, k.Incoming)
	case *logv1.SnapshotRecord_Reservation:
		r := reservationFromRecord(k.Reservation)
		cat.shareStrings(r) // request.go
		key := resKey{r.Channel, r.ID}
		if _, dup := st.reservations[key]; dup {
			return fmt.Errorf("reservation %q/%q twice", key.channel, key.id)
		}
		if r.State < StateHeld || r.State > StateCancelled {
			return fmt.Errorf("reservation %q/%q has state %d", key.channel, key.id, r.State)
		}
		for _, op := range k.Reservation.GetOps() {
			if op.GetKind() != uint32(opExtend) && op.GetKind() != uint32(opRelease) {
				return fmt.Errorf("reservation %q/%q has an op of kind %d", key.channel, key.id, op.GetKind())
			}
		}
		st.reservations[key] = r
		if r.State == StateHeld {
			heap.Push(&st.deadlines, deadlineItem{at: r.ExpiresAt, key: key})
		} else {
			*queue = append(*queue, pruneItem{seq: r.pruneSeq, at: r.prunableAt, kind: pruneReservation, key: key})
		}
	case *logv1.SnapshotRecord_Refusal:
		f := k.Refusal
		key := resKey{ChannelID(f.GetRequest().GetChannel()), ReservationID(f.GetRequest().GetReservationId())}
		if _, dup := st.refusals[key]; dup {
			return fmt.Errorf("refusal %q/%q twice", key.channel, key.id)
		}
		rf := &refusal{key: key, rejection: rejectionFromRecord(f.GetRejection()),
			pruneSeq: f.GetPruneSeq(), prunableAt: Timestamp(f.GetPrunableUnixNanos())}
		rf.request, rf.rawRequest = newReserveRequest(cat, key, f.GetRequest()) // request.go
		st.refusals[key] = rf
		*queue = append(*queue, pruneItem{seq: f.GetPruneSeq(), at: Timestamp(f.GetPrunableUnixNanos()), kind: pruneRefusal, key: key})
	case *logv1.SnapshotRecord_Delta:
		d := k.Delta
		id := d.GetRow().GetDeltaId()
		if _, dup := st.deltas[id]; dup {
			return fmt.Errorf("delta %q twice", id)
		}
		st.deltas[id] = &delta{row: d.GetRow(), result: RowResult{Status: RowStatus(d.GetStatus()), Reason: d.GetReason(),
			Version: d.GetVersion(), OnHand: Units(d.GetOnHandBaseUnits())}, pruneSeq: d.GetPruneSeq(), prunableAt: Timestamp(d.GetPrunableUnixNanos())}
		*queue = append(*queue, pruneItem{seq: d.GetPruneSeq(), at: Timestamp(d.GetPrunableUnixNanos()), kind: pruneDelta, deltaID: id})
	case *logv1.SnapshotRecord_Order:
		return st.restoreOrder(k.Order) // outbox.go
	case *logv1.SnapshotRecord_RejectedRow:
		return st.restoreRejectedRow(k.RejectedRow) // deadletter.go
	case *logv1.SnapshotRecord_RejectedCount:
		return st.restoreRejectedCount(k.RejectedCount)
	case *logv1.SnapshotRecord_BackfillStaging:
		return st.restoreBackfill(k.BackfillStaging) // backfill.go
	case *logv1.SnapshotRecord_ReleaseAll:
		ra := k.ReleaseAll
		key := resKey{ChannelID(ra.GetChannel()), ReservationID(ra.GetReleaseAllId())}
		if _, dup := st.releaseAlls[key]; dup {
			return fmt.Errorf("release all %q/%q twice", key.channel, key.id)
		}
		st.releaseAlls[key] = &releaseAll{released: ra.GetReleased(), pruneSeq: ra.GetPruneSeq(), prunableAt: Timestamp(ra.GetPrunableUnixNanos())}
		*queue = append(*queue, pruneItem{seq: ra.GetPruneSeq(), at: Timestamp(ra.GetPrunableUnixNanos()), kind: pruneReleaseAll, key: key})
	default:
		return fmt.Errorf("unknown record kind %T", rec.GetKind())
	}
	return nil
}

// checkInvariants verifies what every applied log keeps true: reserved is the
// sum of live holds and committed the sum of orders that are not absorbed,
// cancelled or refused, per counter; no counter's reserved or committed is negative.
func (st *state) checkInvariants() error {
	reserved := map[counterKey]Units{}
	for _, r := range st.reservations {
		if r.State != StateHeld {
			continue
		}
		for _, l := range r.Lines {
			for _, a := range l.Allocations {
				if a.POLine == "" { // a backorder is not reserved (checkBackorders)
					reserved[counterKey{l.Item, a.Location}] += a.Quantity
				}
			}
		}
	}
	committed := map[counterKey]Units{}
	for _, o := range st.orders {
		if !o.holdsCommitted() { // absorbed, cancelled, refused, or a cancellation
			continue
		}
		for _, l := range o.lines {
			if l.poLine == "" { // a waiting line is not committed (checkBackorders)
				committed[counterKey{l.item, l.location}] += l.quantity
			}
		}
	}
	// A million counters are checked with plain loads, not two map lookups
	// each: count those that hold units, then match every sum against its
	// counter. Only when the counts differ are the counters walked again to
	// name the ones no hold or order accounts for.
	var problems []string
	var nReserved, nCommitted int
	for i := range st.shards {
		for id, is := range st.shards[i].items {
			for _, c := range is.counters {
				if c.reserved < 0 || c.committed < 0 {
					problems = append(problems, fmt.Sprintf("counter %s@%s has reserved %d committed %d", id, c.location(), c.reserved, c.committed))
				}
				if c.reserved != 0 {
					nReserved++
				}
				if c.committed != 0 {
					nCommitted++
				}
			}
		}
	}
	match := func(sums map[counterKey]Units, what string, field func(*counter) Units, of string, want int) {
		matched := 0
		for k, q := range sums {
			c := st.item(k.item).counterAt(k.location)
			switch {
			case c == nil:
				problems = append(problems, fmt.Sprintf("%s of %d at %s@%s have no counter", of, q, k.item, k.location))
			case field(c) != q:
				problems = append(problems, fmt.Sprintf("counter %s@%s %s %d, %s %d", k.item, k.location, what, field(c), of, q))
			case q != 0:
				matched++
			}
		}
		if matched == want {
			return
		}
		for i := range st.shards {
			for id, is := range st.shards[i].items {
				for j := range is.counters {
					c := &is.counters[j]
					if _, ok := sums[counterKey{id, c.location()}]; !ok && field(c) != 0 {
						problems = append(problems, fmt.Sprintf("counter %s@%s %s %d, %s 0", id, c.location(), what, field(c), of))
					}
				}
			}
		}
	}
	match(reserved, "reserved", func(c *counter) Units { return c.reserved }, "live holds", nReserved)
	match(committed, "committed", func(c *counter) Units { return c.committed }, "unabsorbed orders", nCommitted)
	if len(problems) > 0 {
		slices.Sort(problems)
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// restoreCounter restores one counter record, decoded by decodeCounterRecord
// or from its message.
func (st *state) restoreCounter(cat *catalog, run *counterRun, f *counterFields) error {
	if run.is == nil || string(f.item) != string(run.item) {
		run.flush()
		item := ItemID(f.item)
		sh := st.shardFor(item)
		is := sh.items[item]
		if is == nil {
			is = &itemState{}
			sh.items[item] = is
		}
		run.item, run.is, run.sh = item, is, sh
	}
	if last, ok := run.last(); ok && last >= LocationID(f.location) {
		return fmt.Errorf("counters of item %q out of order", run.item)
	}
	loc, ok := cat.locations[LocationID(f.location)]
	if !ok {
		return fmt.Errorf("counter %s@%s is at an undeclared location", f.item, f.location)
	}
	if err := st.checkRev(f.modRev, func() string { return "counter " + string(f.item) + "@" + string(f.location) }); err != nil {
		return err
	}
	run.counters = append(run.counters, counter{loc: run.sh.locationRef(cat, loc.ID), onHand: Units(f.onHand),
		reserved: Units(f.reserved), committed: Units(f.committed), version: f.version, modRev: Revision(f.modRev)})
	return nil
}

// counterRun gathers the counters of the item being restored. A snapshot
// writes an item's counters one after another, so each item costs one map
// lookup and gets its slice at its exact size once, not one lookup and one
// slice per counter.
type counterRun struct {
	item     ItemID
	is       *itemState // nil when no item is being gathered
	sh       *shard
	counters []counter // the item's counters not yet in is; reused
}

// last is the location of the item's last counter so far.
func (r *counterRun) last() (LocationID, bool) {
	if n := len(r.counters); n > 0 {
		return r.counters[n-1].location(), true
	}
	if n := len(r.is.counters); n > 0 {
		return r.is.counters[n-1].location(), true
	}
	return "", false
}

// flush puts the gathered counters after the item's own, at exact size.
func (r *counterRun) flush() {
	if r.is == nil {
		return
	}
	if len(r.counters) > 0 {
		all := make([]counter, len(r.is.counters)+len(r.counters))
		copy(all[copy(all, r.is.counters):], r.counters)
		r.is.counters = all
	}
	r.counters, r.is, r.sh, r.item = r.counters[:0], nil, nil, ""
}

func reservationFromRecord(rec *logv1.ReservationRecord) *reservation {
	r := &reservation{
		Reservation: Reservation{
			Channel: ChannelID(rec.GetChannel()), ID: ReservationID(rec.GetReservationId()), State: ReservationState(rec.GetState()),
			CreatedAt: Timestamp(rec.GetCreatedUnixNanos()), ExpiresAt: Timestamp(rec.GetExpiresUnixNanos()),
			OrderRef: rec.GetOrderRef(), OrderSeq: rec.GetOrderSeq(),
		},
		pruneSeq: rec.GetPruneSeq(), prunableAt: Timestamp(rec.GetPrunableUnixNanos()),
	}
	r.Lines = linesFromRecords(rec.GetLines()) // packed.go
	key := resKey{r.Channel, r.ID}
	rq, raw := newReserveRequest(nil, key, rec.GetRequest())
	ownStrings(&key, r, &rq) // r.req is rq packed (packed.go)
	var ops []holdOp
	for _, op := range rec.GetOps() {
		ops = append(ops, holdOp{kind: opKind(op.GetKind()), id: op.GetId(), ttlNanos: op.GetTtlNanos(),
			lines: op.GetLines(), expiresAt: Timestamp(op.GetExpiresUnixNanos())})
	}
	if raw != nil || ops != nil {
		r.more = &reservationMore{ops: ops, rawRequest: raw}
	}
	return r
}

func rejectionFromRecord(rec *logv1.Rejection) *Rejection {
	return &Rejection{Kind: sentinelOf(rec.GetKind()), Field: rec.GetField(), Reason: rec.GetReason(),
		Requested: Units(rec.GetRequestedBaseUnits()), Available: Units(rec.GetAvailableBaseUnits()),
		ModRevision: Revision(rec.GetModRevision()), AvailableSKU: Units(rec.GetAvailableSkuUnits())}
}
