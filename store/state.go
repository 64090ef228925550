package store

import (
	"sync"
	"sync/atomic"

	"github.com/stockd/stockd/api/logv1"
)

// shardCount is the number of counter shards; reads of items in different
// shards never contend. Shard choice is FNV-1a of the item id.
const shardCount = 64

// counter is one item at one location. reserved and committed never go
// negative; on_hand may (the ERP is the master) and then counts as 0.
type counter struct {
	// loc is the shard's copy of the location id (shard.locationRef): 8
	// bytes a counter instead of a 16-byte string header, so three counters
	// fit 144 bytes instead of 176. Read it through location.
	loc       *LocationID
	onHand    Units
	reserved  Units
	committed Units
	version   uint64
	// modRev is the index of the last entry that changed this counter or a
	// buffer rule of its item (see state.touch).
	modRev Revision
}

// bufferRule holds units of an item back; an empty channel or location is a
// wildcard. The most specific rule wins: (channel, location), (channel, *),
// (*, location), (*, *), then the channel's default.
type bufferRule struct {
	channel  ChannelID
	location LocationID
	units    Units
}

// itemState is everything per item: its counters sorted by location, and
// what few items have, kept apart so that an item without it costs 32 bytes
// besides its counters (a million counters are a third of a million items).
type itemState struct {
	counters []counter
	// more is nil while the item has no buffer rule and no incoming line;
	// read it through bufferRules and incomingLines, set it through
	// setBuffers and setIncoming, under the shard write lock.
	more *itemMore
}

// itemMore is what an item has besides its counters.
type itemMore struct {
	// buffers are the item's buffer rules, sorted by (channel, location).
	buffers []bufferRule
	// incoming is the item's supply on its way, sorted by (eta, po line);
	// changed only under the shard write lock (see incoming.go).
	incoming []*incomingLine
}

// bufferRules returns the item's buffer rules, sorted; is may be nil.
func (is *itemState) bufferRules() []bufferRule {
	if is == nil || is.more == nil {
		return nil
	}
	return is.more.buffers
}

// incomingLines returns the item's incoming lines, sorted; is may be nil.
func (is *itemState) incomingLines() []*incomingLine {
	if is == nil || is.more == nil {
		return nil
	}
	return is.more.incoming
}

// setBuffers replaces the item's buffer rules. Caller holds the shard write lock.
func (is *itemState) setBuffers(b []bufferRule) {
	if is.more == nil {
		is.more = &itemMore{}
	}
	is.more.buffers = b
	is.settleMore()
}

// setIncoming replaces the item's incoming lines. Caller holds the shard write lock.
func (is *itemState) setIncoming(in []*incomingLine) {
	if is.more == nil {
		is.more = &itemMore{}
	}
	is.more.incoming = in
	is.settleMore()
}

// settleMore drops more once it holds nothing.
func (is *itemState) settleMore() {
	if len(is.more.buffers) == 0 && len(is.more.incoming) == 0 {
		is.more = nil
	}
}

type shard struct {
	mu    sync.RWMutex
	items map[ItemID]*itemState
	// locs holds one copy of each location id the shard's counters name.
	// Apply goroutine only: readers follow the counters' pointers, never
	// the map, and what a pointer points to never changes.
	locs map[LocationID]*LocationID
}

// locationRef returns the shard's copy of loc for a new counter, made from
// the catalog's string on first use. Apply goroutine only.
func (sh *shard) locationRef(cat *catalog, loc LocationID) *LocationID {
	if p := sh.locs[loc]; p != nil {
		return p
	}
	if sh.locs == nil {
		sh.locs = make(map[LocationID]*LocationID)
	}
	p := new(LocationID)
	*p = cat.intern(loc)
	sh.locs[*p] = p
	return p
}

// location is the counter's location id.
func (c *counter) location() LocationID { return *c.loc }

// catalog is the declared configuration. It is immutable once published:
// Apply replaces it whole, so reads take it without a lock.
type catalog struct {
	locations map[LocationID]Location
	channels  map[ChannelID]*Channel
	nodes     map[string]Node
	// See catalog.go: location groups, SKU mappings (and tombstones of deleted
	// ones), and each channel's mod revision.
	groups      map[string]*locationGroup
	skus        map[SKU]skuMapping
	channelRevs map[ChannelID]Revision
}

