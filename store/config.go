package store

import (
	"cmp"
	"maps"
	"slices"
	"strconv"

	"github.com/stockd/stockd/api/logv1"
)

// putLocation declares or renames a location. The catalog is copied and
// republished, so reads never lock it.
func (st *state) putLocation(c *logv1.PutLocation) Result {
	if r := validatePutLocation(c); r != nil {
		return Result{Err: r}
	}
	old := st.catalog.Load()
	next := old.clone()
	next.locations = maps.Clone(old.locations)
	next.locations[LocationID(c.GetId())] = Location{ID: LocationID(c.GetId()), Name: c.GetName()}
	st.catalog.Store(next)
	return Result{}
}

// putChannel creates or replaces a channel; every location must be
// declared, or the location group must exist (the channel then sees the
// group's locations, and follows it). Putting the same channel again keeps
// its mod revision.
func (st *state) putChannel(c *logv1.PutChannel) Result {
	if r := validatePutChannel(c); r != nil {
		return Result{Err: r}
	}
	old := st.catalog.Load()
	ch := &Channel{ID: ChannelID(c.GetId()), DefaultBuffer: Units(c.GetDefaultBufferBaseUnits()),
		LocationGroup: c.GetLocationGroup(), RequireSKUMapping: c.GetRequireSkuMapping()}
	if ch.LocationGroup != "" {
		g := old.groups[ch.LocationGroup]
		if g == nil {
			return Result{Err: reject(ErrUnknownLocationGroup, "channel.location_group",
				"unknown location group "+strconv.Quote(ch.LocationGroup))}
		}
		ch.Locations = g.Locations
	}
	for i, l := range c.GetLocations() {
		if _, ok := old.locations[LocationID(l)]; !ok {
			return Result{Err: reject(ErrUnknownLocation, "channel.locations["+strconv.Itoa(i)+"]",
				"unknown location "+strconv.Quote(l))}
		}
		ch.Locations = append(ch.Locations, LocationID(l))
	}
	if prev := old.channels[ch.ID]; prev != nil && prev.DefaultBuffer == ch.DefaultBuffer && prev.LocationGroup == ch.LocationGroup &&
		prev.RequireSKUMapping == ch.RequireSKUMapping && slices.Equal(prev.Locations, ch.Locations) {
		return Result{}
	}
	next := old.clone()
	next.channels = maps.Clone(old.channels)
	next.channelRevs = maps.Clone(old.channelRevs)
	next.channels[ch.ID] = ch
	next.channelRevs[ch.ID] = st.index
	st.catalog.Store(next)
	st.noteChannel(ch.ID)
	return Result{}
}

// setBuffer sets (or, with 0 units, removes) one buffer rule of an item.
func (st *state) setBuffer(c *logv1.SetBuffer) Result {
	if r := validateSetBuffer(c); r != nil {
		return Result{Err: r}
	}
	cat := st.catalog.Load()
	if ch := c.GetChannel(); ch != "" && cat.channels[ChannelID(ch)] == nil {
		return Result{Err: reject(ErrUnknownChannel, "channel", "unknown channel "+strconv.Quote(ch))}
	}
	if loc := c.GetLocation(); loc != "" {
		if _, ok := cat.locations[LocationID(loc)]; !ok {
			return Result{Err: reject(ErrUnknownLocation, "location", "unknown location "+strconv.Quote(loc))}
		}
	}
	item := ItemID(c.GetItem())
	rule := bufferRule{channel: ChannelID(c.GetChannel()), location: LocationID(c.GetLocation()), units: Units(c.GetBufferBaseUnits())}
	sh := st.shardFor(item)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	is := sh.items[item]
	if is == nil {
		if rule.units == 0 {
			return Result{}
		}
		is = &itemState{}
		sh.items[item] = is
	}
	buffers := is.bufferRules()
	i, found := slices.BinarySearchFunc(buffers, rule, cmpRule)
	switch {
	case found && buffers[i].units == rule.units:
		return Result{} // no change: mod revisions stay
	case found && rule.units == 0:
		is.setBuffers(slices.Delete(buffers, i, i+1))
	case found:
		buffers[i] = rule
	case rule.units != 0:
		is.setBuffers(slices.Insert(buffers, i, rule))
	default:
		return Result{}
	}
	st.touchItem(is)
	st.noteItem(item, rule.channel, rule.location)
	return Result{}
}

func cmpRule(a, b bufferRule) int {
	return cmp.Or(cmp.Compare(a.channel, b.channel), cmp.Compare(a.location, b.location))
}

// putNode records (or updates) a cluster member.
func (st *state) putNode(c *logv1.PutNode) Result {
	if r := validatePutNode(c); r != nil {
		return Result{Err: r}
	}
	old := st.catalog.Load()
	next := old.clone()
	next.nodes = maps.Clone(old.nodes)
	next.nodes[c.GetId()] = Node{ID: c.GetId(), RaftAddr: c.GetRaftAddr(), GRPCAddr: c.GetGrpcAddr(), FeatureVersion: c.GetFeatureVersion()}
	st.catalog.Store(next)
	return Result{}
}

// removeNode forgets a member's record; forgetting an unknown one is a no-op.
func (st *state) removeNode(c *logv1.RemoveNode) Result {
	if r := checkID("node_id", c.GetId()); r != nil {
		return Result{Err: r}
	}
	old := st.catalog.Load()
	if _, ok := old.nodes[c.GetId()]; !ok {
		return Result{}
	}
	next := old.clone()
	next.nodes = maps.Clone(old.nodes)
	delete(next.nodes, c.GetId())
	st.catalog.Store(next)
	return Result{}
}
