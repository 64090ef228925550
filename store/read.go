package store

import (
	"slices"
	"strings"
)

// availability fills dst with what channel ch may promise of sku: the total
// and one entry per channel location in priority order. It reuses
// dst.Locations and allocates nothing when that has room. Safe from any
// goroutine; the figure of one SKU is consistent, a series of calls is not
// atomic across SKUs. It returns ErrUnknownChannel for an undeclared channel
// and ErrUnknownSKU for a SKU without mapping on a channel that requires one.
//
// The SKU resolves to its item and pack factor (catalog.go): each location's
// Available is floor(base units available / factor), the total their sum.
// ModRevision is the latest of the item's counters at the channel's
// locations (buffer changes included), the channel's (and its group's) and
// the SKU mapping's revisions.
func (m *Machine) availability(ch ChannelID, sku SKU, dst *SKUAvailability) error {
	st := m.st.Load()
	cat := st.catalog.Load()
	c := cat.channels[ch]
	if c == nil {
		return errUnknownChannelRead
	}
	item, factor, rev, ok := cat.resolve(c, sku)
	if !ok {
		return errUnknownSKURead
	}
	rev = max(rev, cat.channelRevs[ch])
	dst.SKU, dst.Item, dst.Available, dst.Known, dst.Factor = sku, item, 0, false, factor
	dst.Locations = dst.Locations[:0]
	sh := st.shardFor(item)
	sh.mu.RLock()
	is := sh.items[item]
	for _, loc := range c.Locations {
		la, r, known := figureAt(is, c, loc, factor)
		dst.Known = dst.Known || known
		rev = max(rev, r)
		dst.Available = saturatedAdd(dst.Available, la.Available)
		dst.Locations = append(dst.Locations, la)
	}
	dst.Incoming = is.appendIncoming(dst.Incoming[:0], c, factor) // incoming.go
	sh.mu.RUnlock()
	dst.ModRevision = rev
	return nil
}

var (
	errUnknownChannelRead = reject(ErrUnknownChannel, "channel", "unknown channel")
	errUnknownSKURead     = reject(ErrUnknownSKU, "skus", "the sku has no mapping and the channel requires one")
)

// Reservation returns a copy of one reservation. A reservation is kept while
// held and for the retry window after it ends; after that ErrUnknownReservation.
func (m *Machine) Reservation(ch ChannelID, id ReservationID) (Reservation, error) {
	st := m.st.Load()
	st.lmu.RLock()
	r := st.reservations[resKey{ch, id}]
	if r == nil {
		st.lmu.RUnlock()
		return Reservation{}, reject(ErrUnknownReservation, "reservation_id", "unknown reservation")
	}
	cp := r.public() // packed.go
	st.lmu.RUnlock()
	st.promise(&cp) // backorder dates, under the item's shard lock
	return cp, nil
}

// Locations lists the declared locations sorted by id.
func (m *Machine) Locations() []Location {
	cat := m.st.Load().catalog.Load()
	out := make([]Location, 0, len(cat.locations))
	for _, l := range cat.locations {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Location) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return out
}

// Channels lists the declared channels sorted by id (copies).
func (m *Machine) Channels() []Channel {
	cat := m.st.Load().catalog.Load()
	out := make([]Channel, 0, len(cat.channels))
	for _, c := range cat.channels {
		cc := *c
		cc.Locations = slices.Clone(c.Locations)
		out = append(out, cc)
	}
	slices.SortFunc(out, func(a, b Channel) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return out
}

// clone deep-copies a reservation so callers never share its slices.
func (r Reservation) clone() Reservation {
	lines := make([]ReservationLine, len(r.Lines))
	for i, l := range r.Lines {
		l.Allocations = slices.Clone(l.Allocations)
		lines[i] = l
	}
	r.Lines = lines
	return r
}

// Node returns one cluster member's record. Safe from any goroutine; it
// copies nothing but the record.
func (m *Machine) Node(id string) (Node, bool) {
	n, ok := m.st.Load().catalog.Load().nodes[id]
	return n, ok
}

// Nodes lists the cluster members' records sorted by id.
func (m *Machine) Nodes() []Node {
	cat := m.st.Load().catalog.Load()
	out := make([]Node, 0, len(cat.nodes))
	for _, n := range cat.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return out
}