// intern returns the catalog's copy of a declared location id, or loc itself.
func (c *catalog) intern(loc LocationID) LocationID {
	if l, ok := c.locations[loc]; ok {
		return l.ID
	}
	return loc
}

type resKey struct {
	channel ChannelID
	id      ReservationID
}

// reservation is a hold plus what is needed to judge retries and prune it.
type reservation struct {
	Reservation
	// req is the remembered Reserve in compact form, packed (packed.go):
	// "" when none or when more.rawRequest keeps it whole. Read it through
	// remembered.
	req        string
	pruneSeq   uint64
	prunableAt Timestamp
	// more is what few reservations have (request.go): the Extends and
	// partial Releases applied, a request kept whole.
	more *reservationMore
	// packed is a finished hold's lines (packed.go); Lines is then nil. Read
	// them through lines and public. Strings, not []byte: 16 bytes each.
	packed string
}

// refusal remembers a refused Reserve for retries (I3).
type refusal struct {
	key        resKey
	request    reserveRequest // request.go
	rawRequest *logv1.Reserve // the request kept whole, when request cannot give it back
	rejection  *Rejection
	pruneSeq   uint64
	prunableAt Timestamp
}

// delta remembers an applied or stale adjustment by its delta id.
type delta struct {
	row        *logv1.StockAdjustment
	result     RowResult
	pruneSeq   uint64
	prunableAt Timestamp
}

// order is an outbox entry on its way to the ERP: a confirmed order, or the
// cancellation of one (kind OutboxCancellation, which holds no units and is
// never absorbed). Readers on other goroutines see its fields under st.omu
// (outbox.go).
type order struct {
	seq           uint64
	kind          OutboxKind
	channel       ChannelID
	reservationID ReservationID
	orderRef      string
	lines         []orderLine
	absorbed      bool
	// cancelled: CancelOrder took it back before the absorbed mark passed it;
	// its units left committed then, and absorb never takes them again.
	cancelled bool
	// createdAt is the log time of the entry that created it.
	createdAt Timestamp
	// cancelsSeq is, for a cancellation, the order it cancels.
	cancelsSeq uint64
	// outcome is what the ERP reported (0: none yet). A refused order's
	// units left committed when the refusal was applied, and absorb never
	// takes them again.
	outcome       OrderOutcome
	outcomeReason string
	// cancellation is an order's cancellation entry, while both are kept.
	cancellation *order
}

type orderLine struct {
	item     ItemID
	location LocationID
	quantity Units
	// poLine is set while the units wait for that incoming line: they are
	// not committed until it is received (see backorder.go).
	poLine string
}

// pruneKind says which table a prune-queue entry points into.
type pruneKind uint8

const (
	pruneReservation pruneKind = iota + 1
	pruneRefusal
	pruneDelta
	pruneReleaseAll // key is (channel, release_all_id)
)

type pruneItem struct {
	seq     uint64
	at      Timestamp
	kind    pruneKind
	key     resKey
	deltaID string
}

type deadlineItem struct {
	at  Timestamp
	key resKey
}

// state is one generation of the machine; Restore builds a fresh one and
// swaps it in whole.
type state struct {
	applied atomic.Uint64
	// index is the entry being applied (apply goroutine only); counters
	// record it as their modRev.
	index    Revision
	now      atomic.Int64
	deadline atomic.Int64 // earliest live hold deadline, 0 if none

	catalog atomic.Pointer[catalog]
	shards  [shardCount]shard

	// lmu guards reservations (read by Reservation from any goroutine).
	lmu          sync.RWMutex
	reservations map[resKey]*reservation

	// omu guards what the outbox and dead-letter reads (outbox.go,
	// deadletter.go) touch from any goroutine: orders and their fields, the
	// order index, the outbox figures and the dead-letter list. The apply
	// goroutine changes them under omu and reads them without it.
	omu          sync.RWMutex
	orders       []*order // in sequence order; finished entries leave from the front (trimOutbox)
	orderRefs    map[orderRefKey]*order
	nextOrderSeq uint64
	absorbedMark uint64
	absorbedPos  int // orders[:absorbedPos] are all at or below the absorbed mark
	pending      int // entries without an outcome
	pendingPos   int // orders[:pendingPos] all have an outcome
	deadLetters  deadLetters

	// Apply-goroutine only.
	refusals    map[resKey]*refusal
	deltas      map[string]*delta
	releaseAlls map[resKey]*releaseAll // by (channel, release_all_id)
	deadlines   deadlineHeap
	backfill    *backfillStaging // the staged generation, nil if none (backfill.go)
	// Live (held) holds per SKU line, per allocation location and per
	// channel; see holdStarted/holdEnded in catalog.go.
	holdsBySKU      map[SKU]int
	holdsByLocation map[LocationID]int
	holdsByChannel  map[ChannelID]int
	incoming        map[string]*incomingLine // by po line id; created on first use
	pruneQueue      []pruneItem
	pruneHead       int
	nextPruneSeq    uint64

	// changes is the machine's change log (changes.go); nil in a state that
	// is not the machine's (tests, decoding).
	changes *changeLog
	// stats are the machine's cumulative counts (stats.go); nil like changes.
	stats *stats
}

