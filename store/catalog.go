package store

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/stockd/stockd/api/logv1"
)

// The catalog's issue 4 half: SKU mappings with pack factors, location
// groups, retiring locations, channels, groups and SKUs, the mod revisions
// compare-and-reserve compares, and the live-hold counts that say what is
// still in use.

// MaxPackFactor bounds a SKU mapping's factor (base units per SKU unit).
const MaxPackFactor = 1_000_000

// skuMapping is a SKU's item and pack factor. factor 0 is a tombstone: the
// mapping was deleted at modRev and the SKU is its own item again. Tombstones
// keep a deleted mapping's revision in the SKU's mod_revision, so it never
// moves back (they are few: one per SKU ever mapped).
type skuMapping struct {
	item   ItemID
	factor Units
	modRev Revision
}

// locationGroup is a named, ordered set of locations; its Locations slice is
// never changed once published (a Put replaces the group).
type locationGroup struct {
	LocationGroup
	modRev Revision
}

func emptyCatalog() *catalog {
	return &catalog{
		locations: map[LocationID]Location{}, channels: map[ChannelID]*Channel{}, nodes: map[string]Node{},
		groups: map[string]*locationGroup{}, skus: map[SKU]skuMapping{}, channelRevs: map[ChannelID]Revision{},
	}
}

// clone is a shallow copy: the caller replaces each map it changes with a
// copy of its own before publishing, the rest stays shared.
func (c *catalog) clone() *catalog {
	cp := *c
	return &cp
}

// resolve maps sku to its item and pack factor for channel ch, and the
// mapping's mod revision (0 without one). ok is false when the SKU has no
// mapping and ch requires one.
func (c *catalog) resolve(ch *Channel, sku SKU) (item ItemID, factor Units, rev Revision, ok bool) {
	m, found := c.skus[sku]
	if found && m.factor > 0 {
		return m.item, m.factor, m.modRev, true
	}
	if ch.RequireSKUMapping {
		return "", 0, 0, false
	}
	return ItemID(sku), 1, m.modRev, true
}

// touch marks a counter of item changed by the entry being applied (its
// modRev, what compare-and-reserve compares, and the change log, changes.go).
// Every change to a counter's on_hand, reserved, committed or version calls
// it, under the shard's write lock.
func (st *state) touch(item ItemID, ct *counter) {
	ct.modRev = st.index
	st.noteItem(item, "", ct.location())
}

// touchItem marks every counter of an item changed (a buffer rule of it
// changed; the caller records that in the change log). The caller holds the
// shard's write lock.
func (st *state) touchItem(is *itemState) {
	for i := range is.counters {
		is.counters[i].modRev = st.index
	}
}

// holdStarted counts a reservation that became held: per channel, per line
// SKU and per allocation location. holdEnded undoes it. A change to a held
// reservation's lines or allocations must be bracketed by holdEnded before
// and holdStarted after; finish calls holdEnded when a held one ends.
func (st *state) holdStarted(r *reservation) { st.countHold(r, 1) }

// holdEnded uncounts a held reservation; see holdStarted.
func (st *state) holdEnded(r *reservation) { st.countHold(r, -1) }

func (st *state) countHold(r *reservation, d int) {
	addCount(st.holdsByChannel, r.Channel, d)
	for _, l := range r.Lines {
		addCount(st.holdsBySKU, l.SKU, d)
		for _, a := range l.Allocations {
			addCount(st.holdsByLocation, a.Location, d)
		}
	}
}

func addCount[K comparable](m map[K]int, k K, d int) {
	n := m[k] + d
	switch {
	case n > 0:
		m[k] = n
	case n == 0:
		delete(m, k)
	default:
		panic("store: live hold count went negative")
	}
}

// figureAt is one location's figure of an item for ch, SKU units in
// Available, the counter's mod revision, and whether the counter exists.
func figureAt(is *itemState, ch *Channel, loc LocationID, factor Units) (LocationAvailability, Revision, bool) {
	la := LocationAvailability{Location: loc, Buffer: is.buffer(ch, loc)}
	ct := is.counterAt(loc)
	if ct == nil {
		return la, 0, false
	}
	la.OnHand, la.Reserved, la.Committed = ct.onHand, ct.reserved, ct.committed
	la.Available = ct.available(la.Buffer) / factor
	la.Oversold = ct.oversold()
	return la, ct.modRev, true
}

