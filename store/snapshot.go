package store

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
)

// snapshotFormat is the record-stream format written in SnapshotMeta.
const snapshotFormat = 1

// Snapshot is a point-in-time copy of the machine at one applied index. It is
// taken on the apply goroutine as compact Go values, about the size of the
// state's counters, and encoded one record at a time when written, from any
// goroutine: a capture never holds one protobuf message per record.
//
// Apply waits while the capture copies, so the capture only copies: it walks
// the maps in their own order and sorts nothing. WriteRecords puts every list
// in key order (sort) before it writes the first record, on the writer's
// goroutine. At a million counters and 100,000 holds sorting took 0.6 of the
// capture's 0.8-1.0 s.
//
// What it shares with the live state is never changed once written: strings,
// the catalog (replaced whole on every change), a hold's lines and
// allocations (fixed when the hold is made), an order's lines, and the
// remembered requests, rows and rejections, rejected rows. Everything Apply
// changes in place (counters, buffer rules, a hold's state, an order's flags
// and outcome) is copied.
type Snapshot struct {
	index        Revision
	now          Timestamp
	nextOrderSeq uint64
	absorbedMark uint64
	nextPruneSeq uint64

	cat *catalog // a published catalog, never changed (catalog.go)

	// sorted is set once sort has put the lists below in key order.
	sorted   bool
	items    []snapItem     // sorted by id
	counters []counter      // each item's, sorted by location, at its snapItem.at
	buffers  []bufferRule   // each item's, sorted, at its snapItem.bufAt
	incoming []IncomingLine // sorted by po line id

	reservations []reservation    // in capture order
	resOrder     []int32          // reservations' indexes sorted by (channel, id)
	refusals     []refusal        // in capture order
	refOrder     []int32          // refusals' indexes sorted by (channel, id)
	deltas       []snapDelta      // sorted by delta id
	orders       []order          // in sequence order
	releaseAlls  []snapReleaseAll // sorted by (channel, release_all_id)

	rejectedRows   []RejectedRow    // the dead-letter list, oldest first
	rejectedCounts []RejectedCount  // sorted by reason
	backfill       *backfillStaging // the staged generation (backfill.go)
}

// snapDelta is one remembered adjustment of a Snapshot.
type snapDelta struct {
	id string
	d  delta
}

// snapReleaseAll is one remembered ReleaseAll of a Snapshot.
type snapReleaseAll struct {
	key resKey // (channel, release_all_id)
	rec releaseAll
}

// snapItem is one item of a Snapshot: its counters are
// Snapshot.counters[at:at+counters], its buffer rules
// Snapshot.buffers[bufAt:bufAt+buffers].
type snapItem struct {
	id                           ItemID
	at, counters, bufAt, buffers uint32
}

// Index is the applied index the snapshot reflects.
func (s *Snapshot) Index() Revision { return s.index }

// Snapshot captures the whole state, between two commands; Apply waits while
// it copies. Safe from any goroutine; the copy is independent of later applies.
func (m *Machine) Snapshot() *Snapshot {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	st := m.st.Load()
	s := &Snapshot{
		index: Revision(st.applied.Load()), now: Timestamp(st.now.Load()),
		nextOrderSeq: st.nextOrderSeq, absorbedMark: st.absorbedMark, nextPruneSeq: st.nextPruneSeq,
		cat: st.catalog.Load(),
	}

	// One walk over the items: each is a cache miss, so the counters are not
	// counted first; the last capture's count sizes the copy instead.
	nItems := 0
	for i := range st.shards {
		nItems += len(st.shards[i].items)
	}
	s.items = make([]snapItem, 0, nItems)
	s.counters = make([]counter, 0, max(m.lastCounters, nItems))
	for i := range st.shards {
		for id, is := range st.shards[i].items {
			s.items = append(s.items, snapItem{id: id,
				at: uint32(len(s.counters)), counters: uint32(len(is.counters)),
				bufAt: uint32(len(s.buffers)), buffers: uint32(len(is.bufferRules()))})
			s.counters = append(s.counters, is.counters...)
			s.buffers = append(s.buffers, is.bufferRules()...)
		}
	}
	m.lastCounters = len(s.counters)

	s.incoming = st.snapshotIncoming()

	s.reservations = make([]reservation, 0, len(st.reservations))
	for _, r := range st.reservations {
		s.reservations = append(s.reservations, *r)
	}
	s.refusals = make([]refusal, 0, len(st.refusals))
	for _, f := range st.refusals {
		s.refusals = append(s.refusals, *f)
	}
	s.deltas = make([]snapDelta, 0, len(st.deltas))
	for id, d := range st.deltas {
		s.deltas = append(s.deltas, snapDelta{id: id, d: *d})
	}
	s.orders = make([]order, len(st.orders))
	for i, o := range st.orders {
		s.orders[i] = *o
		s.orders[i].cancellation = nil // live state; the record holds cancels_seq
	}
	s.releaseAlls = make([]snapReleaseAll, 0, len(st.releaseAlls))
	for k, ra := range st.releaseAlls {
		s.releaseAlls = append(s.releaseAlls, snapReleaseAll{key: k, rec: *ra})
	}
	s.rejectedRows, s.rejectedCounts = st.deadLetters.ordered(), st.deadLetters.sortedCounts()
	s.backfill = copyBackfill(st.backfill) // backfill.go
	return s
}

