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
	location  LocationID
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

// itemState is everything per item: its counters sorted by location and its
// buffer rules sorted by (channel, location).
type itemState struct {
	counters []counter
	buffers  []bufferRule
	// incoming is the item's supply on its way, sorted by (eta, po line);
	// changed only under the shard write lock (see incoming.go).
	incoming []*incomingLine
}

type shard struct {
	mu    sync.RWMutex
	items map[ItemID]*itemState
}

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
	request    *logv1.Reserve
	pruneSeq   uint64
	prunableAt Timestamp
	// ops are the Extends and partial Releases applied, in order (lifecycle.go).
	ops []holdOp
}

// refusal remembers a refused Reserve for retries (I3).
type refusal struct {
	request    *logv1.Reserve
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
		if is.counters[mid].location < loc {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, lo < len(is.counters) && is.counters[lo].location == loc
}

// counterAt returns a pointer to the counter at loc, or nil.
func (is *itemState) counterAt(loc LocationID) *counter {
	if is == nil {
		return nil
	}
	if i, ok := is.findCounter(loc); ok {
		return &is.counters[i]
	}
	return nil
}

// buffer resolves the units held back from channel ch at loc.
func (is *itemState) buffer(ch *Channel, loc LocationID) Units {
	if is == nil || len(is.buffers) == 0 {
		return ch.DefaultBuffer
	}
	best, rank := ch.DefaultBuffer, 0
	for i := range is.buffers {
		b := &is.buffers[i]
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