// skuFigure is what Availability answers for (ch, sku): the total in SKU
// units and the mod revision. Apply goroutine only (no locks); sku must
// resolve for ch.
func (st *state) skuFigure(cat *catalog, ch *Channel, sku SKU) (Units, Revision) {
	item, factor, rev, _ := cat.resolve(ch, sku)
	rev = max(rev, cat.channelRevs[ch.ID])
	is := st.item(item)
	var total Units
	for _, loc := range ch.Locations {
		la, r, _ := figureAt(is, ch, loc, factor)
		rev = max(rev, r)
		total = saturatedAdd(total, la.Available)
	}
	return total, rev
}

// saturatedAdd adds non-negative units, stopping at the int64 maximum: a
// total never wraps negative (I1).
func saturatedAdd(a, b Units) Units {
	if s, ok := addUnits(a, b); ok {
		return s
	}
	return Units(^uint64(0) >> 1)
}

// checkExpected is compare-and-reserve: a line whose expected_mod_revision is
// set and differs from the SKU's current one refuses the cart with the
// current figure. lines are the cart's resolved lines.
func (st *state) checkExpected(cat *catalog, ch *Channel, c *logv1.Reserve, lines []ReservationLine) *Rejection {
	for i, l := range c.GetLines() {
		want := Revision(l.GetExpectedModRevision())
		if want == 0 {
			continue
		}
		avail, rev := st.skuFigure(cat, ch, lines[i].SKU)
		if rev == want {
			continue
		}
		r := reject(ErrRevisionChanged, indexed("lines", i, "expected_mod_revision"),
			"sku "+strconv.Quote(string(lines[i].SKU))+" moved: expected mod_revision "+strconv.FormatUint(uint64(want), 10)+
				", current "+strconv.FormatUint(uint64(rev), 10)+" with "+strconv.FormatInt(int64(avail), 10)+" available")
		r.ModRevision, r.AvailableSKU = rev, avail
		return r
	}
	return nil
}

// putSku maps a SKU to an item with a pack factor, or changes the mapping.
// Holds keep the factor they were made with. Putting the same mapping again
// keeps its mod revision.
func (st *state) putSku(c *logv1.PutSku) Result {
	if r := validatePutSku(c); r != nil {
		return Result{Err: r}
	}
	old := st.catalog.Load()
	sku := SKU(c.GetSku())
	m := skuMapping{item: ItemID(c.GetItem()), factor: Units(c.GetFactor()), modRev: st.index}
	if prev, ok := old.skus[sku]; ok && prev.item == m.item && prev.factor == m.factor {
		return Result{}
	}
	next := old.clone()
	next.skus = maps.Clone(old.skus)
	next.skus[sku] = m
	st.catalog.Store(next)
	st.noteSKU(sku)
	return Result{}
}

// deleteSku removes a SKU mapping no live hold uses; the SKU becomes its own
// item again (or unknown to channels that require mappings).
func (st *state) deleteSku(c *logv1.DeleteSku) Result {
	if r := validateDeleteSku(c); r != nil {
		return Result{Err: r}
	}
	old := st.catalog.Load()
	sku := SKU(c.GetSku())
	if m, ok := old.skus[sku]; !ok || m.factor == 0 {
		return Result{Err: reject(ErrUnknownSKU, "sku", "sku "+strconv.Quote(c.GetSku())+" has no mapping")}
	}
	if n := st.holdsBySKU[sku]; n > 0 {
		return Result{Err: reject(ErrInUse, "sku", "sku "+strconv.Quote(c.GetSku())+" is on "+strconv.Itoa(n)+" live hold lines")}
	}
	next := old.clone()
	next.skus = maps.Clone(old.skus)
	next.skus[sku] = skuMapping{modRev: st.index}
	st.catalog.Store(next)
	st.noteSKU(sku)
	return Result{}
}

// putLocationGroup creates or replaces a group; channels on it follow: they
// are rebuilt with its new locations and its revision.
func (st *state) putLocationGroup(c *logv1.PutLocationGroup) Result {
	if r := validatePutLocationGroup(c); r != nil {
		return Result{Err: r}
	}
	old := st.catalog.Load()
	g := &locationGroup{LocationGroup: LocationGroup{ID: c.GetId()}, modRev: st.index}
	for i, l := range c.GetLocations() {
		if _, ok := old.locations[LocationID(l)]; !ok {
			return Result{Err: reject(ErrUnknownLocation, "group.locations["+strconv.Itoa(i)+"]", "unknown location "+strconv.Quote(l))}
		}
		g.Locations = append(g.Locations, old.intern(LocationID(l)))
	}
	if prev := old.groups[g.ID]; prev != nil && slices.Equal(prev.Locations, g.Locations) {
		return Result{}
	}
	next := old.clone()
	next.groups = maps.Clone(old.groups)
	next.groups[g.ID] = g
	next.channels = maps.Clone(old.channels)
	next.channelRevs = maps.Clone(old.channelRevs)
	for id, ch := range old.channels {
		if ch.LocationGroup == g.ID {
			cp := *ch
			cp.Locations = g.Locations
			next.channels[id] = &cp
			next.channelRevs[id] = st.index
		}
	}
	st.catalog.Store(next)
	for _, id := range slices.Sorted(maps.Keys(next.channels)) {
		if next.channelRevs[id] == st.index && next.channels[id].LocationGroup == g.ID {
			st.noteChannel(id)
		}
	}
	return Result{}
}

