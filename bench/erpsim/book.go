package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
)

// The book is the simulated ERP's ledger: per counter (item x location) its
// sellable on_hand (DESIGN.md: physical units minus what the ERP allocated
// to open orders, ours included once booked) and the version of the last
// count or adjustment it sent, plus what it decided for every outbox entry
// and how far the absorbed mark may go. It does no I/O; the loop in sim.go
// owns it and calls it from one goroutine.

// counterKey names a counter.
type counterKey struct {
	item, location string
}

func (k counterKey) String() string { return k.item + "@" + k.location }

// sentCount is a count stockd was sent and applied: what it must hold until
// the next one.
type sentCount struct {
	version uint64
	onHand  int64
}

// counter is one (item, location) of the book.
type counter struct {
	key counterKey
	// onHand is the ERP's sellable count now; it runs ahead of sent until the
	// loop flushes it (dirty).
	onHand int64
	dirty  bool
	// sent is what stockd holds for this counter, as far as the ERP knows;
	// history keeps the last few, oldest first, for stale replays.
	sent    sentCount
	history []sentCount
	// What moved onHand, in base units, so the book can prove it balances.
	initial, receipts, damage, booked, restored int64
	// takes are units the ERP took from this counter without stockd having
	// promised them here (a damage, a line fulfilled here that stockd
	// allocated elsewhere): after one, a shortage here is no evidence of an
	// oversell.
	takes int64
	// shortages counts bookings refused here for lack of stock.
	shortages int
}

// historyLen is how many sent counts a counter keeps for stale replays.
const historyLen = 4

// fulfilment is units of an order line taken from one counter.
type fulfilment struct {
	key   counterKey
	units int64
	moved bool
}

// orderRec is what the book knows of an outbox entry.
type orderRec struct {
	entry entryView
	// decided: the ERP has an outcome for it (booked, refused or done), not
	// necessarily acknowledged yet.
	decided bool
	booked  bool
	reason  string
	fulfils []fulfilment
	// cancelSeq is the seq of a cancellation entry seen for this order (0: none).
	cancelSeq uint64
	// cancelled: the ERP processed that cancellation (units given back if booked).
	cancelled bool
}

// entryView is the part of an outbox entry the book uses.
type entryView struct {
	seq        uint64
	kind       entryKind
	channel    string
	orderRef   string
	cancelsSeq uint64
	lines      []lineView
}

type lineView struct {
	item, location string
	units          int64
	poLine         string
}

type entryKind uint8

const (
	kindOrder entryKind = iota + 1
	kindCancellation
)

// Totals are the run's counts, written with the book.
type Totals struct {
	EntriesSeen          int    `json:"entries_seen"`
	Duplicates           int    `json:"duplicates"`
	OrdersBooked         int    `json:"orders_booked"`
	OrdersRefused        int    `json:"orders_refused"`
	RefusedRandom        int    `json:"refused_random"`
	RefusedShort         int    `json:"refused_short"`
	RefusedCancelled     int    `json:"refused_cancelled_before_booking"`
	RefusedUnknown       int    `json:"refused_unknown_counter"`
	CancellationsDone    int    `json:"cancellations_done"`
	CancelledUnknown     int    `json:"cancellations_of_unknown_orders"`
	LinesMoved           int    `json:"lines_moved_location"`
	BackorderLines       int    `json:"backorder_lines"`
	OutOfOrderOutcomes   int    `json:"out_of_order_outcomes"`
	BookedUnits          int64  `json:"booked_units"`
	RestoredUnits        int64  `json:"restored_units"`
	NetBookedUnits       int64  `json:"net_booked_units"`
	Receipts             int    `json:"receipts"`
	ReceiptUnits         int64  `json:"receipt_units"`
	Damages              int    `json:"damages"`
	DamageUnits          int64  `json:"damage_units"`
	CountBatches         int    `json:"count_batches"`
	CountRows            int    `json:"count_rows"`
	MarksSent            int    `json:"marks_sent"`
	FinalMark            uint64 `json:"final_mark"`
	StaleCountReplays    int    `json:"stale_count_replays"`
	SwappedCounts        int    `json:"swapped_counts"`
	AdjustReplays        int    `json:"adjust_replays"`
	AckReplays           int    `json:"ack_replays"`
	ShortagesExplained   int    `json:"shortages_explained"`
	ShortagesUnexplained int    `json:"shortages_unexplained"`
	Retries              int    `json:"retries"`
	Surprises            int    `json:"surprises"`
	Contradictions       int    `json:"contradictions"`
}

