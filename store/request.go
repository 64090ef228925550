package store

import (
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
)

// reserveRequest is a remembered Reserve: what a retry with the same id is
// judged against (I3), and what a snapshot writes back as the record's
// request. It keeps the fields of logv1.Reserve as Go values, a few dozen
// bytes per line instead of a cloned message; the channel and reservation id
// are the key it is remembered under. A request this form cannot give back
// exactly (unknown fields from a newer build, or a restored record without
// lines or under another key) is kept whole instead, as the raw message its
// holder passes to diff and record. Nothing in it changes once made:
// snapshots share it. A refusal keeps it as it is; a hold keeps it packed
// in a string (reservation.req, packed.go) and unpacks it for a retry or a
// snapshot.
type reserveRequest struct {
	lines    []requestLine
	ttlNanos int64
}

// requestLine is one line of a remembered Reserve, as it was asked.
type requestLine struct {
	sku            SKU
	location       LocationID
	quantity       Units // SKU units
	expectedModRev Revision
	allowBackorder bool
}

// newReserveRequest remembers c, the Reserve of key: in compact form, or
// whole as raw. Location ids are the catalog's copies where declared (cat
// may be nil), so a hold does not keep one per line.
func newReserveRequest(cat *catalog, key resKey, c *logv1.Reserve) (rq reserveRequest, raw *logv1.Reserve) {
	if c == nil {
		return reserveRequest{}, nil
	}
	if !compactable(key, c) {
		return reserveRequest{}, proto.CloneOf(c) // the caller's message may be reused
	}
	rq = reserveRequest{lines: make([]requestLine, len(c.GetLines())), ttlNanos: c.GetTtlNanos()}
	for i, l := range c.GetLines() {
		loc := LocationID(l.GetLocation())
		if cat != nil {
			loc = cat.intern(loc)
		}
		rq.lines[i] = requestLine{sku: SKU(l.GetSku()), location: loc,
			quantity: Units(l.GetQuantitySkuUnits()), expectedModRev: Revision(l.GetExpectedModRevision()),
			allowBackorder: l.GetAllowBackorder()}
	}
	return rq, nil
}

// compactable reports whether reserveRequest's lines give c back exactly.
func compactable(key resKey, c *logv1.Reserve) bool {
	if len(c.GetLines()) == 0 || len(c.ProtoReflect().GetUnknown()) > 0 ||
		c.GetChannel() != string(key.channel) || c.GetReservationId() != string(key.id) {
		return false
	}
	for _, l := range c.GetLines() {
		if l == nil || len(l.ProtoReflect().GetUnknown()) > 0 {
			return false
		}
	}
	return true
}

// record is the request as the message snapshots write, nil if none. A
// compact request is written into scratch (its line messages reused), which
// is valid until the next call with the same scratch; a raw one is returned
// as it is and must not be changed.
func (rq *reserveRequest) record(key resKey, raw, scratch *logv1.Reserve) *logv1.Reserve {
	switch {
	case raw != nil:
		return raw
	case rq.lines == nil:
		return nil
	}
	scratch.Channel, scratch.ReservationId, scratch.TtlNanos = string(key.channel), string(key.id), rq.ttlNanos
	scratch.Lines = reuseMessages(scratch.Lines, len(rq.lines))
	for i := range rq.lines {
		l, lr := &rq.lines[i], scratch.Lines[i]
		lr.Sku, lr.QuantitySkuUnits, lr.Location = string(l.sku), int64(l.quantity), string(l.location)
		lr.ExpectedModRevision, lr.AllowBackorder = uint64(l.expectedModRev), l.allowBackorder
	}
	return scratch
}

// diff judges a retry of the Reserve of key field by field and names the
// first difference, as diffReserve does for two messages.
func (rq *reserveRequest) diff(key resKey, raw, retry *logv1.Reserve) *Rejection {
	if raw != nil || rq.lines == nil {
		return diffReserve(raw, retry)
	}
	conflict := func(field string) *Rejection {
		return reject(ErrIdempotencyConflict, field, "differs from the first request with reservation id "+
			strconv.Quote(string(key.id)))
	}
	if len(rq.lines) != len(retry.GetLines()) {
		return conflict("lines")
	}
	for i := range rq.lines {
		a, b := &rq.lines[i], retry.GetLines()[i]
		switch {
		case string(a.sku) != b.GetSku():
			return conflict(indexed("lines", i, "sku"))
		case int64(a.quantity) != b.GetQuantitySkuUnits():
			return conflict(indexed("lines", i, "quantity"))
		case string(a.location) != b.GetLocation():
			return conflict(indexed("lines", i, "location"))
		case uint64(a.expectedModRev) != b.GetExpectedModRevision():
			return conflict(indexed("lines", i, "expected_mod_revision"))
		case a.allowBackorder != b.GetAllowBackorder():
			return conflict(indexed("lines", i, "allow_backorder"))
		}
	}
	if ttlOrDefault(rq.ttlNanos) != ttlOrDefault(retry.GetTtlNanos()) {
		return conflict("ttl")
	}
	return nil
}

// shareStrings points a restored reservation's channel, items and
// allocation locations at strings the state already holds (the catalog's,
// the line's SKU), so a restored hold costs what a fresh one does.
func (cat *catalog) shareStrings(r *reservation) {
	if ch := cat.channels[r.Channel]; ch != nil {
		r.Channel = ch.ID
	}
	for i := range r.Lines {
		l := &r.Lines[i]
		if string(l.Item) == string(l.SKU) {
			l.Item = ItemID(l.SKU)
		}
		for j := range l.Allocations {
			l.Allocations[j].Location = cat.intern(l.Allocations[j].Location)
		}
	}
}

// reservationMore is what few reservations have besides their hold. It is
// never changed once set: a change replaces it, as snapshots share it.
type reservationMore struct {
	// ops are the Extends and partial Releases applied, in order (lifecycle.go).
	ops []holdOp
	// rawRequest is the Reserve kept whole, when reserveRequest cannot give it back.
	rawRequest *logv1.Reserve
}

// holdOps returns the Extends and partial Releases applied, in order.
func (r *reservation) holdOps() []holdOp {
	if r.more == nil {
		return nil
	}
	return r.more.ops
}

// addOp remembers an applied Extend or partial Release. Apply goroutine, under st.lmu.
func (r *reservation) addOp(op holdOp) {
	var m reservationMore
	if r.more != nil {
		m = *r.more
	}
	m.ops = append(m.ops, op)
	r.more = &m
}

// rawRequest returns the Reserve kept whole, or nil when r.req holds it.
func (r *reservation) rawRequest() *logv1.Reserve {
	if r.more == nil {
		return nil
	}
	return r.more.rawRequest
}

// setRawRequest keeps the Reserve whole (nil: r.req holds it).
func (r *reservation) setRawRequest(raw *logv1.Reserve) {
	if raw == nil && r.more == nil {
		return
	}
	var m reservationMore
	if r.more != nil {
		m = *r.more
	}
	m.rawRequest = raw
	r.more = &m
}
