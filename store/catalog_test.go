package store_test

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// Scenarios of the issue 4 catalog: SKU mappings with pack factors, location
// groups, retiring locations, channels, groups and SKUs, mod revisions and
// compare-and-reserve.

func putSku(sku, item string, factor int64) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_PutSku{PutSku: &logv1.PutSku{Sku: sku, Item: item, Factor: factor}}}
}

func deleteSku(sku string) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_DeleteSku{DeleteSku: &logv1.DeleteSku{Sku: sku}}}
}

func putGroup(id string, locations ...string) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_PutLocationGroup{PutLocationGroup: &logv1.PutLocationGroup{Id: id, Locations: locations}}}
}

func deleteGroup(id string) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_DeleteLocationGroup{DeleteLocationGroup: &logv1.DeleteLocationGroup{Id: id}}}
}

func deleteLocation(id string) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_DeleteLocation{DeleteLocation: &logv1.DeleteLocation{Id: id}}}
}

func deleteChannel(id string) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_DeleteChannel{DeleteChannel: &logv1.DeleteChannel{Id: id}}}
}

// groupChannel declares a channel that sees a location group.
func groupChannel(id string, buffer int64, group string) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_PutChannel{PutChannel: &logv1.PutChannel{
		Id: id, LocationGroup: group, DefaultBufferBaseUnits: buffer,
	}}}
}

// strict makes a PutChannel require SKU mappings.
func strict(c *logv1.Command) *logv1.Command {
	c.GetPutChannel().RequireSkuMapping = true
	return c
}

// expecting sets a reserve line's expected_mod_revision.
func expecting(l *logv1.ReserveLine, rev uint64) *logv1.ReserveLine {
	l.ExpectedModRevision = rev
	return l
}

// skuFigure checks channel ch's figure of sku: the total in SKU units, the
// factor and the mod revision (0: not checked).
func skuFigure(ch, sku string, total, factor int64, rev store.Revision) step {
	return checkStep(fmt.Sprintf("figure %s/%s", ch, sku), func(t *testing.T, m *store.Machine, where string) {
		var a store.SKUAvailability
		if err := m.Availability(store.ChannelID(ch), store.SKU(sku), &a); err != nil {
			t.Fatalf("%s: got error %v, want total %d", where, err, total)
		}
		if int64(a.Available) != total || int64(a.Factor) != factor || (rev != 0 && a.ModRevision != rev) {
			t.Errorf("%s: got total %d factor %d mod_revision %d (locations %+v), want %d, %d, %d",
				where, a.Available, a.Factor, a.ModRevision, a.Locations, total, factor, rev)
		}
	})
}

// revIs checks only the mod revision of (ch, sku).
func revIs(ch, sku string, want store.Revision) step {
	return checkStep(fmt.Sprintf("mod_revision %s/%s", ch, sku), func(t *testing.T, m *store.Machine, where string) {
		var a store.SKUAvailability
		if err := m.Availability(store.ChannelID(ch), store.SKU(sku), &a); err != nil {
			t.Fatalf("%s: got error %v, want mod_revision %d", where, err, want)
		}
		if a.ModRevision != want {
			t.Errorf("%s: got mod_revision %d, want %d", where, a.ModRevision, want)
		}
	})
}

// moved expects an ErrRevisionChanged answer carrying the current figure.
func (s step) moved(rev store.Revision, availableSKU int64) step {
	return s.also(func(t *testing.T, where string, res store.Result) {
		var rej *store.Rejection
		if !errors.As(res.Err, &rej) || rej.ModRevision != rev || int64(rej.AvailableSKU) != availableSKU {
			t.Errorf("%s: got %v (%+v), want mod_revision %d and %d available", where, res.Err, rej, rev, availableSKU)
		}
	})
}

// factors expects the answer's line factors.
func (s step) factors(want ...int64) step {
	return s.also(func(t *testing.T, where string, res store.Result) {
		var got []int64
		if res.Reservation != nil {
			for _, l := range res.Reservation.Lines {
				got = append(got, int64(l.Factor))
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got line factors %v, want %v", where, got, want)
		}
	})
}

func skusAre(item string, want ...store.SKUMapping) step {
	return checkStep("skus of "+item, func(t *testing.T, m *store.Machine, where string) {
		if got := m.SKUs(store.ItemID(item)); !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
			t.Errorf("%s: got %+v, want %+v", where, got, want)
		}
	})
}

func groupsAre(want ...store.LocationGroup) step {
	return checkStep("location groups", func(t *testing.T, m *store.Machine, where string) {
		if got := m.LocationGroups(); !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
			t.Errorf("%s: got %+v, want %+v", where, got, want)
		}
	})
}

func buffersAre(item string, want ...store.BufferRule) step {
	return checkStep("buffers of "+item, func(t *testing.T, m *store.Machine, where string) {
		if got := m.Buffers(store.ItemID(item)); !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
			t.Errorf("%s: got %+v, want %+v", where, got, want)
		}
	})
}

func sku(s, item string, factor int64) store.SKUMapping {
	return store.SKUMapping{SKU: store.SKU(s), Item: store.ItemID(item), Factor: store.Units(factor)}
}

