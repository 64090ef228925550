package store

// Reservations answers a ReservationQuery: matching reservations sorted by id,
// at most q.Limit, and whether more follow. Safe from any goroutine.
func (m *Machine) Reservations(q ReservationQuery) (page []Reservation, more bool) {
	return nil, false // TODO(#4)
}