// Sizes of the records a capture copies, for Footprint (store does not
// import unsafe; TestSnapshotRecordSizes checks them).
const (
	counterBytes     = 48
	bufferRuleBytes  = 40
	snapItemBytes    = 32
	reservationBytes = 160
	refusalBytes     = 96
	orderBytes       = 144
)

// Footprint is about how many bytes of memory the capture holds that the live
// state does not: the copies of its largest lists (what it shares, strings
// and lines, is not counted). A node's heap governor leaves it out of the
// live heap it gives headroom to (cmd/stockd/memory.go): the capture does not
// grow while it is written, and is dropped when written.
func (s *Snapshot) Footprint() int64 {
	return int64(cap(s.counters))*counterBytes + int64(cap(s.buffers))*bufferRuleBytes +
		int64(cap(s.items))*snapItemBytes + int64(cap(s.reservations))*reservationBytes +
		int64(cap(s.refusals))*refusalBytes + int64(cap(s.orders))*orderBytes
}

// sort puts the capture's lists in key order, once. Every key is unique, so
// the order, and with it the record stream, does not depend on the map order
// the capture met them in.
func (s *Snapshot) sort() {
	if s.sorted {
		return
	}
	s.sorted = true
	slices.SortFunc(s.items, func(a, b snapItem) int { return cmp.Compare(a.id, b.id) })
	slices.SortFunc(s.incoming, func(a, b IncomingLine) int { return cmp.Compare(a.POLine, b.POLine) })
	s.resOrder = sortedOrder(len(s.reservations), func(i, j int) int {
		a, b := &s.reservations[i], &s.reservations[j]
		return cmp.Or(cmp.Compare(a.Channel, b.Channel), cmp.Compare(a.ID, b.ID))
	})
	s.refOrder = sortedOrder(len(s.refusals), func(i, j int) int { return cmpKey(s.refusals[i].key, s.refusals[j].key) })
	slices.SortFunc(s.deltas, func(a, b snapDelta) int { return cmp.Compare(a.id, b.id) })
	slices.SortFunc(s.releaseAlls, func(a, b snapReleaseAll) int { return cmpKey(a.key, b.key) })
}

// sortedOrder returns the indexes 0..n-1 ordered by cmp: sorting them moves 4
// bytes an element where sorting the elements would move a whole record.
func sortedOrder(n int, cmp func(i, j int) int) []int32 {
	order := make([]int32, n)
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return cmp(int(a), int(b)) })
	return order
}