// deleteLocationGroup removes a group no channel uses.
func (st *state) deleteLocationGroup(c *logv1.DeleteLocationGroup) Result {
	if r := checkID("id", c.GetId()); r != nil {
		return Result{Err: r}
	}
	old := st.catalog.Load()
	if old.groups[c.GetId()] == nil {
		return Result{Err: reject(ErrUnknownLocationGroup, "id", "unknown location group "+strconv.Quote(c.GetId()))}
	}
	if ch, ok := old.firstChannel(func(ch *Channel) bool { return ch.LocationGroup == c.GetId() }); ok {
		return Result{Err: reject(ErrInUse, "id", "location group "+strconv.Quote(c.GetId())+" is used by channel "+strconv.Quote(string(ch)))}
	}
	next := old.clone()
	next.groups = maps.Clone(old.groups)
	delete(next.groups, c.GetId())
	st.catalog.Store(next)
	return Result{}
}

// firstChannel returns the smallest channel id matching f: a refusal names
// the same channel on every replica.
func (c *catalog) firstChannel(f func(*Channel) bool) (ChannelID, bool) {
	var best ChannelID
	found := false
	for id, ch := range c.channels {
		if f(ch) && (!found || id < best) {
			best, found = id, true
		}
	}
	return best, found
}

// deleteLocation retires a location nothing uses any more: no channel or
// group lists it, no live hold is allocated there, and no counter there has
// reserved or committed units. Its counters (every item's) and the buffer
// rules naming it go with it.
func (st *state) deleteLocation(c *logv1.DeleteLocation) Result {
	if r := checkID("id", c.GetId()); r != nil {
		return Result{Err: r}
	}
	old := st.catalog.Load()
	id := LocationID(c.GetId())
	inUse := func(why string) Result {
		return Result{Err: reject(ErrInUse, "id", "location "+strconv.Quote(c.GetId())+" "+why)}
	}
	if _, ok := old.locations[id]; !ok {
		return Result{Err: reject(ErrUnknownLocation, "id", "unknown location "+strconv.Quote(c.GetId()))}
	}
	if ch, ok := old.firstChannel(func(ch *Channel) bool { return ch.sees(id) }); ok {
		return inUse("is seen by channel " + strconv.Quote(string(ch)))
	}
	for _, gid := range slices.Sorted(maps.Keys(old.groups)) {
		if slices.Contains(old.groups[gid].Locations, id) {
			return inUse("is in location group " + strconv.Quote(gid))
		}
	}
	if n := st.holdsByLocation[id]; n > 0 {
		return inUse("holds " + strconv.Itoa(n) + " live hold allocations")
	}
	if item, ok := st.firstPromisedAt(id); ok {
		return inUse("still has reserved or committed units of item " + strconv.Quote(string(item)))
	}
	if r := st.incomingInUse(id); r != nil { // incoming.go
		return Result{Err: r}
	}
	st.dropIncomingAt(id)
	st.dropItemState(func(is *itemState) {
		if i, ok := is.findCounter(id); ok {
			is.counters = deleteExact(is.counters, i)
		}
		is.setBuffers(slices.DeleteFunc(is.bufferRules(), func(b bufferRule) bool { return b.location == id }))
	})
	next := old.clone()
	next.locations = maps.Clone(old.locations)
	delete(next.locations, id)
	st.catalog.Store(next)
	return Result{}
}

// firstPromisedAt returns the smallest item with reserved or committed units at loc.
func (st *state) firstPromisedAt(loc LocationID) (ItemID, bool) {
	var best ItemID
	found := false
	for i := range st.shards {
		for id, is := range st.shards[i].items {
			if ct := is.counterAt(loc); ct != nil && (ct.reserved != 0 || ct.committed != 0) && (!found || id < best) {
				best, found = id, true
			}
		}
	}
	return best, found
}