func newState() *state {
	st := &state{
		reservations:    make(map[resKey]*reservation),
		refusals:        make(map[resKey]*refusal),
		deltas:          make(map[string]*delta),
		releaseAlls:     make(map[resKey]*releaseAll),
		holdsBySKU:      make(map[SKU]int),
		holdsByLocation: make(map[LocationID]int),
		holdsByChannel:  make(map[ChannelID]int),
		orderRefs:       make(map[orderRefKey]*order),
		nextOrderSeq:    1,
		nextPruneSeq:    1,
	}
	st.catalog.Store(emptyCatalog())
	for i := range st.shards {
		st.shards[i].items = make(map[ItemID]*itemState)
	}
	return st
}

// shardFor picks an item's shard by FNV-1a, a fixed function of the key.
func (st *state) shardFor(item ItemID) *shard {
	h := uint32(2166136261)
	for i := 0; i < len(item); i++ {
		h ^= uint32(item[i])
		h *= 16777619
	}
	return &st.shards[h%shardCount]
}

// item returns the item's state, or nil. Apply goroutine or under the shard lock.
func (st *state) item(id ItemID) *itemState {
	return st.shardFor(id).items[id]
}

// findCounter returns the index of loc in the sorted counters, and whether it is there.
func (is *itemState) findCounter(loc LocationID) (int, bool) {
	lo, hi := 0, len(is.counters)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if *is.counters[mid].loc < loc {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, lo < len(is.counters) && *is.counters[lo].loc == loc
}

// counterAt returns a pointer to the counter at loc, or nil.
func (is *itemState) counterAt(loc LocationID) *counter {
	if is == nil {
		return nil
	}
	if len(is.counters) <= 8 {
		// A handful of counters: equality tests beat a binary search's
		// ordered compares, and the ids usually share the catalog's bytes.
		for i := range is.counters {
			if *is.counters[i].loc == loc {
				return &is.counters[i]
			}
		}
		return nil
	}
	if i, ok := is.findCounter(loc); ok {
		return &is.counters[i]
	}
	return nil
}

// buffer resolves the units held back from channel ch at loc.
func (is *itemState) buffer(ch *Channel, loc LocationID) Units {
	buffers := is.bufferRules()
	if len(buffers) == 0 {
		return ch.DefaultBuffer
	}
	best, rank := ch.DefaultBuffer, 0
	for i := range buffers {
		b := &buffers[i]
		r := 0
		switch {
		case b.channel == ch.ID && b.location == loc:
			r = 4
		case b.channel == ch.ID && b.location == "":
			r = 3
		case b.channel == "" && b.location == loc:
			r = 2
		case b.channel == "" && b.location == "":
			r = 1
		}
		if r > rank {
			best, rank = b.units, r
		}
	}
	return best
}

// available is max(0, max(0, on_hand) - reserved - committed - buffer) in base
// units, computed without overflow.
func (c *counter) available(buffer Units) Units {
	onHand := max(c.onHand, 0)
	promised := c.reserved + c.committed
	if promised >= onHand {
		return 0
	}
	rem := onHand - promised
	if buffer >= rem {
		return 0
	}
	return rem - buffer
}

// oversold is promised beyond on_hand, never negative.
func (c *counter) oversold() Units {
	onHand := max(c.onHand, 0)
	promised := c.reserved + c.committed
	if promised <= onHand {
		return 0
	}
	return promised - onHand
}
