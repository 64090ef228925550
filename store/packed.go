package store

import (
	"encoding/binary"
	"strings"

	"github.com/stockd/stockd/api/logv1"
)

// A hold's remembered request serves only retries and snapshots, and a
// finished hold (confirmed, released, expired or cancelled) stays for the
// retry window only to answer retries and reads: its lines never change
// again. So every hold keeps its request packed in one string from the
// start (reservation.req), and finish packs the lines too (reservation.
// packed). The garbage collector marks a string without scanning it: a
// three-line cart's finished hold keeps two objects of ~130 bytes together
// instead of four or five of ~500 bytes holding ~25 pointers. Under a steady
// checkout load finished holds are most of the leader's live heap, and every
// collection scanned them (README, Load testing, "What changed it"). Reads,
// retries and snapshots decode afresh; they are rare next to the writes. The
// form lives only in memory: snapshots write the record as before.

// pack moves a finished hold's lines into r.packed. Apply goroutine, under
// st.lmu.
func (r *reservation) pack() {
	if r.packed != "" || r.State == StateHeld {
		return
	}
	r.packed = packWith(func(p *packer) { p.lines(r.Lines) })
	r.Lines = nil
}

// ownStrings gives a new (or restored) hold one string for its id, its lines'
// SKUs and its remembered request, packed ("" for none; unpackRequest reads
// it back with the hold's lines, whose SKUs it does not repeat), and points
// key, r.ID, the lines and r.req into it. A request serves only retries and
// snapshots, so it is packed from the start. The decoded entry's strings are
// then garbage: a held hold is kept for minutes and every collection
// meanwhile marks each object it keeps, so one string instead of an id, a SKU
// per line and a request is two or more objects fewer a hold. An item equal
// to its SKU shares the SKU's bytes.
func ownStrings(key *resKey, r *reservation, rq *reserveRequest) {
	all := packWith(func(p *packer) {
		p.raw(string(key.id))
		for i := range r.Lines {
			p.raw(string(r.Lines[i].SKU))
		}
		if rq.lines != nil {
			p.request(rq, r.Lines)
		}
	})
	key.id = ReservationID(all[:len(key.id)])
	r.ID = key.id
	at := len(key.id)
	for i := range r.Lines {
		l := &r.Lines[i]
		sku := all[at : at+len(l.SKU)]
		at += len(sku)
		if string(l.Item) == string(l.SKU) {
			l.Item = ItemID(sku)
		}
		l.SKU = SKU(sku)
	}
	r.req = all[at:]
}

// packWith runs write twice: once to count the bytes, once to write them
// into a string allocated at that size.
func packWith(write func(p *packer)) string {
	var n packer
	write(&n)
	var sb strings.Builder
	sb.Grow(n.size)
	write(&packer{sb: &sb})
	return sb.String()
}

// packer writes a hold's lines or request in the form unpackLines and
// unpackRequest read. With sb nil it only counts the bytes it would write,
// in size.
type packer struct {
	sb   *strings.Builder
	size int
}

func (p *packer) uvarint(v uint64) {
	if p.sb == nil {
		p.size += varintLen(v)
		return
	}
	var buf [binary.MaxVarintLen64]byte
	p.sb.Write(buf[:binary.PutUvarint(buf[:], v)])
}

func (p *packer) varint(v int64) { p.uvarint(uint64(v<<1) ^ uint64(v>>63)) }

func (p *packer) str(s string) {
	p.uvarint(uint64(len(s)))
	p.raw(s)
}

// raw writes s without its length: the reader knows it.
func (p *packer) raw(s string) {
	if p.sb == nil {
		p.size += len(s)
		return
	}
	p.sb.WriteString(s)
}

func varintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// Flags of a packed line and request line.
const (
	packItem           = 1 << iota // the line's item is not its SKU: the item follows
	packSKU                        // the request line's SKU is not the hold line's: it follows
	packLocation                   // the request line names a location: it follows
	packAllowBackorder             // the request line allows a backorder
)

// lines writes a hold's lines.
func (p *packer) lines(lines []ReservationLine) {
	p.uvarint(uint64(len(lines)))
	for _, l := range lines {
		p.str(string(l.SKU))
		if string(l.Item) != string(l.SKU) {
			p.uvarint(packItem)
			p.str(string(l.Item))
		} else {
			p.uvarint(0)
		}
		p.varint(int64(l.Quantity))
		p.varint(int64(l.Factor))
		p.varint(int64(l.PromisedAt))
		p.uvarint(uint64(len(l.Allocations)))
		for _, a := range l.Allocations {
			p.str(string(a.Location))
			p.varint(int64(a.Quantity))
			p.str(a.POLine)
			p.varint(int64(a.PromisedAt))
		}
	}
}

// request writes a request of at least one line: its TTL and lines. A
// request line repeats no SKU the hold's line of the same index has.
func (p *packer) request(rq *reserveRequest, lines []ReservationLine) {
	p.uvarint(uint64(len(rq.lines)))
	p.varint(rq.ttlNanos)
	for i, l := range rq.lines {
		var f uint64
		if i >= len(lines) || lines[i].SKU != l.sku {
			f |= packSKU
		}
		if l.location != "" {
			f |= packLocation
		}
		if l.allowBackorder {
			f |= packAllowBackorder
		}
		p.uvarint(f)
		if f&packSKU != 0 {
			p.str(string(l.sku))
		}
		if f&packLocation != 0 {
			p.str(string(l.location))
		}
		p.varint(int64(l.quantity))
		p.uvarint(uint64(l.expectedModRev))
	}
}

