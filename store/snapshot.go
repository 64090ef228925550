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
// What it shares with the live state is never changed once written: strings,
// the catalog's channels (the catalog is replaced whole), a hold's lines and
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

	nodes       []Node           // sorted by id
	locations   []Location       // sorted by id
	groups      []*locationGroup // sorted by id
	channels    []*Channel       // sorted by id
	channelRevs []Revision       // in channels order
	skus        []snapSKU        // sorted by SKU, tombstones included

	items    []snapItem     // sorted by id
	counters []counter      // every item's counters, in items order, each item's sorted by location
	buffers  []bufferRule   // every item's buffer rules, in items order, each item's sorted
	incoming []IncomingLine // sorted by po line id

	reservations []reservation    // sorted by (channel, id)
	refusals     []refusal        // sorted by (channel, id)
	deltaIDs     []string         // sorted
	deltas       []delta          // in deltaIDs order
	orders       []order          // in sequence order
	releaseAlls  []snapReleaseAll // sorted by (channel, release_all_id)

	rejectedRows   []RejectedRow    // the dead-letter list, oldest first
	rejectedCounts []RejectedCount  // sorted by reason
	backfill       *backfillStaging // the staged generation (backfill.go)
}

// snapReleaseAll is one remembered ReleaseAll of a Snapshot.
type snapReleaseAll struct {
	key resKey // (channel, release_all_id)
	rec releaseAll
}

// snapSKU is one SKU mapping (or tombstone) of a Snapshot.
type snapSKU struct {
	sku SKU
	m   skuMapping
}

// snapItem is one item of a Snapshot: how many of Snapshot.counters and
// Snapshot.buffers, taken in order, are its own.
type snapItem struct {
	id       ItemID
	counters uint32
	buffers  uint32
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
	}
	cat := st.catalog.Load()
	for _, id := range slices.Sorted(maps.Keys(cat.nodes)) {
		s.nodes = append(s.nodes, cat.nodes[id])
	}
	for _, id := range slices.Sorted(maps.Keys(cat.locations)) {
		s.locations = append(s.locations, cat.locations[id])
	}
	for _, id := range slices.Sorted(maps.Keys(cat.groups)) {
		s.groups = append(s.groups, cat.groups[id])
	}
	for _, id := range slices.Sorted(maps.Keys(cat.channels)) {
		s.channels = append(s.channels, cat.channels[id])
		s.channelRevs = append(s.channelRevs, cat.channelRevs[id])
	}
	for _, sku := range slices.Sorted(maps.Keys(cat.skus)) {
		s.skus = append(s.skus, snapSKU{sku: sku, m: cat.skus[sku]})
	}

	nItems, nCounters, nBuffers := 0, 0, 0
	for i := range st.shards {
		nItems += len(st.shards[i].items)
		for _, is := range st.shards[i].items {
			nCounters += len(is.counters)
			nBuffers += len(is.bufferRules())
		}
	}
	s.items = make([]snapItem, 0, nItems)
	for i := range st.shards {
		for id := range st.shards[i].items {
			s.items = append(s.items, snapItem{id: id})
		}
	}
	slices.SortFunc(s.items, func(a, b snapItem) int { return cmp.Compare(a.id, b.id) })
	s.counters = make([]counter, 0, nCounters)
	if nBuffers > 0 {
		s.buffers = make([]bufferRule, 0, nBuffers)
	}
	for i := range s.items {
		is := st.item(s.items[i].id)
		s.items[i].counters, s.items[i].buffers = uint32(len(is.counters)), uint32(len(is.bufferRules()))
		s.counters = append(s.counters, is.counters...)
		s.buffers = append(s.buffers, is.bufferRules()...)
	}

	s.incoming = st.snapshotIncoming()

	keys := slices.SortedFunc(maps.Keys(st.reservations), cmpKey)
	s.reservations = make([]reservation, len(keys))
	for i, k := range keys {
		s.reservations[i] = *st.reservations[k]
	}
	keys = slices.SortedFunc(maps.Keys(st.refusals), cmpKey)
	s.refusals = make([]refusal, len(keys))
	for i, k := range keys {
		s.refusals[i] = *st.refusals[k]
	}
	s.deltaIDs = slices.Sorted(maps.Keys(st.deltas))
	s.deltas = make([]delta, len(s.deltaIDs))
	for i, id := range s.deltaIDs {
		s.deltas[i] = *st.deltas[id]
	}
	s.orders = make([]order, len(st.orders))
	for i, o := range st.orders {
		s.orders[i] = *o
		s.orders[i].cancellation = nil // live state; the record holds cancels_seq
	}
	keys = slices.SortedFunc(maps.Keys(st.releaseAlls), cmpKey)
	s.releaseAlls = make([]snapReleaseAll, len(keys))
	for i, k := range keys {
		s.releaseAlls[i] = snapReleaseAll{key: k, rec: *st.releaseAlls[k]}
	}
	s.rejectedRows, s.rejectedCounts = st.deadLetters.ordered(), st.deadLetters.sortedCounts()
	s.backfill = copyBackfill(st.backfill) // backfill.go
	return s
}