// WriteRecords emits the canonical record stream: each record a deterministic
// protobuf encoding of logv1.SnapshotRecord, in a fixed kind order and sorted
// by key within each kind. Equal states emit equal streams. rec is valid only
// until emit returns: the buffer is reused for the next record. Safe from any
// goroutine, concurrently with Apply; not from two goroutines on one Snapshot.
func (s *Snapshot) WriteRecords(emit func(rec []byte) error) error {
	s.sort()
	w := recordWriter{opts: proto.MarshalOptions{Deterministic: true}, emit: emit}

	w.write(&logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Meta{Meta: &logv1.SnapshotMeta{
		AppliedIndex: uint64(s.index), TimeUnixNanos: int64(s.now), NextOrderSeq: s.nextOrderSeq,
		AbsorbedMark: s.absorbedMark, NextPruneSeq: s.nextPruneSeq, Format: snapshotFormat,
	}}})

	// One message per kind, refilled for every record: every field a record
	// of that kind sets is set again each time, so no value leaks from one
	// record into the next.
	nr := &logv1.NodeRecord{}
	rec := &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Node{Node: nr}}
	for _, id := range slices.Sorted(maps.Keys(s.cat.nodes)) {
		n := s.cat.nodes[id]
		nr.Id, nr.RaftAddr, nr.GrpcAddr, nr.FeatureVersion = n.ID, n.RaftAddr, n.GRPCAddr, n.FeatureVersion
		w.write(rec)
	}
	lr := &logv1.LocationRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Location{Location: lr}}
	for _, id := range slices.Sorted(maps.Keys(s.cat.locations)) {
		lr.Id, lr.Name = string(id), s.cat.locations[id].Name
		w.write(rec)
	}
	// Groups before channels: a channel on a group is written without
	// locations and restored with the group's.
	gr := &logv1.LocationGroupRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_LocationGroup{LocationGroup: gr}}
	for _, id := range slices.Sorted(maps.Keys(s.cat.groups)) {
		g := s.cat.groups[id]
		gr.Id, gr.ModRevision = g.ID, uint64(g.modRev)
		gr.Locations = gr.Locations[:0]
		for _, l := range g.Locations {
			gr.Locations = append(gr.Locations, string(l))
		}
		w.write(rec)
	}
	cr := &logv1.ChannelRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Channel{Channel: cr}}
	for _, id := range slices.Sorted(maps.Keys(s.cat.channels)) {
		c := s.cat.channels[id]
		cr.Id, cr.DefaultBufferBaseUnits = string(c.ID), int64(c.DefaultBuffer)
		cr.LocationGroup, cr.RequireSkuMapping, cr.ModRevision = c.LocationGroup, c.RequireSKUMapping, uint64(s.cat.channelRevs[id])
		cr.Locations = cr.Locations[:0]
		if c.LocationGroup == "" {
			for _, l := range c.Locations {
				cr.Locations = append(cr.Locations, string(l))
			}
		}
		w.write(rec)
	}
	kr := &logv1.SkuRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Sku{Sku: kr}}
	for _, sku := range slices.Sorted(maps.Keys(s.cat.skus)) {
		m := s.cat.skus[sku]
		kr.Sku, kr.Item, kr.Factor, kr.ModRevision = string(sku), string(m.item), int64(m.factor), uint64(m.modRev)
		w.write(rec)
	}

	br := &logv1.BufferRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Buffer{Buffer: br}}
	for i := range s.items {
		it := &s.items[i]
		for _, b := range s.buffers[it.bufAt : it.bufAt+it.buffers] {
			br.Item, br.Channel, br.Location, br.BufferBaseUnits = string(it.id), string(b.channel), string(b.location), int64(b.units)
			w.write(rec)
		}
	}
	ctr := &logv1.CounterRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Counter{Counter: ctr}}
	for i := range s.items {
		it := &s.items[i]
		for j := it.at; j < it.at+it.counters; j++ {
			c := &s.counters[j]
			ctr.Item, ctr.Location, ctr.OnHandBaseUnits = string(it.id), string(c.location()), int64(c.onHand)
			ctr.ReservedBaseUnits, ctr.CommittedBaseUnits, ctr.Version = int64(c.reserved), int64(c.committed), c.version
			ctr.ModRevision = uint64(c.modRev)
			w.write(rec)
		}
	}

	writeIncoming(&w, s.incoming)

	rr := &logv1.ReservationRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Reservation{Reservation: rr}}
	request := &logv1.Reserve{} // scratch for remembered requests (request.go)
	for _, i := range s.resOrder {
		fillReservationRecord(rr, &s.reservations[i], request)
		w.write(rec)
	}
	fr := &logv1.RefusalRecord{Rejection: &logv1.Rejection{}}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Refusal{Refusal: fr}}
	for _, i := range s.refOrder {
		f := &s.refusals[i]
		fr.Request, fr.PruneSeq, fr.PrunableUnixNanos = f.request.record(f.key, f.rawRequest, request), f.pruneSeq, int64(f.prunableAt)
		fillRejection(fr.Rejection, f.rejection)
		w.write(rec)
	}
	dr := &logv1.DeltaRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Delta{Delta: dr}}
	for i := range s.deltas {
		d := &s.deltas[i].d
		dr.Row, dr.Status, dr.Reason, dr.Version = d.row, uint32(d.result.Status), d.result.Reason, d.result.Version
		dr.OnHandBaseUnits, dr.PruneSeq, dr.PrunableUnixNanos = int64(d.result.OnHand), d.pruneSeq, int64(d.prunableAt)
		w.write(rec)
	}
	writeOrders(&w, s.orders) // outbox.go
	rar := &logv1.ReleaseAllRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_ReleaseAll{ReleaseAll: rar}}
	for i := range s.releaseAlls {
		ra := &s.releaseAlls[i]
		rar.Channel, rar.ReleaseAllId, rar.Released = string(ra.key.channel), string(ra.key.id), ra.rec.released
		rar.PruneSeq, rar.PrunableUnixNanos = ra.rec.pruneSeq, int64(ra.rec.prunableAt)
		w.write(rec)
	}
	writeDeadLetters(&w, s.rejectedRows, s.rejectedCounts) // deadletter.go
	writeBackfill(&w, s.backfill)                          // backfill.go
	return w.err
}