// Book is the simulated ERP's ledger. Not safe for concurrent use.
type Book struct {
	counters  map[counterKey]*counter
	keys      []counterKey // sorted
	locations []string     // every location the book counts, in flag order
	orders    map[uint64]*orderRec

	// floor: every seq <= floor had an outcome before the run began.
	floor uint64
	// delivered is the highest seq delivered (>= floor): PullOrders sends
	// in sequence order, so every seq in (floor, delivered] was delivered.
	delivered uint64
	// done holds seqs above mark whose outcome stockd acknowledged.
	done map[uint64]bool
	// mark: every seq <= mark has an acknowledged outcome (see Mark).
	mark uint64
	// maxDone is the highest seq with an acknowledged outcome.
	maxDone uint64

	Totals Totals
}

// NewBook returns an empty book over locations; floor is the highest seq at
// or below which every outbox entry already had an outcome.
func NewBook(locations []string, floor uint64) *Book {
	return &Book{counters: map[counterKey]*counter{}, locations: locations, orders: map[uint64]*orderRec{},
		done: map[uint64]bool{}, floor: floor, delivered: floor, mark: floor}
}

// AddCounter starts counting (item, location) at onHand with stockd holding
// sent. It panics on a duplicate: the catalog is built once.
func (b *Book) AddCounter(item, location string, onHand int64) *counter {
	k := counterKey{item, location}
	if b.counters[k] != nil {
		panic("erpsim: counter " + k.String() + " added twice")
	}
	c := &counter{key: k, onHand: onHand, initial: onHand, dirty: true}
	b.counters[k] = c
	i, _ := slices.BinarySearchFunc(b.keys, k, cmpKey)
	b.keys = slices.Insert(b.keys, i, k)
	return c
}

func cmpKey(a, b counterKey) int {
	return cmp.Or(cmp.Compare(a.item, b.item), cmp.Compare(a.location, b.location))
}

// Counter returns the counter at k, or nil.
func (b *Book) Counter(k counterKey) *counter { return b.counters[k] }

// Keys lists every counter, sorted by item then location.
func (b *Book) Keys() []counterKey { return b.keys }

// Dirty lists the counters whose on_hand moved since stockd was last sent it.
func (b *Book) Dirty() []*counter {
	var out []*counter
	for _, k := range b.keys {
		if c := b.counters[k]; c.dirty {
			out = append(out, c)
		}
	}
	return out
}

// Sent records that stockd applied count s for c.
func (c *counter) Sent(s sentCount) {
	c.sent = s
	c.dirty = c.onHand != s.onHand
	c.history = append(c.history, s)
	if len(c.history) > historyLen {
		c.history = slices.Delete(c.history, 0, len(c.history)-historyLen)
	}
}

// Deliver records an outbox entry from PullOrders. It reports false for a
// duplicate (a seq seen before or at or below the floor).
func (b *Book) Deliver(e entryView) bool {
	if e.seq <= b.floor || b.orders[e.seq] != nil || b.done[e.seq] || e.seq <= b.mark {
		b.Totals.Duplicates++
		return false
	}
	b.Totals.EntriesSeen++
	b.orders[e.seq] = &orderRec{entry: e}
	b.delivered = max(b.delivered, e.seq)
	if e.kind == kindCancellation {
		if o := b.orders[e.cancelsSeq]; o != nil {
			o.cancelSeq = e.seq
		}
	}
	return true
}

// Delivered is the highest seq every entry up to which was delivered.
func (b *Book) Delivered() uint64 { return b.delivered }

// Order returns what the book knows of the entry at seq, or nil.
func (b *Book) Order(seq uint64) *orderRec { return b.orders[seq] }

// Decision is the ERP's outcome for one entry.
type Decision struct {
	Seq    uint64
	Booked bool // for an order: booked, else refused
	Done   bool // for a cancellation
	Reason string
	// Short names the counter a refusal for lack of stock found short, at
	// the location stockd allocated (so a shortage there may be an oversell).
	Short *counter
}

// Policy is how the ERP decides: rates in [0, 1] and the random source.
type Policy struct {
	RefuseRate        float64
	OtherLocationRate float64
	Rand              *rand.Rand
}