// WriteRecords emits the canonical record stream: each record a deterministic
// protobuf encoding of logv1.SnapshotRecord, in a fixed kind order and sorted
// by key within each kind. Equal states emit equal streams. rec is valid only
// until emit returns: the buffer is reused for the next record. Safe from any
// goroutine, concurrently with Apply; not from two goroutines on one Snapshot.
func (s *Snapshot) WriteRecords(emit func(rec []byte) error) error {
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
	for i := range s.nodes {
		n := &s.nodes[i]
		nr.Id, nr.RaftAddr, nr.GrpcAddr, nr.FeatureVersion = n.ID, n.RaftAddr, n.GRPCAddr, n.FeatureVersion
		w.write(rec)
	}
	lr := &logv1.LocationRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Location{Location: lr}}
	for i := range s.locations {
		lr.Id, lr.Name = string(s.locations[i].ID), s.locations[i].Name
		w.write(rec)
	}
	// Groups before channels: a channel on a group is written without
	// locations and restored with the group's.
	gr := &logv1.LocationGroupRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_LocationGroup{LocationGroup: gr}}
	for _, g := range s.groups {
		gr.Id, gr.ModRevision = g.ID, uint64(g.modRev)
		gr.Locations = gr.Locations[:0]
		for _, l := range g.Locations {
			gr.Locations = append(gr.Locations, string(l))
		}
		w.write(rec)
	}
	cr := &logv1.ChannelRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Channel{Channel: cr}}
	for i, c := range s.channels {
		cr.Id, cr.DefaultBufferBaseUnits = string(c.ID), int64(c.DefaultBuffer)
		cr.LocationGroup, cr.RequireSkuMapping, cr.ModRevision = c.LocationGroup, c.RequireSKUMapping, uint64(s.channelRevs[i])
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
	for i := range s.skus {
		k := &s.skus[i]
		kr.Sku, kr.Item, kr.Factor, kr.ModRevision = string(k.sku), string(k.m.item), int64(k.m.factor), uint64(k.m.modRev)
		w.write(rec)
	}

	br := &logv1.BufferRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Buffer{Buffer: br}}
	next := 0
	for i := range s.items {
		it := &s.items[i]
		for _, b := range s.buffers[next : next+int(it.buffers)] {
			br.Item, br.Channel, br.Location, br.BufferBaseUnits = string(it.id), string(b.channel), string(b.location), int64(b.units)
			w.write(rec)
		}
		next += int(it.buffers)
	}
	ctr := &logv1.CounterRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Counter{Counter: ctr}}
	next = 0
	for i := range s.items {
		it := &s.items[i]
		for j := range s.counters[next : next+int(it.counters)] {
			c := &s.counters[next+j]
			ctr.Item, ctr.Location, ctr.OnHandBaseUnits = string(it.id), string(c.location()), int64(c.onHand)
			ctr.ReservedBaseUnits, ctr.CommittedBaseUnits, ctr.Version = int64(c.reserved), int64(c.committed), c.version
			ctr.ModRevision = uint64(c.modRev)
			w.write(rec)
		}
		next += int(it.counters)
	}

	writeIncoming(&w, s.incoming)

	rr := &logv1.ReservationRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Reservation{Reservation: rr}}
	request := &logv1.Reserve{} // scratch for remembered requests (request.go)
	for i := range s.reservations {
		fillReservationRecord(rr, &s.reservations[i], request)
		w.write(rec)
	}
	fr := &logv1.RefusalRecord{Rejection: &logv1.Rejection{}}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Refusal{Refusal: fr}}
	for i := range s.refusals {
		f := &s.refusals[i]
		fr.Request, fr.PruneSeq, fr.PrunableUnixNanos = f.request.record(f.key, f.rawRequest, request), f.pruneSeq, int64(f.prunableAt)
		fillRejection(fr.Rejection, f.rejection)
		w.write(rec)
	}
	dr := &logv1.DeltaRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Delta{Delta: dr}}
	for i := range s.deltas {
		d := &s.deltas[i]
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