func TestScenarioPackSizes(t *testing.T) {
	world := []step{ok(loc("ams")), ok(loc("fra")), ok(channel("web", 0, "ams", "fra")), ok(putSku("rose-case12", "rose", 12))}
	runAll(t, []scenario{
		{name: "I1 11 units are 0 cases of 12 and a case is refused", steps: with(world,
			ok(setStock(row("rose", "ams", 11, 1))),
			skuFigure("web", "rose-case12", 0, 12, 0), figure("web", "rose-case12", "ams", fig{OnHand: 11}),
			// What could be had is reported in base units of whole cases.
			fails(reserve("web", "r1", 0, line("rose-case12", 1)), store.ErrInsufficientStock, "lines[0].quantity").asks(12, 0),
			fails(reserve("web", "r2", 0, lineAt("rose-case12", 1, "ams")), store.ErrInsufficientStock, "lines[0].quantity").asks(12, 0),
			ok(reserve("web", "r3", 0, line("rose", 11))).held(at(0, "ams", 11)),
		)},
		{name: "12 units are 1 case and reserving it holds 12 base units", steps: with(world,
			ok(setStock(row("rose", "ams", 12, 1))),
			skuFigure("web", "rose-case12", 1, 12, 0), figure("web", "rose-case12", "ams", fig{OnHand: 12, Available: 1}),
			ok(reserve("web", "r1", 0, line("rose-case12", 1))).held(at(0, "ams", 12)).factors(12),
			skuFigure("web", "rose-case12", 0, 12, 0), figure("web", "rose", "ams", fig{OnHand: 12, Reserved: 12}),
			ok(release("web", "r1")), figure("web", "rose", "ams", fig{OnHand: 12, Available: 12}),
		)},
		{name: "two SKUs of one item and the item itself see one pool", steps: with(world,
			ok(putSku("rose-pair", "rose", 2)), ok(setStock(row("rose", "ams", 30, 1))),
			skuFigure("web", "rose-case12", 2, 12, 0), skuFigure("web", "rose-pair", 15, 2, 0), skuFigure("web", "rose", 30, 1, 0),
			ok(reserve("web", "r1", 0, line("rose-case12", 2))).held(at(0, "ams", 24)),
			skuFigure("web", "rose-case12", 0, 12, 0), skuFigure("web", "rose-pair", 3, 2, 0), skuFigure("web", "rose", 6, 1, 0),
			// Lines of two SKUs of one item draw on one pool: 2 pairs and 3 units are 7 > 6.
			fails(reserve("web", "r2", 0, line("rose-pair", 2), line("rose", 3)), store.ErrInsufficientStock, "lines[1].quantity"),
			ok(reserve("web", "r3", 0, line("rose-pair", 2), line("rose", 2))).held(at(0, "ams", 4), at(1, "ams", 2)).factors(2, 1),
		)},
		{name: "a cart splits across locations in whole cases", steps: with(world,
			ok(setStock(row("rose", "ams", 13, 1), row("rose", "fra", 13, 1))),
			skuFigure("web", "rose-case12", 2, 12, 0),
			ok(reserve("web", "r1", 0, line("rose-case12", 2))).held(at(0, "ams", 12), at(0, "fra", 12)),
			figure("web", "rose-case12", "ams", fig{OnHand: 13, Reserved: 12}),
		)},
		{name: "a factor change does not reprice a hold", steps: with(world,
			ok(setStock(row("rose", "ams", 30, 1))),
			ok(reserve("web", "r1", 0, line("rose-case12", 1))).held(at(0, "ams", 12)),
			ok(putSku("rose-case12", "rose", 6)), skuFigure("web", "rose-case12", 3, 6, 0),
			figure("web", "rose", "ams", fig{OnHand: 30, Reserved: 12, Available: 18}),
			ok(release("web", "r1")).is(store.StateReleased).factors(12),
			figure("web", "rose", "ams", fig{OnHand: 30, Available: 30}), skuFigure("web", "rose-case12", 5, 6, 0),
		)},
		{name: "remapping a SKU to another item moves its figure", steps: with(world,
			ok(setStock(row("rose", "ams", 24, 1), row("tulip", "ams", 5, 1))),
			skuFigure("web", "rose-case12", 2, 12, 0),
			ok(putSku("rose-case12", "tulip", 1)), skuFigure("web", "rose-case12", 5, 1, 0),
			skusAre("rose"), skusAre("tulip", sku("rose-case12", "tulip", 1)),
		)},
		{name: "an unmapped SKU on a channel that requires mappings is unknown", steps: with(world,
			ok(strict(channel("mkt", 0, "ams"))), ok(setStock(row("rose", "ams", 24, 1))),
			fails(reserve("mkt", "r1", 0, line("rose-case12", 1), line("rose", 1)), store.ErrUnknownSKU, "lines[1].sku"),
			availErr("mkt", "rose", store.ErrUnknownSKU),
			checkStep("the read refusal names skus", func(t *testing.T, m *store.Machine, where string) {
				var a store.SKUAvailability
				var rej *store.Rejection
				if err := m.Availability("mkt", "rose", &a); !errors.As(err, &rej) || rej.Field != "skus" {
					t.Errorf("%s: got %v, want a rejection naming skus", where, err)
				}
			}),
			skuFigure("mkt", "rose-case12", 2, 12, 0),
			ok(reserve("mkt", "r2", 0, line("rose-case12", 1))).held(at(0, "ams", 12)),
			// Another channel still sees the unmapped SKU as its own item.
			skuFigure("web", "rose", 12, 1, 0),
		)},
		{name: "factors outside 1 to 1,000,000 and empty ids are invalid", steps: with(world,
			fails(putSku("x", "rose", 0), store.ErrInvalid, "sku.factor"),
			fails(putSku("x", "rose", store.MaxPackFactor+1), store.ErrInvalid, "sku.factor"),
			fails(putSku("x", "", 2), store.ErrInvalid, "sku.item"),
			fails(putSku("", "rose", 2), store.ErrInvalid, "sku.sku"),
			ok(putSku("x", "rose", store.MaxPackFactor)),
			skusAre("", sku("rose-case12", "rose", 12), sku("x", "rose", store.MaxPackFactor)),
		)},
		{name: "a SKU mapping in use by a live hold cannot be deleted until it drains", steps: with(world,
			ok(setStock(row("rose", "ams", 24, 1))),
			fails(deleteSku("nope"), store.ErrUnknownSKU, "sku"),
			ok(reserve("web", "r1", 0, line("rose-case12", 1))),
			fails(deleteSku("rose-case12"), store.ErrInUse, "sku"),
			ok(confirm("web", "r1", "o1")),
			ok(deleteSku("rose-case12")), skusAre(""),
			fails(deleteSku("rose-case12"), store.ErrUnknownSKU, "sku"),
			// Unmapped again: its own item, of which nothing is counted.
			skuFigure("web", "rose-case12", 0, 1, 0), known("web", "rose-case12", false),
			ok(putSku("rose-case12", "rose", 12)), skuFigure("web", "rose-case12", 1, 12, 0),
		)},
		{name: "an expired hold frees its SKU for deletion", steps: with(world,
			ok(setStock(row("rose", "ams", 24, 1))),
			ok(reserve("web", "r1", time.Minute, line("rose-case12", 1))),
			fails(deleteSku("rose-case12"), store.ErrInUse, "sku"),
			ok(deleteSku("rose-case12")).after(time.Minute),
		)},
	})
}