// DecideOrder books or refuses the order at seq, once. A refusal frees
// nothing in the book; a booking takes each line's units from the counter
// stockd allocated or, at OtherLocationRate, from another location of the
// item with the units on hand. An order whose cancellation arrived first is
// refused; an order the book cannot fill is refused and the first short
// counter named.
func (b *Book) DecideOrder(seq uint64, p Policy) Decision {
	o := b.orders[seq]
	if o == nil || o.entry.kind != kindOrder || o.decided {
		panic(fmt.Sprintf("erpsim: DecideOrder(%d) on an entry that is no undecided order", seq))
	}
	o.decided = true
	refuse := func(reason string, total *int) Decision {
		o.reason = reason
		b.Totals.OrdersRefused++
		*total++
		return Decision{Seq: seq, Reason: reason}
	}
	if o.cancelSeq != 0 {
		return refuse("erpsim: cancelled before booking", &b.Totals.RefusedCancelled)
	}
	if p.Rand.Float64() < p.RefuseRate {
		return refuse("erpsim: refused at random", &b.Totals.RefusedRandom)
	}
	// need is what the plan takes per counter; allocated what stockd
	// allocated there. Only a counter short of what stockd allocated at it
	// is evidence against stockd: moving lines can make a counter short too.
	need, allocated := map[counterKey]int64{}, map[counterKey]int64{}
	var plan []fulfilment
	for _, l := range o.entry.lines {
		if l.poLine != "" {
			// Waits for an incoming line: the ERP ships it from that
			// receipt, not from the counter (and stockd never committed it).
			b.Totals.BackorderLines++
			continue
		}
		k := counterKey{l.item, l.location}
		if b.counters[k] == nil {
			return refuse("erpsim: "+k.String()+" is not in the simulator's book", &b.Totals.RefusedUnknown)
		}
		allocated[k] += l.units
		f := fulfilment{key: k, units: l.units}
		if p.Rand.Float64() < p.OtherLocationRate {
			if alt, ok := b.otherLocation(k, l.units, need, p.Rand); ok {
				f.key, f.moved = alt, true
			}
		}
		need[f.key] += f.units
		plan = append(plan, f)
	}
	for _, f := range plan { // plan order: deterministic for a seed
		if c := b.counters[f.key]; need[f.key] > c.onHand {
			c.shortages++
			d := refuse("erpsim: insufficient stock at "+f.key.String(), &b.Totals.RefusedShort)
			if allocated[f.key] > c.onHand {
				d.Short = c
			}
			return d
		}
	}
	for _, f := range plan {
		c := b.counters[f.key]
		c.onHand -= f.units
		c.booked += f.units
		c.dirty = true
		if f.moved {
			c.takes += f.units
			b.Totals.LinesMoved++
		}
		b.Totals.BookedUnits += f.units
	}
	o.booked, o.fulfils = true, plan
	b.Totals.OrdersBooked++
	return Decision{Seq: seq, Booked: true}
}

// otherLocation picks a location of k's item other than k's with at least
// units on hand beyond what the order already needs there.
func (b *Book) otherLocation(k counterKey, units int64, need map[counterKey]int64, r *rand.Rand) (counterKey, bool) {
	var alts []counterKey
	for _, loc := range b.locations {
		a := counterKey{k.item, loc}
		if c := b.counters[a]; loc != k.location && c != nil && c.onHand-need[a] >= units {
			alts = append(alts, a)
		}
	}
	if len(alts) == 0 {
		return counterKey{}, false
	}
	return alts[r.IntN(len(alts))], true
}

// DecideCancellation processes the cancellation at seq: the order it names
// is decided first if it was not (it is then refused: its cancellation came
// first), and a booked order's units go back where they were taken from.
// The decisions are returned in the order to acknowledge them.
func (b *Book) DecideCancellation(seq uint64, p Policy) []Decision {
	c := b.orders[seq]
	if c == nil || c.entry.kind != kindCancellation || c.decided {
		panic(fmt.Sprintf("erpsim: DecideCancellation(%d) on an entry that is no undecided cancellation", seq))
	}
	var out []Decision
	o := b.orders[c.entry.cancelsSeq]
	switch {
	case o == nil:
		// Booked before this run (or never delivered to it): give back the
		// lines where stockd allocated them.
		b.Totals.CancelledUnknown++
		for _, l := range c.entry.lines {
			if ct := b.counters[counterKey{l.item, l.location}]; ct != nil {
				ct.onHand += l.units
				ct.restored += l.units
				ct.dirty = true
				b.Totals.RestoredUnits += l.units
			}
		}
	case !o.decided:
		out = append(out, b.DecideOrder(o.entry.seq, p))
	}
	if o != nil && o.booked && !o.cancelled {
		for _, f := range o.fulfils {
			ct := b.counters[f.key]
			ct.onHand += f.units
			ct.restored += f.units
			ct.dirty = true
			b.Totals.RestoredUnits += f.units
		}
	}
	if o != nil {
		o.cancelled = true
	}
	c.decided = true
	b.Totals.CancellationsDone++
	return append(out, Decision{Seq: seq, Done: true})
}