// recordWriter marshals records into one reused buffer and hands them to
// emit; after the first error it writes nothing more.
type recordWriter struct {
	opts proto.MarshalOptions
	emit func(rec []byte) error
	buf  []byte
	err  error
}

func (w *recordWriter) write(rec *logv1.SnapshotRecord) {
	if w.err != nil {
		return
	}
	b, err := w.opts.MarshalAppend(w.buf[:0], rec)
	if err != nil {
		w.err = fmt.Errorf("encode snapshot record: %w", err)
		return
	}
	w.buf = b
	w.err = w.emit(b)
}

// reuseMessages returns s with length n, keeping the messages already
// allocated within its capacity and allocating the missing ones. The caller
// sets every field of each.
func reuseMessages[T any](s []*T, n int) []*T {
	if cap(s) < n {
		s = slices.Grow(s[:cap(s)], n-cap(s))
	}
	s = s[:n]
	for i := range s {
		if s[i] == nil {
			s[i] = new(T)
		}
	}
	return s
}

// Digest is SHA-256 over the record stream, each record prefixed by its
// length as a uvarint.
func (s *Snapshot) Digest() ([32]byte, error) {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	err := s.WriteRecords(func(rec []byte) error {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(rec)))])
		h.Write(rec)
		return nil
	})
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, err
}

// Digest is the digest of a snapshot taken now. Safe from any goroutine.
func (m *Machine) Digest() ([32]byte, error) { return m.Snapshot().Digest() }

func reservationRecord(r *reservation) *logv1.ReservationRecord {
	rec := &logv1.ReservationRecord{}
	fillReservationRecord(rec, r, &logv1.Reserve{})
	return rec
}

// fillReservationRecord sets every field of rec from r, reusing rec's line
// and allocation messages; the request is written into scratch (see
// reserveRequest.record) unless kept whole.
func fillReservationRecord(rec *logv1.ReservationRecord, r *reservation, scratch *logv1.Reserve) {
	lines := r.lines() // packed.go
	rq := unpackRequest(r.req, lines)
	rec.Request = rq.record(resKey{r.Channel, r.ID}, r.rawRequest(), scratch)
	fillLines(rec, lines)
	rec.Channel, rec.ReservationId, rec.State = string(r.Channel), string(r.ID), uint32(r.State)
	rec.CreatedUnixNanos, rec.ExpiresUnixNanos, rec.OrderRef, rec.OrderSeq = int64(r.CreatedAt), int64(r.ExpiresAt), r.OrderRef, r.OrderSeq
	rec.PruneSeq, rec.PrunableUnixNanos = r.pruneSeq, int64(r.prunableAt)
	ops := r.holdOps()
	rec.Ops = reuseMessages(rec.Ops, len(ops))
	for i := range ops {
		op, or := &ops[i], rec.Ops[i]
		or.Kind, or.Id, or.TtlNanos, or.Lines, or.ExpiresUnixNanos = uint32(op.kind), op.id, op.ttlNanos, op.lines, int64(op.expiresAt)
	}
}

func rejectionRecord(r *Rejection) *logv1.Rejection {
	rec := &logv1.Rejection{}
	fillRejection(rec, r)
	return rec
}

func fillRejection(rec *logv1.Rejection, r *Rejection) {
	rec.Kind, rec.Field, rec.Reason = kindOf(r), r.Field, r.Reason
	rec.RequestedBaseUnits, rec.AvailableBaseUnits = int64(r.Requested), int64(r.Available)
	rec.ModRevision, rec.AvailableSkuUnits = uint64(r.ModRevision), int64(r.AvailableSKU)
}