func TestScenarioLocationGroups(t *testing.T) {
	world := []step{
		ok(loc("ams")), ok(loc("fra")), ok(loc("ber")),
		ok(setStock(row("rose", "ams", 10, 1), row("rose", "fra", 4, 1), row("rose", "ber", 1, 1))),
		ok(putGroup("west", "ams")),
	}
	runAll(t, []scenario{
		{name: "a channel follows its group's changes", steps: with(world,
			ok(groupChannel("web", 0, "west")), avail("web", "rose", 10),
			channelsAre(store.Channel{ID: "web", Locations: []store.LocationID{"ams"}, LocationGroup: "west"}),
			ok(putGroup("west", "fra", "ams")), avail("web", "rose", 14),
			channelsAre(store.Channel{ID: "web", Locations: []store.LocationID{"fra", "ams"}, LocationGroup: "west"}),
			groupsAre(store.LocationGroup{ID: "west", Locations: []store.LocationID{"fra", "ams"}}),
			// Priority order follows the group: fra fills a single-location cart first.
			ok(reserve("web", "r1", 0, line("rose", 3))).held(at(0, "fra", 3)),
			fails(reserve("web", "r2", 0, lineAt("rose", 1, "ber")), store.ErrLocationNotVisible, "lines[0].location"),
			restoresCleanly(),
		)},
		{name: "a channel with both locations and a group, or neither, is invalid", steps: with(world,
			fails(&logv1.Command{Kind: &logv1.Command_PutChannel{PutChannel: &logv1.PutChannel{Id: "web", Locations: []string{"ams"}, LocationGroup: "west"}}},
				store.ErrInvalid, "channel.location_group"),
			fails(channel("web", 0), store.ErrInvalid, "channel.locations"),
			fails(groupChannel("web", 0, "east"), store.ErrUnknownLocationGroup, "channel.location_group"),
			channelsAre(),
		)},
		{name: "a group of unknown, repeated or no locations is refused", steps: with(world,
			fails(putGroup("east", "ber", "zrh"), store.ErrUnknownLocation, "group.locations[1]"),
			fails(putGroup("east", "ber", "fra", "ber"), store.ErrInvalid, "group.locations[2]"),
			fails(putGroup("east"), store.ErrInvalid, "group.locations"),
			fails(putGroup("", "ams"), store.ErrInvalid, "group.id"),
			groupsAre(store.LocationGroup{ID: "west", Locations: []store.LocationID{"ams"}}),
		)},
		{name: "a group in use cannot be deleted until no channel uses it", steps: with(world,
			ok(groupChannel("web", 0, "west")), ok(strict(groupChannel("b2b", 0, "west"))),
			fails(deleteGroup("west"), store.ErrInUse, "id"),
			fails(deleteGroup("east"), store.ErrUnknownLocationGroup, "id"),
			ok(channel("web", 0, "ber")), fails(deleteGroup("west"), store.ErrInUse, "id"),
			ok(deleteChannel("b2b")), ok(deleteGroup("west")), groupsAre(),
			channelsAre(store.Channel{ID: "web", Locations: []store.LocationID{"ber"}}),
			fails(groupChannel("web", 0, "west"), store.ErrUnknownLocationGroup, "channel.location_group"),
		)},
		{name: "channels list their group and whether they require mappings", steps: with(world,
			ok(strict(groupChannel("web", 2, "west"))),
			channelsAre(store.Channel{ID: "web", Locations: []store.LocationID{"ams"}, DefaultBuffer: 2, LocationGroup: "west", RequireSKUMapping: true}),
		)},
	})
}

