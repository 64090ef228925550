package store

import (
	"cmp"
	"slices"
)

// SKUs lists SKU mappings sorted by SKU, of one item or (empty) all.
// Safe from any goroutine.
func (m *Machine) SKUs(item ItemID) []SKUMapping {
	cat := m.st.Load().catalog.Load()
	var out []SKUMapping
	for sku, k := range cat.skus {
		if k.factor > 0 && (item == "" || k.item == item) {
			out = append(out, SKUMapping{SKU: sku, Item: k.item, Factor: k.factor})
		}
	}
	slices.SortFunc(out, cmpSKUMapping)
	return out
}

// LocationGroups lists the location groups sorted by id. Safe from any goroutine.
func (m *Machine) LocationGroups() []LocationGroup {
	cat := m.st.Load().catalog.Load()
	out := make([]LocationGroup, 0, len(cat.groups))
	for _, g := range cat.groups {
		out = append(out, LocationGroup{ID: g.ID, Locations: slices.Clone(g.Locations)})
	}
	slices.SortFunc(out, func(a, b LocationGroup) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Buffers lists buffer rules sorted by (item, channel, location), of one item
// or (empty) all. Safe from any goroutine; each item's rules are read under
// its shard's lock.
func (m *Machine) Buffers(item ItemID) []BufferRule {
	st := m.st.Load()
	var out []BufferRule
	add := func(id ItemID, is *itemState) {
		for _, b := range is.bufferRules() {
			out = append(out, BufferRule{Item: id, Channel: b.channel, Location: b.location, Units: b.units})
		}
	}
	if item != "" {
		sh := st.shardFor(item)
		sh.mu.RLock()
		if is := sh.items[item]; is != nil {
			add(item, is)
		}
		sh.mu.RUnlock()
		return out
	}
	for i := range st.shards {
		sh := &st.shards[i]
		sh.mu.RLock()
		for id, is := range sh.items {
			add(id, is)
		}
		sh.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, b BufferRule) int {
		return cmp.Or(cmp.Compare(a.Item, b.Item), cmp.Compare(a.Channel, b.Channel), cmp.Compare(a.Location, b.Location))
	})
	return out
}
