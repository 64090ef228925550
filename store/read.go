package store

import (
	"math"
	"slices"
	"strings"
)

// Availability fills dst with what channel ch may promise of sku: the total
// and one entry per channel location in priority order. It reuses
// dst.Locations and allocates nothing when that has room. Safe from any
// goroutine; the figure of one SKU is consistent, a series of calls is not
// atomic across SKUs. It returns ErrUnknownChannel for an undeclared channel.
func (m *Machine) Availability(ch ChannelID, sku SKU, dst *SKUAvailability) error {
	st := m.st.Load()
	c := st.catalog.Load().channels[ch]
	if c == nil {
		return errUnknownChannelRead
	}
	item := ItemID(sku)
	dst.SKU, dst.Item, dst.Available, dst.Known = sku, item, 0, false
	dst.Locations = dst.Locations[:0]
	sh := st.shardFor(item)
	sh.mu.RLock()
	is := sh.items[item]
	for _, loc := range c.Locations {
		la := LocationAvailability{Location: loc}
		la.Buffer = is.buffer(c, loc)
		if ct := is.counterAt(loc); ct != nil {
			dst.Known = true
			la.OnHand, la.Reserved, la.Committed = ct.onHand, ct.reserved, ct.committed
			la.Available = ct.available(la.Buffer)
			la.Oversold = ct.oversold()
		}
		if sum, ok := addUnits(dst.Available, la.Available); ok {
			dst.Available = sum
		} else {
			dst.Available = math.MaxInt64 // saturate: a total never wraps negative (I1)
		}
		dst.Locations = append(dst.Locations, la)
	}
	sh.mu.RUnlock()
	return nil
}

var errUnknownChannelRead = reject(ErrUnknownChannel, "channel", "unknown channel")

// Reservation returns a copy of one reservation. A reservation is kept while
// held and for the retry window after it ends; after that ErrUnknownReservation.
func (m *Machine) Reservation(ch ChannelID, id ReservationID) (Reservation, error) {
	st := m.st.Load()
	st.lmu.RLock()
	defer st.lmu.RUnlock()
	r := st.reservations[resKey{ch, id}]
	if r == nil {
		return Reservation{}, reject(ErrUnknownReservation, "reservation_id", "unknown reservation")
	}
	return r.Reservation.clone(), nil
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