func TestScenarioDeleteLocation(t *testing.T) {
	world := []step{
		ok(loc("ams")), ok(loc("fra")), ok(channel("web", 0, "ams", "fra")),
		ok(setStock(row("rose", "ams", 10, 1), row("rose", "fra", 10, 1), row("tulip", "fra", 3, 1))),
		ok(buffer("rose", "", "fra", 1)), ok(buffer("rose", "web", "fra", 2)), ok(buffer("rose", "web", "", 1)),
	}
	runAll(t, []scenario{
		{name: "an unknown location is refused", steps: with(world,
			fails(deleteLocation("zrh"), store.ErrUnknownLocation, "id"),
		)},
		{name: "a location a channel or a group lists is in use", steps: with(world,
			fails(deleteLocation("fra"), store.ErrInUse, "id"),
			ok(channel("web", 0, "ams")), ok(putGroup("west", "fra")),
			fails(deleteLocation("fra"), store.ErrInUse, "id"),
			ok(deleteGroup("west")), ok(deleteLocation("fra")),
		)},
		{name: "holds and unabsorbed orders keep a location until they drain, then its counters and rules go", steps: with(world,
			ok(reserve("web", "r1", 0, lineAt("rose", 2, "fra"))),
			ok(reserve("web", "r2", 0, lineAt("tulip", 1, "fra"))),
			ok(channel("web", 0, "ams")),
			fails(deleteLocation("fra"), store.ErrInUse, "id"),
			ok(release("web", "r1")), ok(confirm("web", "r2", "o1")),
			// The order is committed at fra until the ERP absorbs it.
			fails(deleteLocation("fra"), store.ErrInUse, "id"),
			ok(setStockMark(1)),
			ok(deleteLocation("fra")),
			locationsAre(store.Location{ID: "ams", Name: "ams warehouse"}),
			buffersAre("rose", store.BufferRule{Item: "rose", Channel: "web", Units: 1}),
			ok(setStock(row("rose", "fra", 1, 2))).rowsAre(rejected("rows[0].location")),
			restoresCleanly(),
			// Declared again, fra starts empty: no counter, no rule.
			ok(loc("fra")), ok(channel("web", 0, "fra", "ams")),
			figure("web", "rose", "fra", fig{Buffer: 1}), known("web", "tulip", false),
			figure("web", "rose", "ams", fig{OnHand: 10, Buffer: 1, Available: 9}),
		)},
	})
}

func TestScenarioDeleteChannel(t *testing.T) {
	world := []step{
		ok(loc("ams")), ok(channel("web", 0, "ams")), ok(channel("rep", 0, "ams")),
		ok(setStock(row("rose", "ams", 10, 1))),
		ok(buffer("rose", "web", "", 3)), ok(buffer("rose", "rep", "ams", 1)), ok(buffer("rose", "", "", 2)),
	}
	runAll(t, []scenario{
		{name: "an unknown channel is refused", steps: with(world,
			fails(deleteChannel("nope"), store.ErrUnknownChannel, "id"), fails(deleteChannel(""), store.ErrInvalid, "id"),
		)},
		{name: "live holds keep a channel until they drain, then it and its rules go", steps: with(world,
			ok(reserve("web", "r1", time.Minute, line("rose", 1))),
			ok(reserve("web", "r2", 0, line("rose", 1))),
			fails(deleteChannel("web"), store.ErrInUse, "id"),
			ok(confirm("web", "r2", "o1")),
			fails(deleteChannel("web"), store.ErrInUse, "id").after(30*time.Second),
			ok(deleteChannel("web")).after(30*time.Second),
			availErr("web", "rose", store.ErrUnknownChannel),
			buffersAre("rose", store.BufferRule{Item: "rose", Units: 2}, store.BufferRule{Item: "rose", Channel: "rep", Location: "ams", Units: 1}),
			fails(reserve("web", "r3", 0, line("rose", 1)), store.ErrUnknownChannel, "channel"),
			// Remembered answers stay for their window.
			ok(reserve("web", "r2", 0, line("rose", 1))).is(store.StateConfirmed),
			restoresCleanly(),
			// A new channel of the same id starts without the old rules.
			ok(channel("web", 0, "ams")), figure("web", "rose", "ams", fig{OnHand: 10, Committed: 1, Buffer: 2, Available: 7}),
		)},
	})
}