// dropItemState applies edit to every item under its shard's write lock and
// forgets items left with nothing.
func (st *state) dropItemState(edit func(is *itemState)) {
	for i := range st.shards {
		sh := &st.shards[i]
		sh.mu.Lock()
		for id, is := range sh.items {
			edit(is)
			if len(is.counters) == 0 && len(is.bufferRules()) == 0 && len(is.incomingLines()) == 0 {
				delete(sh.items, id)
			}
		}
		sh.mu.Unlock()
	}
}

// deleteExact removes element i into a new array of exactly len(s)-1 elements.
func deleteExact[T any](s []T, i int) []T {
	if len(s) == 1 {
		return nil
	}
	out := make([]T, len(s)-1)
	copy(out, s[:i])
	copy(out[i:], s[i+1:])
	return out
}

// deleteChannel retires a channel without live holds, with the buffer rules
// naming it. Its remembered answers stay for their retry window.
func (st *state) deleteChannel(c *logv1.DeleteChannel) Result {
	if r := checkID("id", c.GetId()); r != nil {
		return Result{Err: r}
	}
	old := st.catalog.Load()
	id := ChannelID(c.GetId())
	if old.channels[id] == nil {
		return Result{Err: reject(ErrUnknownChannel, "id", "unknown channel "+strconv.Quote(c.GetId()))}
	}
	if n := st.holdsByChannel[id]; n > 0 {
		return Result{Err: reject(ErrInUse, "id", "channel "+strconv.Quote(c.GetId())+" has "+strconv.Itoa(n)+" live holds")}
	}
	st.dropItemState(func(is *itemState) {
		is.setBuffers(slices.DeleteFunc(is.bufferRules(), func(b bufferRule) bool { return b.channel == id }))
	})
	next := old.clone()
	next.channels = maps.Clone(old.channels)
	next.channelRevs = maps.Clone(old.channelRevs)
	delete(next.channels, id)
	delete(next.channelRevs, id)
	st.catalog.Store(next)
	st.noteChannel(id)
	return Result{}
}

func validatePutSku(c *logv1.PutSku) *Rejection {
	if r := firstOf(checkID("sku.sku", c.GetSku()), checkID("sku.item", c.GetItem())); r != nil {
		return r
	}
	if f := c.GetFactor(); f < 1 || f > MaxPackFactor {
		return invalid("sku.factor", "must be between 1 and "+strconv.Itoa(MaxPackFactor)+", got "+strconv.FormatInt(f, 10))
	}
	return nil
}

func validateDeleteSku(c *logv1.DeleteSku) *Rejection { return checkID("sku", c.GetSku()) }

func validatePutLocationGroup(c *logv1.PutLocationGroup) *Rejection {
	if r := checkID("group.id", c.GetId()); r != nil {
		return r
	}
	return checkLocationList("group.locations", c.GetLocations())
}

// checkLocationList requires 1 to MaxChannelLocations ids without repeats.
func checkLocationList(field string, locs []string) *Rejection {
	n := len(locs)
	if n == 0 {
		return invalid(field, "at least one location is required")
	}
	if n > MaxChannelLocations {
		return invalid(field, "at most "+strconv.Itoa(MaxChannelLocations)+" locations, got "+strconv.Itoa(n))
	}
	for i, l := range locs {
		f := field + "[" + strconv.Itoa(i) + "]"
		if r := checkID(f, l); r != nil {
			return r
		}
		if slices.Contains(locs[:i], l) {
			return invalid(f, "location "+strconv.Quote(l)+" is listed twice")
		}
	}
	return nil
}

// cmpSKUMapping orders mappings by SKU.
func cmpSKUMapping(a, b SKUMapping) int { return cmp.Compare(a.SKU, b.SKU) }

// restoreLocationGroup decodes a group record: a new id, 1 to 64 declared
// locations without repeats, a revision not after the snapshot's index.
func (st *state) restoreLocationGroup(cat *catalog, rec *logv1.LocationGroupRecord) error {
	id := rec.GetId()
	if _, dup := cat.groups[id]; dup {
		return fmt.Errorf("location group %q twice", id)
	}
	if r := firstOf(checkID("id", id), checkLocationList("locations", rec.GetLocations())); r != nil {
		return fmt.Errorf("location group %q: %w", id, r)
	}
	if err := st.checkRev(rec.GetModRevision(), func() string { return "location group " + strconv.Quote(id) }); err != nil {
		return err
	}
	g := &locationGroup{LocationGroup: LocationGroup{ID: id}, modRev: Revision(rec.GetModRevision())}
	for _, l := range rec.GetLocations() {
		if _, ok := cat.locations[LocationID(l)]; !ok {
			return fmt.Errorf("location group %q names undeclared location %q", id, l)
		}
		g.Locations = append(g.Locations, cat.intern(LocationID(l)))
	}
	cat.groups[id] = g
	return nil
}

