package store

// Incoming lists incoming lines sorted by po line id, of one item or (empty)
// all. Safe from any goroutine.
func (m *Machine) Incoming(item ItemID) []IncomingLine {
	return nil // TODO(#4)
}