// TestScenarioModRevision numbers every entry: a SKU's mod_revision is the
// index of the last entry that changed an input of its figure.
func TestScenarioModRevision(t *testing.T) {
	runAll(t, []scenario{{name: "mod_revision moves on every input of the figure and on nothing else", steps: []step{
		ok(loc("ams")), ok(loc("fra")), ok(loc("ber")), // 1-3
		ok(channel("web", 0, "ams", "fra")), ok(channel("rep", 0, "ber")), // 4, 5
		ok(setStock(row("rose", "ams", 10, 1), row("rose", "fra", 10, 1), row("tulip", "ams", 10, 1), row("rose", "ber", 5, 1))), // 6
		revIs("web", "rose", 6), revIs("web", "tulip", 6), revIs("rep", "rose", 6), revIs("rep", "tulip", 5),
		ok(setStock(row("tulip", "ams", 20, 2))), revIs("web", "rose", 6), revIs("web", "tulip", 7), // 7
		ok(adjust(delta("d1", "rose", "ber", 1, 0))), revIs("web", "rose", 6), revIs("rep", "rose", 8), // 8
		ok(setStock(row("rose", "ams", 10, 1))).rowsAre(stale("rows[0].version", 1, 10)), revIs("web", "rose", 6), // 9: stale
		ok(reserve("web", "r1", 0, line("rose", 1))), revIs("web", "rose", 10), revIs("rep", "rose", 8), // 10
		fails(reserve("web", "r2", 0, line("rose", 99)), store.ErrInsufficientStock, "lines[0].quantity"), revIs("web", "rose", 10), // 11
		ok(buffer("tulip", "", "", 1)), revIs("web", "rose", 10), revIs("web", "tulip", 12), // 12
		ok(buffer("rose", "rep", "", 1)), revIs("web", "rose", 13), // 13: any rule of the item
		ok(buffer("rose", "rep", "", 1)), revIs("web", "rose", 13), // 14: no change
		ok(buffer("lily", "", "", 0)), revIs("web", "rose", 13), // 15: no change
		ok(channel("rep", 0, "ber")), revIs("rep", "rose", 13), // 16: the same channel again
		ok(channel("web", 0, "fra", "ams")), revIs("web", "rose", 17), revIs("web", "tulip", 17), revIs("rep", "rose", 13), // 17
		ok(putGroup("g", "ber")), revIs("rep", "rose", 13), // 18
		ok(groupChannel("rep", 0, "g")), revIs("rep", "rose", 19), // 19
		ok(putGroup("g", "ber", "ams")), revIs("rep", "rose", 20), revIs("web", "rose", 17), // 20
		ok(putGroup("g", "ber", "ams")), revIs("rep", "rose", 20), // 21: no change
		ok(putSku("rose-case", "rose", 2)), revIs("web", "rose-case", 22), revIs("web", "rose", 17), // 22
		ok(putSku("rose-case", "rose", 2)), revIs("web", "rose-case", 22), // 23: no change
		ok(putSku("other", "tulip", 3)), revIs("web", "rose-case", 22), // 24: another mapping
		ok(confirm("web", "r1", "o1")), revIs("web", "rose-case", 25), revIs("web", "tulip", 17), // 25
		ok(setStockMark(1)), revIs("web", "rose", 26), // 26: the absorbed mark takes the order out of committed
		ok(putLocation("ams", "Amsterdam")), revIs("web", "rose", 26), // 27: a rename changes no figure
		ok(reserve("web", "r3", time.Minute, line("tulip", 1))), revIs("web", "tulip", 28), // 28
		tick(time.Minute), revIs("web", "tulip", 29), revIs("web", "rose", 26), // 29: expiry
		ok(deleteSku("rose-case")), revIs("web", "rose-case", 30), revIs("web", "rose", 26), // 30
		ok(putNode("n1", "n1:1", "n1:2", 2)), revIs("web", "rose", 26), // 31
		restoresCleanly(),
	}}})
}

func putLocation(id, name string) *logv1.Command { return locNamed(id, name) }

func TestScenarioCompareAndReserve(t *testing.T) {
	world := []step{
		ok(loc("ams")), ok(channel("web", 0, "ams")), ok(setStock(row("rose", "ams", 10, 1), row("tulip", "ams", 10, 1))), // 1-3
		ok(putSku("rose-pair", "rose", 2)), // 4
		revIs("web", "rose-pair", 4), revIs("web", "tulip", 3),
	}
	runAll(t, []scenario{
		{name: "a matching revision reserves", steps: with(world,
			ok(reserve("web", "r1", 0, expecting(line("rose-pair", 1), 4), expecting(line("tulip", 1), 3))).held(at(0, "ams", 2), at(1, "ams", 1)),
			revIs("web", "rose-pair", 5),
		)},
		{name: "I3 a moved revision refuses the cart with the current figure, and the retry gets the first answer", steps: with(world,
			ok(reserve("web", "r1", 0, line("rose", 2))), // 5
			fails(reserve("web", "r2", 0, line("tulip", 1), expecting(line("rose-pair", 1), 4)), store.ErrRevisionChanged, "lines[1].expected_mod_revision").moved(5, 4),
			figure("web", "tulip", "ams", fig{OnHand: 10, Available: 10}),
			ok(adjust(delta("d1", "rose", "ams", 2, 0))), revIs("web", "rose-pair", 7), // 7
			fails(reserve("web", "r2", 0, line("tulip", 1), expecting(line("rose-pair", 1), 4)), store.ErrRevisionChanged, "lines[1].expected_mod_revision").moved(5, 4),
			fails(reserve("web", "r2", 0, line("tulip", 1), expecting(line("rose-pair", 1), 7)), store.ErrIdempotencyConflict, "lines[1].expected_mod_revision"),
			ok(reserve("web", "r3", 0, line("tulip", 1), expecting(line("rose-pair", 1), 7))),
		)},
		{name: "a hold's retry with the same expected revision answers the hold though the figure moved", steps: with(world,
			ok(reserve("web", "r1", 0, expecting(line("rose-pair", 1), 4))).held(at(0, "ams", 2)),
			ok(reserve("web", "r1", 0, expecting(line("rose-pair", 1), 4))).held(at(0, "ams", 2)),
		)},
		{name: "the revision is checked after the SKU and location checks and before stock", steps: with(world,
			ok(strict(channel("mkt", 0, "ams"))), // 5
			fails(reserve("mkt", "r1", 0, expecting(line("rose", 1), 1)), store.ErrUnknownSKU, "lines[0].sku"),
			fails(reserve("web", "r2", 0, expecting(lineAt("rose", 1, "zrh"), 1)), store.ErrUnknownLocation, "lines[0].location"),
			fails(reserve("web", "r3", 0, expecting(line("rose-pair", 99), 1)), store.ErrRevisionChanged, "lines[0].expected_mod_revision").moved(4, 5),
			fails(reserve("web", "r4", 0, expecting(line("rose-pair", 99), 4)), store.ErrInsufficientStock, "lines[0].quantity"),
		)},
		{name: "without an expected revision only stock is checked", steps: with(world,
			ok(setStock(row("rose", "ams", 12, 2))),
			ok(reserve("web", "r1", 0, line("rose-pair", 6))).held(at(0, "ams", 12)),
		)},
	})
}

