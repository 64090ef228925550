package store

// SKUs lists SKU mappings sorted by SKU, of one item or (empty) all.
// Safe from any goroutine.
func (m *Machine) SKUs(item ItemID) []SKUMapping {
	return nil // TODO(#4): S1 fills this in
}

// LocationGroups lists the location groups sorted by id. Safe from any goroutine.
func (m *Machine) LocationGroups() []LocationGroup {
	return nil // TODO(#4)
}

// Buffers lists buffer rules sorted by (item, channel, location), of one item
// or (empty) all. Safe from any goroutine.
func (m *Machine) Buffers(item ItemID) []BufferRule {
	return nil // TODO(#4)
}
