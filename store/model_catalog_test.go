package store_test

import (
	"errors"
	"reflect"
	"slices"

	"pgregory.net/rapid"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// The reference model of SKU mappings, mod revisions and compare-and-reserve,
// written from DESIGN.md and the issue rather than from catalog.go, and the
// property-test actions that drive it.

// msku is a SKU's mapping; factor 0 is a deleted one (its revision stays).
type msku struct {
	item   string
	factor int64
	rev    int64
}

// mappedSKUs may be mapped; the item names themselves never are, so every
// item stays visible under its own name.
var mappedSKUs = []string{"rose-6", "pack", "box"}

// propSKUs is every SKU a reserve line or a read names.
var propSKUs = append(append([]string(nil), propItems...), mappedSKUs...)

// resolve maps a SKU to (item, factor) for channel ch; ok is false when the
// SKU has no mapping and the channel requires one.
func (md *model) resolve(ch, sku string) (string, int64, bool) {
	if m := md.skus[sku]; m != nil && m.factor > 0 {
		return m.item, m.factor, true
	}
	if md.channels[ch].strict {
		return "", 0, false
	}
	return sku, 1, true
}

// touch: the entry being applied changed a counter.
func (md *model) touch(k mkey) {
	if c := md.counters[k]; c != nil {
		c.rev = md.index
	}
}

// touchItem: a buffer rule of the item changed, which moves all its counters.
func (md *model) touchItem(item string) {
	for k := range md.counters {
		if k.item == item {
			md.touch(k)
		}
	}
}

// modRev is the SKU's mod_revision for ch: the latest change to its mapping,
// the channel, or the item's counters (buffers included) at the channel's
// locations.
func (md *model) modRev(ch, sku string) int64 {
	c, ok := md.channels[ch]
	if !ok {
		return 0
	}
	rev := c.rev
	if m := md.skus[sku]; m != nil {
		rev = max(rev, m.rev)
	}
	item, _, ok := md.resolve(ch, sku)
	if !ok {
		return 0
	}
	for _, loc := range c.locs {
		if ct := md.counters[mkey{item, loc}]; ct != nil {
			rev = max(rev, ct.rev)
		}
	}
	return rev
}

// skuAvail is the SKU's total for ch in whole SKU units.
func (md *model) skuAvail(ch, sku string) int64 {
	item, factor, ok := md.resolve(ch, sku)
	if !ok {
		return 0
	}
	var total int64
	for _, loc := range md.channels[ch].locs {
		total += md.avail(ch, item, loc) / factor
	}
	return total
}

func (md *model) putSku(c *logv1.PutSku) (error, string) {
	if c.GetFactor() < 1 || c.GetFactor() > store.MaxPackFactor {
		return store.ErrInvalid, "sku.factor"
	}
	if m := md.skus[c.GetSku()]; m != nil && m.item == c.GetItem() && m.factor == c.GetFactor() {
		return nil, ""
	}
	md.skus[c.GetSku()] = &msku{item: c.GetItem(), factor: c.GetFactor(), rev: md.index}
	return nil, ""
}

func (md *model) deleteSku(c *logv1.DeleteSku) (error, string) {
	if m := md.skus[c.GetSku()]; m == nil || m.factor == 0 {
		return store.ErrUnknownSKU, "sku"
	}
	for _, r := range md.res {
		if r.state == store.StateHeld && slices.ContainsFunc(r.lines, func(l mline) bool { return l.sku == c.GetSku() }) {
			return store.ErrInUse, "sku"
		}
	}
	md.skus[c.GetSku()] = &msku{rev: md.index}
	return nil, ""
}

// putChannel replaces a channel's locations; the same ones again change nothing.
func (md *model) putChannel(c *logv1.PutChannel) {
	ch := md.channels[c.GetId()]
	if slices.Equal(ch.locs, c.GetLocations()) && ch.buffer == c.GetDefaultBufferBaseUnits() {
		return
	}
	ch.locs, ch.buffer, ch.rev = slices.Clone(c.GetLocations()), c.GetDefaultBufferBaseUnits(), md.index
	md.channels[c.GetId()] = ch
}

// catalogActions drive SKU mappings and channel changes.
func (p *propRun) catalogActions() map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){
		"putSku": func(t *rapid.T) {
			cmd := putSku(rapid.SampledFrom(mappedSKUs).Draw(t, "sku"), rapid.SampledFrom(propItems).Draw(t, "item"),
				rapid.SampledFrom([]int64{0, 1, 2, 3, 6}).Draw(t, "factor"))
			res := p.apply(t, p.stamp(t), cmd)
			wantErr, field := p.md.putSku(cmd.GetPutSku())
			expectAnswer(t, cmd, res.Err, wantErr, field)
		},
		"deleteSku": func(t *rapid.T) {
			cmd := deleteSku(rapid.SampledFrom(append([]string{"rose"}, mappedSKUs...)).Draw(t, "sku"))
			res := p.apply(t, p.stamp(t), cmd)
			wantErr, field := p.md.deleteSku(cmd.GetDeleteSku())
			expectAnswer(t, cmd, res.Err, wantErr, field)
		},
		"channel": func(t *rapid.T) {
			locs := rapid.SampledFrom([][]string{{"ams", "fra"}, {"fra", "ams"}, {"fra"}}).Draw(t, "locations")
			cmd := channel("web", 0, locs...)
			res := p.apply(t, p.stamp(t), cmd)
			expectAnswer(t, cmd, res.Err, nil, "")
			p.md.putChannel(cmd.GetPutChannel())
		},
	}
}