func TestCommandFeature(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  *logv1.Command
		want uint32
	}{
		{"a reserve", reserve("c", "r", 0, line("x", 1)), 1},
		{"a reserve with an expected revision", reserve("c", "r", 0, line("x", 1), expecting(line("y", 1), 3)), 2},
		{"a reserve with a backorder line", reserve("c", "r", 0, &logv1.ReserveLine{Sku: "x", QuantitySkuUnits: 1, AllowBackorder: true}), 2},
		{"a release", release("c", "r"), 1},
		{"a partial release", &logv1.Command{Kind: &logv1.Command_Release{Release: &logv1.Release{Channel: "c", ReservationId: "r",
			ReleaseId: "p", Lines: []*logv1.ReleaseLine{{Line: 0, QuantitySkuUnits: 1}}}}}, 2},
		{"a release with a release id", &logv1.Command{Kind: &logv1.Command_Release{Release: &logv1.Release{Channel: "c", ReservationId: "r", ReleaseId: "p"}}}, 2},
		{"a channel", channel("c", 0, "a"), 1},
		{"a channel on a group", groupChannel("c", 0, "g"), 2},
		{"a channel requiring mappings", strict(channel("c", 0, "a")), 2},
		{"a confirm", confirm("c", "r", "o"), 1},
		{"a stock count", setStock(row("x", "a", 1, 1)), 1},
		{"an adjustment", adjust(delta("d", "x", "a", 1, 0)), 1},
		{"a buffer", buffer("x", "", "", 1), 1},
		{"a location", loc("a"), 1},
		{"a node", putNode("n", "n:1", "n:2", 2), 1},
		{"a tick", tickCmd(), 1},
		{"a sku", putSku("s", "x", 1), 2},
		{"a sku deletion", deleteSku("s"), 2},
		{"a group", putGroup("g", "a"), 2},
		{"a group deletion", deleteGroup("g"), 2},
		{"a location deletion", deleteLocation("a"), 2},
		{"a channel deletion", deleteChannel("c"), 2},
		{"an extend", &logv1.Command{Kind: &logv1.Command_Extend{Extend: &logv1.Extend{}}}, 2},
		{"an order cancellation", &logv1.Command{Kind: &logv1.Command_CancelOrder{CancelOrder: &logv1.CancelOrder{}}}, 2},
		{"a release of all", &logv1.Command{Kind: &logv1.Command_ReleaseAll{ReleaseAll: &logv1.ReleaseAll{}}}, 2},
		{"incoming supply", &logv1.Command{Kind: &logv1.Command_SetIncoming{SetIncoming: &logv1.SetIncoming{}}}, 2},
		{"order acks", ackCmd(ackBooked(1)), 2},
	} {
		if got := store.CommandFeature(tc.cmd); got != tc.want {
			t.Errorf("input %s (%v): got feature %d, want %d", tc.name, tc.cmd, got, tc.want)
		}
		if got := store.CommandFeature(tc.cmd); got > store.FeatureVersion {
			t.Errorf("input %s: got feature %d, want at most this build's %d", tc.name, got, store.FeatureVersion)
		}
	}
}

// catalogLog builds a state with every issue 4 catalog record: groups, a
// channel on a group that requires mappings, mappings, a tombstone, holds
// of a mapped SKU, and counters with their revisions.
func catalogLog() []*logv1.Entry {
	s := int64(time.Second)
	return []*logv1.Entry{
		entry(t0, loc("ams"), loc("fra"), loc("ber"), putGroup("west", "fra", "ams"), putGroup("east", "ber"),
			strict(groupChannel("mkt", 1, "west")), channel("web", 0, "ams", "ber")),
		entry(t0+s, putSku("rose-case6", "rose", 6), putSku("tulip-pair", "tulip", 2), putSku("gone", "rose", 3), deleteSku("gone"),
			setStock(row("rose", "ams", 40, 1), row("rose", "fra", 7, 1), row("tulip", "ber", 9, 1)), buffer("rose", "mkt", "fra", 1)),
		entry(t0+2*s, reserve("mkt", "r1", time.Hour, line("rose-case6", 2)), reserve("web", "r2", time.Hour, line("tulip-pair", 1), line("rose", 1)),
			reserve("mkt", "r3", 0, expecting(line("rose-case6", 1), 1))),
		entry(t0+3*s, putGroup("west", "ams")),
	}
}