// restoreChannel decodes a channel record: declared locations, or (without
// locations) a declared group whose locations it takes, and a revision not
// before its group's.
func (st *state) restoreChannel(cat *catalog, rec *logv1.ChannelRecord) error {
	c := &Channel{ID: ChannelID(rec.GetId()), DefaultBuffer: Units(rec.GetDefaultBufferBaseUnits()),
		LocationGroup: rec.GetLocationGroup(), RequireSKUMapping: rec.GetRequireSkuMapping()}
	if c.DefaultBuffer < 0 {
		return fmt.Errorf("channel %q default buffer is %d, want >= 0", c.ID, c.DefaultBuffer)
	}
	if _, dup := cat.channels[c.ID]; dup {
		return fmt.Errorf("channel %q twice", c.ID)
	}
	rev := Revision(rec.GetModRevision())
	if err := st.checkRev(rec.GetModRevision(), func() string { return "channel " + strconv.Quote(string(c.ID)) }); err != nil {
		return err
	}
	if c.LocationGroup != "" {
		g := cat.groups[c.LocationGroup]
		switch {
		case g == nil:
			return fmt.Errorf("channel %q names undeclared location group %q", c.ID, c.LocationGroup)
		case len(rec.GetLocations()) > 0:
			return fmt.Errorf("channel %q has both locations and location group %q", c.ID, c.LocationGroup)
		case rev < g.modRev:
			return fmt.Errorf("channel %q mod_revision %d is before its group's %d", c.ID, rev, g.modRev)
		}
		c.Locations = g.Locations
	} else if r := checkLocationList("locations", rec.GetLocations()); r != nil {
		return fmt.Errorf("channel %q: %w", c.ID, r)
	}
	for _, l := range rec.GetLocations() {
		if _, ok := cat.locations[LocationID(l)]; !ok {
			return fmt.Errorf("channel %q names undeclared location %q", c.ID, l)
		}
		c.Locations = append(c.Locations, cat.intern(LocationID(l)))
	}
	cat.channels[c.ID] = c
	cat.channelRevs[c.ID] = rev
	return nil
}

// restoreSKU decodes a SKU mapping (item and factor in range) or a
// tombstone (no item, factor 0).
func (st *state) restoreSKU(cat *catalog, rec *logv1.SkuRecord) error {
	sku := SKU(rec.GetSku())
	if _, dup := cat.skus[sku]; dup {
		return fmt.Errorf("sku %q twice", sku)
	}
	if r := checkID("sku", rec.GetSku()); r != nil {
		return fmt.Errorf("sku %q: %w", sku, r)
	}
	tombstone := rec.GetFactor() == 0 && rec.GetItem() == ""
	if !tombstone {
		if r := validatePutSku(&logv1.PutSku{Sku: rec.GetSku(), Item: rec.GetItem(), Factor: rec.GetFactor()}); r != nil {
			return fmt.Errorf("sku %q: %w", sku, r)
		}
	}
	if err := st.checkRev(rec.GetModRevision(), func() string { return "sku " + strconv.Quote(string(sku)) }); err != nil {
		return err
	}
	cat.skus[sku] = skuMapping{item: ItemID(rec.GetItem()), factor: Units(rec.GetFactor()), modRev: Revision(rec.GetModRevision())}
	return nil
}

// checkBufferTarget: a buffer rule names declared channels and locations.
func (c *catalog) checkBufferTarget(b bufferRule) error {
	if b.channel != "" && c.channels[b.channel] == nil {
		return fmt.Errorf("a buffer rule names undeclared channel %q", b.channel)
	}
	if _, ok := c.locations[b.location]; b.location != "" && !ok {
		return fmt.Errorf("a buffer rule names undeclared location %q", b.location)
	}
	return nil
}

// checkRev: a mod revision is an entry index not after the snapshot's. what
// names the record, called only when it fails: a restore checks a million.
func (st *state) checkRev(rev uint64, what func() string) error {
	if applied := st.applied.Load(); rev > applied {
		return fmt.Errorf("%s has mod_revision %d, after the applied index %d", what(), rev, applied)
	}
	return nil
}

// countLiveHolds rebuilds the live-hold counts from the held reservations.
func (st *state) countLiveHolds() {
	for _, r := range st.reservations {
		if r.State == StateHeld {
			st.holdStarted(r)
		}
	}
}