// expectedRevision draws a line's expected_mod_revision: mostly none, else
// the model's current one or one just before it (a moved figure).
func (p *propRun) expectedRevision(t *rapid.T, ch, sku string) uint64 {
	if rapid.IntRange(0, 3).Draw(t, "compare") != 0 {
		return 0
	}
	rev := p.md.modRev(ch, sku) - rapid.Int64Range(0, 1).Draw(t, "moved_by")
	return uint64(max(rev, 1))
}

// checkRevisionRefusal: a compare-and-reserve refusal carries the figure the
// model computed when it first refused (a retry gets the same one, I3).
func (p *propRun) checkRevisionRefusal(t *rapid.T, cmd *logv1.Command, got error) {
	var rej *store.Rejection
	if !errors.As(got, &rej) || !errors.Is(got, store.ErrRevisionChanged) {
		return
	}
	f := p.md.refusals[rkey{cmd.GetReserve().GetChannel(), cmd.GetReserve().GetReservationId()}]
	if f == nil || int64(rej.ModRevision) != f.rev || int64(rej.AvailableSKU) != f.availSKU {
		t.Fatalf("input %v: got mod_revision %d available %d, want the model's %+v", cmd, rej.ModRevision, rej.AvailableSKU, f)
	}
}

// checkSKUFigures compares every channel's figure of every SKU with the
// model: item, factor, mod_revision, and per location SKU units.
func (p *propRun) checkSKUFigures(t *rapid.T) {
	var a store.SKUAvailability
	for _, ch := range propChannels {
		for _, sku := range propSKUs {
			err := p.m.Availability(store.ChannelID(ch), store.SKU(sku), &a)
			item, factor, ok := p.md.resolve(ch, sku)
			if !ok {
				if !errors.Is(err, store.ErrUnknownSKU) {
					t.Fatalf("availability %s/%s: got %v, want %v", ch, sku, err, store.ErrUnknownSKU)
				}
				continue
			}
			if err != nil {
				t.Fatalf("availability %s/%s: got %v, want ok", ch, sku, err)
			}
			if string(a.Item) != item || int64(a.Factor) != factor || int64(a.ModRevision) != p.md.modRev(ch, sku) {
				t.Fatalf("availability %s/%s: got item %s factor %d mod_revision %d, want %s, %d, %d",
					ch, sku, a.Item, a.Factor, a.ModRevision, item, factor, p.md.modRev(ch, sku))
			}
			if int64(a.Available) != p.md.skuAvail(ch, sku) {
				t.Fatalf("availability %s/%s (I1): got %d SKU units, want %d", ch, sku, a.Available, p.md.skuAvail(ch, sku))
			}
			for i, la := range a.Locations {
				loc := p.md.channels[ch].locs[i]
				c := p.md.counters[mkey{item, loc}]
				if c == nil {
					c = &mcounter{}
				}
				want := store.LocationAvailability{
					Location: store.LocationID(loc), Available: store.Units(p.md.avail(ch, item, loc) / factor),
					OnHand: store.Units(c.onHand), Reserved: store.Units(c.reserved), Committed: store.Units(c.committed),
					Buffer: store.Units(p.md.bufferOf(ch, item, loc)), Oversold: store.Units(p.md.oversold(item, loc)),
				}
				if !reflect.DeepEqual(la, want) {
					t.Fatalf("availability %s/%s@%s: got %+v, want %+v", ch, sku, loc, la, want)
				}
			}
		}
	}
	var want []store.SKUMapping
	for _, s := range mappedSKUs {
		if m := p.md.skus[s]; m != nil && m.factor > 0 {
			want = append(want, store.SKUMapping{SKU: store.SKU(s), Item: store.ItemID(m.item), Factor: store.Units(m.factor)})
		}
	}
	slices.SortFunc(want, func(a, b store.SKUMapping) int { return compareStrings(string(a.SKU), string(b.SKU)) })
	if got := p.m.SKUs(""); !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
		t.Fatalf("skus: got %+v, want %+v", got, want)
	}
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