// TestI4CatalogSnapshotRoundTrip: the new records restore to the same
// stream, figures and mod revisions, and the same tail applies the same way
// on the restored machine as on the original.
func TestI4CatalogSnapshotRoundTrip(t *testing.T) {
	m := store.New(store.Config{})
	for i, e := range catalogLog() {
		for j, r := range m.ApplyEntry(store.Revision(i+1), e) {
			refusal := i == 2 && j == 2
			if (r.Err != nil) != refusal {
				t.Fatalf("input entry %d command %d %v: got %s, want refusal %v", i, j, e.Commands[j], describe(r), refusal)
			}
		}
	}
	kinds := map[string]int{}
	for _, r := range mustRecords(t, m) {
		var rec logv1.SnapshotRecord
		if err := proto.Unmarshal(r, &rec); err != nil {
			t.Fatal(err)
		}
		kinds[fmt.Sprintf("%T", rec.GetKind())]++
	}
	if kinds["*logv1.SnapshotRecord_Sku"] != 3 || kinds["*logv1.SnapshotRecord_LocationGroup"] != 2 {
		t.Fatalf("input catalog log: got record kinds %v, want 3 sku records (one a tombstone) and 2 groups", kinds)
	}
	back, err := restored(m, store.Config{})
	if err != nil {
		t.Fatalf("input catalog log: got restore error %v, want ok", err)
	}
	sameRecords(t, "catalog log restored", back, m)
	for _, q := range []struct{ ch, sku string }{{"mkt", "rose-case6"}, {"mkt", "tulip-pair"}, {"web", "gone"}, {"web", "tulip-pair"}, {"web", "rose"}} {
		var a, b store.SKUAvailability
		errA := back.Availability(store.ChannelID(q.ch), store.SKU(q.sku), &a)
		errB := m.Availability(store.ChannelID(q.ch), store.SKU(q.sku), &b)
		if errA != nil || errB != nil || !reflect.DeepEqual(a, b) || a.ModRevision == 0 {
			t.Errorf("input %s/%s after restore: got %+v (%v), want %+v (%v) with a mod_revision", q.ch, q.sku, a, errA, b, errB)
		}
	}
	for _, f := range []func(*store.Machine) any{
		func(m *store.Machine) any { return m.Channels() }, func(m *store.Machine) any { return m.LocationGroups() },
		func(m *store.Machine) any { return m.SKUs("") }, func(m *store.Machine) any { return m.Buffers("") },
	} {
		if got, want := f(back), f(m); !reflect.DeepEqual(got, want) {
			t.Errorf("input catalog log listing after restore: got %+v, want %+v", got, want)
		}
	}
	// The live-hold counts are rebuilt: the same deletions are refused and allowed.
	tail := []*logv1.Command{
		deleteSku("rose-case6"), deleteChannel("mkt"), deleteLocation("ams"), release("mkt", "r1"),
		deleteSku("rose-case6"), deleteChannel("mkt"), deleteGroup("west"), deleteSku("tulip-pair"),
		reserve("web", "r9", 0, expecting(line("tulip-pair", 1), 3)),
	}
	for i, c := range tail {
		idx := store.Revision(len(catalogLog()) + 1 + i)
		a, b := back.Apply(idx, store.Timestamp(t0+int64(time.Minute)), c), m.Apply(idx, store.Timestamp(t0+int64(time.Minute)), c)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("input tail command %d %v (I4): got %s after restore, want %s", i, c, describe(a), describe(b))
		}
	}
	want := []string{"in use", "in use", "in use", "ok", "ok", "ok", "ok", "in use", "ok"}
	probe := store.New(store.Config{})
	for i, e := range catalogLog() {
		probe.ApplyEntry(store.Revision(i+1), e)
	}
	for i, c := range tail {
		r := probe.Apply(store.Revision(len(catalogLog())+1+i), store.Timestamp(t0+int64(time.Minute)), c)
		if got := sentinelName(r.Err); got != want[i] {
			t.Errorf("input tail command %d %v: got %s, want %s", i, c, describe(r), want[i])
		}
	}
	sameRecords(t, "catalog log plus tail", back, m)
}

// TestI4RestoreRefusesBrokenCatalog edits one record of a valid stream at a
// time; each edit breaks a catalog invariant and Restore must refuse it.
func TestI4RestoreRefusesBrokenCatalog(t *testing.T) {
	m := store.New(store.Config{})
	for i, e := range catalogLog() {
		m.ApplyEntry(store.Revision(i+1), e)
	}
	recs := mustRecords(t, m)
	edits := []struct {
		name string
		edit func(rec *logv1.SnapshotRecord) bool
	}{
		{"a channel on an undeclared group", func(rec *logv1.SnapshotRecord) bool {
			if c := rec.GetChannel(); c.GetLocationGroup() != "" {
				c.LocationGroup = "north"
				return true
			}
			return false
		}},
		{"a channel on a group that also lists locations", func(rec *logv1.SnapshotRecord) bool {
			if c := rec.GetChannel(); c.GetLocationGroup() != "" {
				c.Locations = []string{"ams"}
				return true
			}
			return false
		}},
		{"a channel older than its group", func(rec *logv1.SnapshotRecord) bool {
			if c := rec.GetChannel(); c.GetLocationGroup() != "" {
				c.ModRevision = 1
				return true
			}
			return false
		}},
		{"a channel without locations or group", func(rec *logv1.SnapshotRecord) bool {
			if c := rec.GetChannel(); c != nil && c.GetLocationGroup() == "" {
				c.Locations = nil
				return true
			}
			return false
		}},
		{"a group naming an undeclared location", func(rec *logv1.SnapshotRecord) bool {
			if g := rec.GetLocationGroup(); g != nil {
				g.Locations = append(g.Locations, "zrh")
				return true
			}
			return false
		}},
		{"a group listing a location twice", func(rec *logv1.SnapshotRecord) bool {
			if g := rec.GetLocationGroup(); g != nil {
				g.Locations = append(g.Locations, g.Locations[0])
				return true
			}
			return false
		}},
		{"a sku with factor 0 and an item", func(rec *logv1.SnapshotRecord) bool {
			if k := rec.GetSku(); k.GetFactor() > 0 {
				k.Factor = 0
				return true
			}
			return false
		}},
		{"a sku with a factor over the limit", func(rec *logv1.SnapshotRecord) bool {
			if k := rec.GetSku(); k.GetFactor() > 0 {
				k.Factor = store.MaxPackFactor + 1
				return true
			}
			return false
		}},
		{"a sku revised after the snapshot", func(rec *logv1.SnapshotRecord) bool {
			if k := rec.GetSku(); k != nil {
				k.ModRevision = 99
				return true
			}
			return false
		}},
		{"a counter revised after the snapshot", func(rec *logv1.SnapshotRecord) bool {
			if c := rec.GetCounter(); c != nil {
				c.ModRevision = 99
				return true
			}
			return false
		}},
		{"a counter at an undeclared location", func(rec *logv1.SnapshotRecord) bool {
			if c := rec.GetCounter(); c != nil && c.GetReservedBaseUnits() == 0 {
				c.Location = "zzz"
				return true
			}
			return false
		}},
		{"a buffer rule naming an undeclared channel", func(rec *logv1.SnapshotRecord) bool {
			if b := rec.GetBuffer(); b != nil {
				b.Channel = "nope"
				return true
			}
			return false
		}},
	}
	for _, e := range edits {
		out := make([][]byte, len(recs))
		copy(out, recs)
		edited := false
		for i, r := range recs {
			var rec logv1.SnapshotRecord
			if err := proto.Unmarshal(r, &rec); err != nil {
				t.Fatal(err)
			}
			if e.edit(&rec) {
				b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&rec)
				if err != nil {
					t.Fatal(err)
				}
				out[i], edited = b, true
				break
			}
		}
		if !edited {
			t.Fatalf("input %s: got no record to edit, want one", e.name)
		}
		if err := store.New(store.Config{}).Restore(sliceSource(out)); !errors.Is(err, store.ErrCorruptSnapshot) {
			t.Errorf("input the catalog stream with %s: got %v, want %v", e.name, err, store.ErrCorruptSnapshot)
		}
	}
}