// Acked records that stockd acknowledged the outcome of seq (applied, or
// already recorded), so the mark may pass it once its counts are sent.
func (b *Book) Acked(seq uint64) {
	if seq <= b.mark || b.done[seq] {
		return
	}
	if seq < b.maxDone {
		b.Totals.OutOfOrderOutcomes++
	}
	b.maxDone = max(b.maxDone, seq)
	b.done[seq] = true
	for b.done[b.mark+1] {
		delete(b.done, b.mark+1)
		b.mark++
	}
}

// Mark is the highest N such that every seq <= N has an acknowledged
// outcome. The loop sends it only on a batch that carries (or follows) the
// counts of every booking it decided, so it is safe to send then.
func (b *Book) Mark() uint64 { return b.mark }

// Receipt adds units to c (a goods receipt).
func (b *Book) Receipt(c *counter, units int64) {
	c.onHand += units
	c.receipts += units
	b.Totals.Receipts++
	b.Totals.ReceiptUnits += units
}

// Damage takes units from c (damaged goods): a take, since stockd may have
// promised them.
func (b *Book) Damage(c *counter, units int64) {
	c.onHand -= units
	c.damage += units
	c.takes += units
	b.Totals.Damages++
	b.Totals.DamageUnits += units
}

// Balance checks that every counter's on_hand is what moved it says it is,
// and returns the first that is not.
func (b *Book) Balance() error {
	for _, k := range b.keys {
		c := b.counters[k]
		if want := c.initial + c.receipts - c.damage - c.booked + c.restored; c.onHand != want {
			return fmt.Errorf("%s: on_hand %d, want initial %d + receipts %d - damage %d - booked %d + restored %d = %d",
				k, c.onHand, c.initial, c.receipts, c.damage, c.booked, c.restored, want)
		}
	}
	return nil
}

// CounterOut is one counter as written to the book file.
type CounterOut struct {
	Item      string `json:"item"`
	Location  string `json:"location"`
	OnHand    int64  `json:"on_hand"`
	Version   uint64 `json:"version"`
	Initial   int64  `json:"initial"`
	Receipts  int64  `json:"receipts"`
	Damage    int64  `json:"damage"`
	Booked    int64  `json:"booked"`
	Restored  int64  `json:"restored"`
	Takes     int64  `json:"takes"`
	Shortages int    `json:"shortages"`
}

// BookOut is the book file: every counter and the run's totals.
type BookOut struct {
	Seed     uint64       `json:"seed"`
	Counters []CounterOut `json:"counters"`
	Totals   Totals       `json:"totals"`
}

// Out returns the book as written to the book file: on_hand is the book's,
// version the last one sent to stockd (after a drain, stockd was sent that
// very on_hand; before it, a counter may be ahead of what was sent).
func (b *Book) Out(seed uint64) BookOut {
	out := BookOut{Seed: seed, Totals: b.Totals}
	out.Totals.NetBookedUnits = b.Totals.BookedUnits - b.Totals.RestoredUnits
	out.Totals.FinalMark = b.mark
	for _, k := range b.keys {
		c := b.counters[k]
		out.Counters = append(out.Counters, CounterOut{Item: k.item, Location: k.location, OnHand: c.onHand,
			Version: c.sent.version, Initial: c.initial, Receipts: c.receipts, Damage: c.damage, Booked: c.booked,
			Restored: c.restored, Takes: c.takes, Shortages: c.shortages})
	}
	return out
}

// WriteFile writes v as indented JSON to path through a temporary file, so
// the file is complete or absent.
func WriteFile(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Close()
	if err := cmp.Or(werr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
