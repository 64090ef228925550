package store

import (
	"container/heap"
	"slices"
	"sync/atomic"
)

// Which SKUs a channel sells, and which SKUs an item's figures feed: reads
// for Watch, ListChanges and ListAvailability (issue 6).

// skuIndex maps items to the SKUs mapped to them, for one published catalog.
type skuIndex struct {
	cat    *catalog
	byItem map[ItemID][]SKU
}

// skuIndexCache holds the index of the latest catalog it was asked about; a
// catalog is immutable once published, so the index stays valid for it.
type skuIndexCache struct{ p atomic.Pointer[skuIndex] }

func (c *skuIndexCache) of(cat *catalog) *skuIndex {
	if ix := c.p.Load(); ix != nil && ix.cat == cat {
		return ix
	}
	ix := &skuIndex{cat: cat, byItem: make(map[ItemID][]SKU)}
	for sku, m := range cat.skus {
		if m.factor > 0 {
			ix.byItem[m.item] = append(ix.byItem[m.item], sku)
		}
	}
	for _, skus := range ix.byItem {
		slices.Sort(skus)
	}
	c.p.Store(ix)
	return ix
}

// ItemSKUs appends to dst the SKUs channel ch resolves to item, sorted: the
// SKUs mapped to it, and the item id itself when no mapping claims that name
// and ch does not require mappings. An unknown channel resolves nothing.
// Safe from any goroutine.
func (m *Machine) ItemSKUs(ch ChannelID, item ItemID, dst []SKU) []SKU {
	cat := m.st.Load().catalog.Load()
	c := cat.channels[ch]
	if c == nil {
		return dst
	}
	start := len(dst)
	dst = append(dst, m.skuIndex.of(cat).byItem[item]...)
	if own := SKU(item); !c.RequireSKUMapping && cat.skus[own].factor == 0 && !slices.Contains(dst[start:], own) {
		dst = append(dst, own)
		slices.Sort(dst[start:])
	}
	return dst
}

// ChannelSKUs returns the SKUs channel ch sells that sort after after, at
// most limit of them (limit <= 0: all), sorted, and whether more follow:
// every mapped SKU, and (unless ch requires mappings) every item with a
// counter at one of ch's locations whose id no mapping claims. Each call
// scans the catalog: O(items + mappings) plus O(n log limit), so take the
// whole list in one call rather than in small pages where you can. Safe from
// any goroutine; it returns ErrUnknownChannel for an undeclared channel.
func (m *Machine) ChannelSKUs(ch ChannelID, after SKU, limit int) ([]SKU, bool, error) {
	st := m.st.Load()
	cat := st.catalog.Load()
	c := cat.channels[ch]
	if c == nil {
		return nil, false, errUnknownChannelRead
	}
	all := limit <= 0
	h := skuHeap{}
	more := false
	consider := func(s SKU) {
		if s <= after {
			return
		}
		if all {
			h = append(h, s) // no heap order needed: sorted below
			return
		}
		if len(h) < limit {
			heap.Push(&h, s)
			return
		}
		more = true
		if s < h[0] {
			h[0] = s
			heap.Fix(&h, 0)
		}
	}
	for sku, k := range cat.skus {
		if k.factor > 0 {
			consider(sku)
		}
	}
	if !c.RequireSKUMapping {
		for i := range st.shards {
			sh := &st.shards[i]
			sh.mu.RLock()
			for id, is := range sh.items {
				if cat.skus[SKU(id)].factor > 0 {
					continue
				}
				for _, loc := range c.Locations {
					if is.counterAt(loc) != nil {
						consider(SKU(id))
						break
					}
				}
			}
			sh.mu.RUnlock()
		}
	}
	out := []SKU(h)
	slices.Sort(out)
	return out, more, nil
}

// skuHeap is a max-heap: the largest SKU kept is on top.
type skuHeap []SKU

func (h skuHeap) Len() int           { return len(h) }
func (h skuHeap) Less(i, j int) bool { return h[i] > h[j] }
func (h skuHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *skuHeap) Push(x any)        { *h = append(*h, x.(SKU)) }
func (h *skuHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