// TestAvailabilityWithFactorAllocatesNothing: resolving a SKU, its factor
// and its mod revision keeps the read free of allocations.
func TestAvailabilityWithFactorAllocatesNothing(t *testing.T) {
	m := store.New(store.Config{})
	for i, e := range catalogLog() {
		m.ApplyEntry(store.Revision(i+1), e)
	}
	var a store.SKUAvailability
	a.Locations = make([]store.LocationAvailability, 0, 4)
	allocs := testing.AllocsPerRun(100, func() {
		if err := m.Availability("web", "tulip-pair", &a); err != nil {
			t.Fatal(err)
		}
		if err := m.Availability("mkt", "rose-case6", &a); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("input Availability of mapped SKUs on a plain and a group channel: got %v allocations, want 0", allocs)
	}
}

// catalogCommand is the determinism generator's share of catalog commands:
// SKU mappings and their deletion, holds of mapped SKUs (some comparing a
// revision), a group and a strict channel on it, and retiring them and a
// spare location.
func (g *logGen) catalogCommand(ttls []time.Duration) *logv1.Command {
	skuID := func() string { return "s" + strconv.Itoa(g.r.IntN(5)) }
	switch g.r.IntN(11) {
	case 0, 1:
		return putSku(skuID(), g.item(), 1+int64(g.r.IntN(5)))
	case 2:
		return deleteSku(skuID())
	case 3, 4, 5:
		var lines []*logv1.ReserveLine
		for range 1 + g.r.IntN(2) {
			l := line(skuID(), 1+int64(g.r.IntN(4)))
			if g.r.IntN(3) == 0 {
				l.ExpectedModRevision = uint64(1 + g.r.IntN(3000))
			}
			lines = append(lines, l)
		}
		return reserve(g.pick([]string{"c0", "c1", "c3"}), g.resID(), ttls[g.r.IntN(len(ttls))], lines...)
	case 6:
		return putGroup("g0", g.pick(genLocations), g.pick([]string{"l5", "l0"}))
	case 7:
		c := groupChannel("c3", int64(g.r.IntN(2)), "g0")
		c.GetPutChannel().RequireSkuMapping = g.r.IntN(2) == 0
		return c
	case 8:
		return deleteChannel("c3")
	case 9:
		return deleteGroup("g0")
	}
	return g.pick2(loc("l5"), deleteLocation("l5"))
}

func (g *logGen) pick2(a, b *logv1.Command) *logv1.Command {
	if g.r.IntN(2) == 0 {
		return a
	}
	return b
}

// TestGenLogExercisesTheCatalog guards the generator: the determinism tests
// must see mappings, holds of them, revision refusals and in-use refusals.
func TestGenLogExercisesTheCatalog(t *testing.T) {
	log := genLog(1, 3000)
	m := store.New(genConfig)
	seen := map[string]int{}
	for i, e := range log {
		for j, r := range m.ApplyEntry(store.Revision(i+1), e) {
			c := e.Commands[j]
			kind := fmt.Sprintf("%T", c.GetKind())
			seen[kind+" "+sentinelName(r.Err)]++
			if r.Reservation != nil && r.Err == nil && r.Reservation.Lines[0].Factor > 1 {
				seen["held with factor"]++
			}
		}
	}
	for _, k := range []string{
		"*logv1.Command_PutSku ok", "*logv1.Command_DeleteSku ok", "*logv1.Command_DeleteSku in use", "*logv1.Command_DeleteSku unknown sku",
		"*logv1.Command_Reserve revision changed", "*logv1.Command_Reserve unknown sku", "held with factor",
		"*logv1.Command_PutLocationGroup ok", "*logv1.Command_DeleteLocationGroup ok", "*logv1.Command_DeleteLocationGroup in use",
		"*logv1.Command_DeleteChannel ok", "*logv1.Command_DeleteLocation ok", "*logv1.Command_DeleteLocation in use",
	} {
		if seen[k] == 0 {
			t.Errorf("input log of seed 1: got outcomes %v, want at least one %q", seen, k)
		}
	}
}