// unpacker reads what packer wrote; anything else is a bug, and panics.
// The strings it returns share the packed string's memory.
type unpacker struct{ s string }

func (u *unpacker) uvarint() uint64 {
	var v uint64
	for shift := 0; shift < 64 && u.s != ""; shift += 7 {
		c := u.s[0]
		u.s = u.s[1:]
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v
		}
	}
	panic("store: a packed hold does not decode")
}

func (u *unpacker) varint() int64 {
	v := u.uvarint()
	return int64(v>>1) ^ -int64(v&1)
}

func (u *unpacker) str() string {
	n := u.uvarint()
	if n > uint64(len(u.s)) {
		panic("store: a packed hold does not decode")
	}
	s := u.s[:n]
	u.s = u.s[n:]
	return s
}

// unpackLines reads what packer.lines wrote, into new slices.
func unpackLines(packed string) []ReservationLine {
	u := unpacker{s: packed}
	var lines []ReservationLine
	if n := u.uvarint(); n > 0 {
		lines = make([]ReservationLine, n)
	}
	for i := range lines {
		l := &lines[i]
		l.SKU = SKU(u.str())
		l.Item = ItemID(l.SKU)
		if u.uvarint()&packItem != 0 {
			l.Item = ItemID(u.str())
		}
		l.Quantity, l.Factor, l.PromisedAt = Units(u.varint()), Units(u.varint()), Timestamp(u.varint())
		if n := u.uvarint(); n > 0 {
			l.Allocations = make([]Allocation, n)
			for j := range l.Allocations {
				a := &l.Allocations[j]
				a.Location = LocationID(u.str())
				a.Quantity = Units(u.varint())
				a.POLine = u.str()
				a.PromisedAt = Timestamp(u.varint())
			}
		}
	}
	u.end()
	return lines
}

// unpackRequest reads what ownStrings packed, with the hold's lines it was
// packed against.
func unpackRequest(packed string, lines []ReservationLine) reserveRequest {
	if packed == "" {
		return reserveRequest{}
	}
	u := unpacker{s: packed}
	rq := reserveRequest{lines: make([]requestLine, u.uvarint())}
	rq.ttlNanos = u.varint()
	for i := range rq.lines {
		l := &rq.lines[i]
		f := u.uvarint()
		if f&packSKU != 0 {
			l.sku = SKU(u.str())
		} else {
			l.sku = lines[i].SKU
		}
		if f&packLocation != 0 {
			l.location = LocationID(u.str())
		}
		l.allowBackorder = f&packAllowBackorder != 0
		l.quantity = Units(u.varint())
		l.expectedModRev = Revision(u.uvarint())
	}
	u.end()
	return rq
}

func (u *unpacker) end() {
	if u.s != "" {
		panic("store: a packed hold has trailing bytes")
	}
}

// lines returns the hold's lines: r.Lines, or a packed hold's decoded afresh.
func (r *reservation) lines() []ReservationLine {
	if r.packed == "" {
		return r.Lines
	}
	return unpackLines(r.packed)
}

// remembered returns the request a retry is judged against (with
// r.rawRequest() when that is set).
func (r *reservation) remembered() reserveRequest {
	return unpackRequest(r.req, r.lines())
}

// public returns a copy of the hold whose slices are its own (a packed
// hold's strings share the packed string, which never changes).
func (r *reservation) public() Reservation {
	if r.packed == "" {
		return r.Reservation.clone()
	}
	cp := r.Reservation
	cp.Lines = r.lines()
	return cp
}

// fillLines sets rec's lines from lines, reusing rec's line and allocation
// messages.
func fillLines(rec *logv1.ReservationRecord, lines []ReservationLine) {
	rec.Lines = reuseMessages(rec.Lines, len(lines))
	for i, l := range lines {
		lr := rec.Lines[i]
		lr.Sku, lr.Item, lr.QuantitySkuUnits, lr.Factor = string(l.SKU), string(l.Item), int64(l.Quantity), int64(l.Factor)
		lr.Allocations = reuseMessages(lr.Allocations, len(l.Allocations))
		for j, a := range l.Allocations {
			ar := lr.Allocations[j]
			ar.Location, ar.QuantityBaseUnits, ar.PoLineId, ar.PromisedUnixNanos = string(a.Location), int64(a.Quantity), a.POLine, int64(a.PromisedAt)
		}
	}
}

// linesFromRecords is the inverse of fillLines.
func linesFromRecords(recs []*logv1.ReservationLineRecord) []ReservationLine {
	var lines []ReservationLine
	for _, lr := range recs {
		l := ReservationLine{SKU: SKU(lr.GetSku()), Item: ItemID(lr.GetItem()), Quantity: Units(lr.GetQuantitySkuUnits()), Factor: Units(lr.GetFactor())}
		for _, a := range lr.GetAllocations() {
			l.Allocations = append(l.Allocations, Allocation{Location: LocationID(a.GetLocation()), Quantity: Units(a.GetQuantityBaseUnits()),
				POLine: a.GetPoLineId(), PromisedAt: Timestamp(a.GetPromisedUnixNanos())})
			l.PromisedAt = max(l.PromisedAt, Timestamp(a.GetPromisedUnixNanos()))
		}
		lines = append(lines, l)
	}
	return lines
}
