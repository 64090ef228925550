package store

import (
	"encoding/binary"
	"strings"

	"github.com/stockd/stockd/api/logv1"
)

// A finished hold (confirmed, released, expired or cancelled) stays for the
// retry window only to answer retries and reads; its lines and request never
// change again. finish packs them into one string, which the garbage
// collector marks without scanning: a three-line cart's finished hold then
// keeps one object of ~130 bytes instead of four or five objects of ~500
// bytes holding ~25 pointers. Under a steady checkout load finished holds
// are most of the leader's live heap, and every collection scanned them
// (README, Load testing, "What changed it"). Reads, retries and snapshots of
// a finished hold decode it afresh; they are rare next to the writes. The
// form lives only in memory: snapshots write the record as before.

// pack moves a finished hold's lines and compact request into r.packed. A
// request kept whole (r.more.rawRequest) stays where it is. Apply goroutine,
// under st.lmu.
func (r *reservation) pack() {
	if r.packed != "" || r.State == StateHeld {
		return
	}
	var n packer // first pass: the size, so the string is allocated once
	n.hold(r.Lines, &r.request)
	var sb strings.Builder
	sb.Grow(n.size)
	p := packer{sb: &sb}
	p.hold(r.Lines, &r.request)
	r.packed, r.Lines, r.request = sb.String(), nil, reserveRequest{}
}

// packer writes a hold's lines and request in the form unpack reads. With
// sb nil it only counts the bytes it would write, in size.
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

// hold writes lines, then the request: 0 lines for none, else its TTL and
// lines. A request line repeats no SKU its hold line has.
func (p *packer) hold(lines []ReservationLine, rq *reserveRequest) {
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
	p.uvarint(uint64(len(rq.lines)))
	if rq.lines == nil {
		return
	}
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

// unpack returns a packed hold's lines and request, in new slices.
func (r *reservation) unpack() ([]ReservationLine, reserveRequest) {
	u := unpacker{s: r.packed}
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
	var rq reserveRequest
	if n := u.uvarint(); n > 0 {
		rq.ttlNanos = u.varint()
		rq.lines = make([]requestLine, n)
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
	}
	if u.s != "" {
		panic("store: a packed hold has trailing bytes")
	}
	return lines, rq
}

// lines returns the hold's lines: r.Lines, or a packed hold's decoded afresh.
func (r *reservation) lines() []ReservationLine {
	if r.packed == "" {
		return r.Lines
	}
	lines, _ := r.unpack()
	return lines
}

// remembered returns the request a retry is judged against (with
// r.rawRequest() when that is set).
func (r *reservation) remembered() reserveRequest {
	if r.packed == "" {
		return r.request
	}
	_, rq := r.unpack()
	return rq
}

// public returns a copy of the hold that shares nothing with it.
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
