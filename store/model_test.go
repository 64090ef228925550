package store_test

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// model is the reference the property test holds the machine to: plain maps
// and slices, written from DESIGN.md rather than from the machine's code.
// Each method returns the answer the machine must give: the sentinel (nil for
// ok) and the Rejection's field; row answers; the expected allocation.

type mkey struct{ item, loc string }
type rkey struct{ ch, id string }
type bkey struct{ item, ch, loc string }

type mcounter struct {
	onHand, reserved, committed int64
	version                     uint64
	rev                         int64 // the last entry that changed it or a buffer rule of its item
}

type mline struct {
	sku, loc string
	qty      int64
	allocs   []store.Allocation
	expect   uint64 // expected_mod_revision
	// backorder: allow_backorder; allocations with a POLine wait on that
	// incoming line (model_backorder_test.go).
	backorder bool
	// item and factor are the SKU's mapping when the hold was made (model_catalog_test.go).
	item   string
	factor int64
}

type mres struct {
	key              rkey
	state            store.ReservationState
	lines            []mline
	ttl              int64
	created, expires int64
	orderRef         string
	orderSeq         uint64
	ops              []mop   // extends and partial releases (model_lifecycle_test.go)
	request          []mline // the lines as first asked, to judge retries (partial releases shrink lines)
	md               *model  // for promised dates: the incoming lines' ETAs as they stand
}

type mrefusal struct {
	lines []mline
	ttl   int64
	err   error
	field string
	// For ErrRevisionChanged: the figure when refused.
	rev, availSKU int64
}

type mdelta struct {
	row *logv1.StockAdjustment
	ans store.RowResult
}

type morder struct {
	seq       uint64
	lines     []morderLine
	absorbed  bool
	cancelled bool
	refused   bool // the ERP refused it (model_outbox_test.go)
}

type morderLine struct {
	item, loc string
	qty       int64
	po        string // set while the units wait for that incoming line (not committed)
}

type mprune struct {
	at    int64
	kind  int // 1 reservation, 2 refusal, 3 delta, 4 release-all (key: channel, release_all_id)
	key   rkey
	delta string
}

type mchannel struct {
	locs   []string
	buffer int64
	strict bool  // requires SKU mappings
	rev    int64 // the last entry that changed the channel
}

type model struct {
	window     int64
	maxRecords int
	now        int64
	locs       map[string]bool
	channels   map[string]mchannel
	counters   map[mkey]*mcounter
	buffers    map[bkey]int64
	res        map[rkey]*mres
	refusals   map[rkey]*mrefusal
	deltas     map[string]*mdelta
	orders     []*morder
	releaseAll map[rkey]uint32
	skus       map[string]*msku      // SKU mappings and tombstones (model_catalog_test.go)
	incoming   map[string]*mincoming // purchase-order lines by id (model_backorder_test.go)
	seen       map[string]int        // outcomes reached, when not nil (model_backorder_test.go)
	index      int64                 // the entry being applied
	casFigure  [2]int64              // (mod_revision, SKU units) of the last compare-and-reserve refusal
	nextSeq    uint64
	mark       uint64
	outbox     []*mentry // entries not yet trimmed, in seq order (model_outbox_test.go)
	queue      []mprune
}

func newModel(cfg store.Config) *model {
	return &model{
		window: cfg.RetryWindowNanos, maxRecords: cfg.MaxRecords,
		locs: map[string]bool{}, channels: map[string]mchannel{}, counters: map[mkey]*mcounter{},
		buffers: map[bkey]int64{}, res: map[rkey]*mres{}, refusals: map[rkey]*mrefusal{},
		deltas: map[string]*mdelta{}, releaseAll: map[rkey]uint32{}, skus: map[string]*msku{}, incoming: map[string]*mincoming{}, nextSeq: 1,
	}
}

// bufferOf resolves the most specific rule: (channel, location), (channel,
// *), (*, location), (*, *), then the channel's default.
func (md *model) bufferOf(ch, item, loc string) int64 {
	for _, k := range []bkey{{item, ch, loc}, {item, ch, ""}, {item, "", loc}, {item, "", ""}} {
		if u, ok := md.buffers[k]; ok {
			return u
		}
	}
	return md.channels[ch].buffer
}

// avail is what channel ch may still promise of item at loc, base units (I1).
func (md *model) avail(ch, item, loc string) int64 {
	c := md.counters[mkey{item, loc}]
	if c == nil {
		return 0
	}
	return max(0, max(0, c.onHand)-c.reserved-c.committed-md.bufferOf(ch, item, loc))
}

func (md *model) oversold(item, loc string) int64 {
	c := md.counters[mkey{item, loc}]
	if c == nil {
		return 0
	}
	return max(0, c.reserved+c.committed-max(0, c.onHand))
}

// begin takes an entry's stamp: time never moves back; due holds expire in
// (deadline, channel, id) order; then old answers are pruned.
func (md *model) begin(ts int64) {
	md.now = max(md.now, ts)
	var due []*mres
	for _, r := range md.res {
		if r.state == store.StateHeld && r.expires <= md.now {
			due = append(due, r)
		}
	}
	slices.SortFunc(due, func(a, b *mres) int {
		return cmp.Or(cmp.Compare(a.expires, b.expires), cmp.Compare(a.key.ch, b.key.ch), cmp.Compare(a.key.id, b.key.id))
	})
	for _, r := range due {
		if r.waitsOnIncoming() {
			md.note("backorder hold expired")
		}
		md.unhold(r)
		md.finish(r, store.StateExpired)
	}
	for len(md.queue) > 0 {
		p := md.queue[0]
		if md.now-p.at < md.window && len(md.queue) <= md.maxRecords {
			break
		}
		switch p.kind {
		case 1:
			delete(md.res, p.key)
		case 2:
			delete(md.refusals, p.key)
		case 3:
			delete(md.deltas, p.delta)
		case 4:
			delete(md.releaseAll, p.key)
		}
		md.queue = md.queue[1:]
	}
	md.trimOutbox() // model_outbox_test.go
}

func (md *model) unhold(r *mres) {
	for _, l := range r.lines {
		for _, a := range l.allocs {
			if a.POLine != "" {
				md.incoming[a.POLine].backordered -= int64(a.Quantity)
				continue
			}
			md.counters[mkey{l.item, string(a.Location)}].reserved -= int64(a.Quantity)
			md.touch(mkey{l.item, string(a.Location)})
		}
	}
}

func (md *model) finish(r *mres, s store.ReservationState) {
	r.state = s
	md.queue = append(md.queue, mprune{at: md.now, kind: 1, key: r.key})
}

func ttlOf(ttl int64) int64 {
	if ttl == 0 {
		return store.DefaultHoldTTLNanos
	}
	return ttl
}

func linesOf(c *logv1.Reserve) []mline {
	out := make([]mline, len(c.GetLines()))
	for i, l := range c.GetLines() {
		out[i] = mline{sku: l.GetSku(), loc: l.GetLocation(), qty: l.GetQuantitySkuUnits(), expect: l.GetExpectedModRevision(),
			backorder: l.GetAllowBackorder()}
	}
	return out
}

// differs names the first field where a retry differs from the first request.
func differs(first []mline, firstTTL int64, retry []mline, retryTTL int64) string {
	if len(first) != len(retry) {
		return "lines"
	}
	for i := range first {
		switch {
		case first[i].sku != retry[i].sku:
			return "lines[" + strconv.Itoa(i) + "].sku"
		case first[i].qty != retry[i].qty:
			return "lines[" + strconv.Itoa(i) + "].quantity"
		case first[i].loc != retry[i].loc:
			return "lines[" + strconv.Itoa(i) + "].location"
		case first[i].expect != retry[i].expect:
			return "lines[" + strconv.Itoa(i) + "].expected_mod_revision"
		case first[i].backorder != retry[i].backorder:
			return "lines[" + strconv.Itoa(i) + "].allow_backorder"
		}
	}
	if ttlOf(firstTTL) != ttlOf(retryTTL) {
		return "ttl"
	}
	return ""
}

// reserve returns the expected answer and, when held, the reservation.
func (md *model) reserve(c *logv1.Reserve) (error, string, *mres) {
	key := rkey{c.GetChannel(), c.GetReservationId()}
	lines := linesOf(c)
	switch {
	case key.ch == "":
		return store.ErrInvalid, "channel", nil
	case key.id == "":
		return store.ErrInvalid, "reservation_id", nil
	case len(lines) == 0:
		return store.ErrInvalid, "lines", nil
	}
	for i, l := range lines {
		if l.qty <= 0 {
			return store.ErrInvalid, "lines[" + strconv.Itoa(i) + "].quantity", nil
		}
	}
	if ttl := c.GetTtlNanos(); ttl != 0 && (ttl < store.MinHoldTTLNanos || ttl > store.MaxHoldTTLNanos) {
		return store.ErrInvalid, "ttl", nil
	}
	if r := md.res[key]; r != nil {
		if f := differs(r.request, r.ttl, lines, c.GetTtlNanos()); f != "" {
			return store.ErrIdempotencyConflict, f, nil
		}
		return nil, "", r
	}
	if f := md.refusals[key]; f != nil {
		if d := differs(f.lines, f.ttl, lines, c.GetTtlNanos()); d != "" {
			return store.ErrIdempotencyConflict, d, nil
		}
		return f.err, f.field, nil
	}
	err, field := md.allocate(key.ch, lines)
	if err != nil {
		md.refusals[key] = &mrefusal{lines: lines, ttl: c.GetTtlNanos(), err: err, field: field, rev: md.casFigure[0], availSKU: md.casFigure[1]}
		md.casFigure = [2]int64{}
		md.queue = append(md.queue, mprune{at: md.now, kind: 2, key: key})
		return err, field, nil
	}
	for _, l := range lines {
		for _, a := range l.allocs {
			if a.POLine != "" {
				md.incoming[a.POLine].backordered += int64(a.Quantity)
				continue
			}
			md.counters[mkey{l.item, string(a.Location)}].reserved += int64(a.Quantity)
			md.touch(mkey{l.item, string(a.Location)})
		}
	}
	r := &mres{key: key, state: store.StateHeld, lines: lines, ttl: c.GetTtlNanos(), created: md.now, expires: md.now + ttlOf(c.GetTtlNanos()),
		request: linesOf(c), md: md}
	md.res[key] = r
	return nil, "", r
}

// allocate fills lines[i].allocs per DESIGN.md after checking SKUs,
// locations and expected revisions: from on-hand alone if it can; else, when
// a line allows a backorder, partly from incoming supply.
func (md *model) allocate(ch string, lines []mline) (error, string) {
	c, ok := md.channels[ch]
	if !ok {
		return store.ErrUnknownChannel, "channel"
	}
	for i := range lines {
		l := &lines[i]
		var ok bool
		if l.item, l.factor, ok = md.resolve(ch, l.sku); !ok {
			return store.ErrUnknownSKU, "lines[" + strconv.Itoa(i) + "].sku"
		}
		if l.loc == "" {
			continue
		}
		if !md.locs[l.loc] {
			return store.ErrUnknownLocation, "lines[" + strconv.Itoa(i) + "].location"
		}
		if !slices.Contains(c.locs, l.loc) {
			return store.ErrLocationNotVisible, "lines[" + strconv.Itoa(i) + "].location"
		}
	}
	for i, l := range lines {
		if l.expect != 0 && int64(l.expect) != md.modRev(ch, l.sku) {
			md.casFigure = [2]int64{md.modRev(ch, l.sku), md.skuAvail(ch, l.sku)}
			return store.ErrRevisionChanged, "lines[" + strconv.Itoa(i) + "].expected_mod_revision"
		}
	}
	err, field := md.placeOnHand(c, ch, lines)
	if errors.Is(err, store.ErrInsufficientStock) && slices.ContainsFunc(lines, func(l mline) bool { return l.backorder }) {
		return md.placeBackorder(c, ch, lines) // model_backorder_test.go
	}
	return err, field
}

// placeOnHand holds the lines from on-hand alone: pinned lines at their
// location; then the first location in priority order that fills every free
// line; else each free line greedily in priority order.
func (md *model) placeOnHand(c mchannel, ch string, lines []mline) (error, string) {
	taken := map[mkey]int64{}
	left := func(item, loc string) int64 { return md.avail(ch, item, loc) - taken[mkey{item, loc}] }
	var free []int
	for i := range lines {
		l := &lines[i]
		if l.loc == "" {
			free = append(free, i)
			continue
		}
		if l.qty*l.factor > left(l.item, l.loc) {
			return store.ErrInsufficientStock, "lines[" + strconv.Itoa(i) + "].quantity"
		}
		taken[mkey{l.item, l.loc}] += l.qty * l.factor
		l.allocs = []store.Allocation{{Location: store.LocationID(l.loc), Quantity: store.Units(l.qty * l.factor)}}
	}
	if len(free) == 0 {
		return nil, ""
	}
	demand := map[string]int64{}
	for _, i := range free {
		demand[lines[i].item] += lines[i].qty * lines[i].factor
	}
	for _, loc := range c.locs {
		fits := true
		for item, q := range demand {
			fits = fits && left(item, loc) >= q
		}
		if fits {
			for _, i := range free {
				lines[i].allocs = []store.Allocation{{Location: store.LocationID(loc), Quantity: store.Units(lines[i].qty * lines[i].factor)}}
			}
			return nil, ""
		}
	}
	for _, i := range free {
		l := &lines[i]
		rem := l.qty * l.factor
		for _, loc := range c.locs {
			take := min(left(l.item, loc), rem)
			take -= take % l.factor // whole SKU units
			if take <= 0 {
				continue
			}
			l.allocs = append(l.allocs, store.Allocation{Location: store.LocationID(loc), Quantity: store.Units(take)})
			taken[mkey{l.item, loc}] += take
			rem -= take
			if rem == 0 {
				break
			}
		}
		if rem > 0 {
			for j := range lines {
				lines[j].allocs = nil
			}
			return store.ErrInsufficientStock, "lines[" + strconv.Itoa(i) + "].quantity"
		}
	}
	return nil, ""
}

func (md *model) confirm(c *logv1.Confirm) (error, string, *mres) {
	r := md.res[rkey{c.GetChannel(), c.GetReservationId()}]
	switch {
	case r == nil:
		return store.ErrUnknownReservation, "reservation_id", nil
	case (r.state == store.StateConfirmed || r.state == store.StateCancelled) && r.orderRef != c.GetOrderRef():
		return store.ErrIdempotencyConflict, "order_ref", nil
	case r.state == store.StateReleased || r.state == store.StateExpired:
		return store.ErrNotHeld, "reservation_id", nil
	case r.state == store.StateHeld:
		e := &mentry{}
		md.appendEntry(e) // model_outbox_test.go
		o := &morder{seq: e.seq}
		e.order = o
		for _, l := range r.lines {
			for _, a := range l.allocs {
				if a.POLine != "" {
					// Not committed: the units wait in the order for the incoming line.
					o.lines = append(o.lines, morderLine{l.item, string(a.Location), int64(a.Quantity), a.POLine})
					continue
				}
				ct := md.counters[mkey{l.item, string(a.Location)}]
				md.touch(mkey{l.item, string(a.Location)})
				ct.reserved -= int64(a.Quantity)
				ct.committed += int64(a.Quantity)
				o.lines = append(o.lines, morderLine{l.item, string(a.Location), int64(a.Quantity), ""})
			}
		}
		md.orders = append(md.orders, o)
		r.orderRef, r.orderSeq = c.GetOrderRef(), o.seq
		md.finish(r, store.StateConfirmed)
	}
	return nil, "", r
}

func (md *model) release(c *logv1.Release) (error, string, *mres) {
	r := md.res[rkey{c.GetChannel(), c.GetReservationId()}]
	switch {
	case r == nil:
		return store.ErrUnknownReservation, "reservation_id", nil
	case r.state == store.StateConfirmed || r.state == store.StateCancelled:
		return store.ErrNotHeld, "reservation_id", nil
	case r.state == store.StateHeld:
		md.unhold(r)
		md.finish(r, store.StateReleased)
	}
	return nil, "", r
}

func (md *model) setStock(c *logv1.SetStock) []store.RowResult {
	out := make([]store.RowResult, len(c.GetRows()))
	for i, row := range c.GetRows() {
		k := mkey{row.GetItem(), row.GetLocation()}
		ct := md.counters[k]
		switch {
		case !md.locs[k.loc] || row.GetVersion() == 0:
			out[i] = store.RowResult{Status: store.RowRejected}
		case ct != nil && row.GetVersion() < ct.version,
			ct != nil && row.GetVersion() == ct.version && row.GetOnHandBaseUnits() == ct.onHand:
			out[i] = store.RowResult{Status: store.RowIgnoredStale, Version: ct.version, OnHand: store.Units(ct.onHand)}
		case ct != nil && row.GetVersion() == ct.version:
			out[i] = store.RowResult{Status: store.RowRejected, Version: ct.version, OnHand: store.Units(ct.onHand)}
		default:
			if ct == nil {
				ct = &mcounter{}
				md.counters[k] = ct
			}
			ct.onHand, ct.version = row.GetOnHandBaseUnits(), row.GetVersion()
			md.touch(k)
			out[i] = store.RowResult{Status: store.RowApplied, Version: ct.version, OnHand: store.Units(ct.onHand)}
		}
	}
	// The mark never passes the last order issued and never moves back.
	if mark := min(c.GetAbsorbedMark(), md.nextSeq-1); mark > md.mark {
		md.mark = mark
		for _, o := range md.orders {
			// A cancelled or refused order's units left committed then.
			if o.seq <= mark && !o.absorbed && !o.cancelled && !o.refused {
				o.absorbed = true
				for _, l := range o.lines {
					if l.po != "" {
						continue // still waiting: never committed
					}
					md.counters[mkey{l.item, l.loc}].committed -= l.qty
					md.touch(mkey{l.item, l.loc})
				}
			}
		}
	}
	return out
}

func (md *model) adjust(c *logv1.AdjustStock) []store.RowResult {
	out := make([]store.RowResult, len(c.GetRows()))
	for i, row := range c.GetRows() {
		if d := md.deltas[row.GetDeltaId()]; d != nil {
			if d.row.GetItem() == row.GetItem() && d.row.GetLocation() == row.GetLocation() &&
				d.row.GetDeltaBaseUnits() == row.GetDeltaBaseUnits() && d.row.GetVersion() == row.GetVersion() {
				out[i] = d.ans
			} else {
				out[i] = store.RowResult{Status: store.RowRejected}
			}
			continue
		}
		k := mkey{row.GetItem(), row.GetLocation()}
		if !md.locs[k.loc] || row.GetDeltaBaseUnits() == 0 {
			out[i] = store.RowResult{Status: store.RowRejected}
			continue
		}
		ct := md.counters[k]
		if ct != nil && row.GetVersion() != 0 && row.GetVersion() <= ct.version {
			out[i] = store.RowResult{Status: store.RowIgnoredStale, Version: ct.version, OnHand: store.Units(ct.onHand)}
		} else {
			if ct == nil {
				ct = &mcounter{}
				md.counters[k] = ct
			}
			ct.onHand += row.GetDeltaBaseUnits()
			ct.version = max(ct.version, row.GetVersion())
			md.touch(k)
			out[i] = store.RowResult{Status: store.RowApplied, Version: ct.version, OnHand: store.Units(ct.onHand)}
		}
		md.deltas[row.GetDeltaId()] = &mdelta{row: row, ans: out[i]}
		md.queue = append(md.queue, mprune{at: md.now, kind: 3, delta: row.GetDeltaId()})
	}
	return out
}

func (md *model) setBuffer(c *logv1.SetBuffer) (error, string) {
	switch {
	case c.GetBufferBaseUnits() < 0:
		return store.ErrInvalid, "buffer_base_units"
	case c.GetChannel() != "" && md.channels[c.GetChannel()].locs == nil:
		return store.ErrUnknownChannel, "channel"
	case c.GetLocation() != "" && !md.locs[c.GetLocation()]:
		return store.ErrUnknownLocation, "location"
	}
	k := bkey{c.GetItem(), c.GetChannel(), c.GetLocation()}
	if md.buffers[k] == c.GetBufferBaseUnits() {
		return nil, "" // no change: no revision moves
	}
	if c.GetBufferBaseUnits() == 0 {
		delete(md.buffers, k)
	} else {
		md.buffers[k] = c.GetBufferBaseUnits()
	}
	md.touchItem(c.GetItem())
	return nil, ""
}

// reservation renders a model reservation as the machine reports it.
func (r *mres) reservation() store.Reservation {
	out := store.Reservation{
		Channel: store.ChannelID(r.key.ch), ID: store.ReservationID(r.key.id), State: r.state,
		CreatedAt: store.Timestamp(r.created), ExpiresAt: store.Timestamp(r.expires), OrderRef: r.orderRef, OrderSeq: r.orderSeq,
	}
	for _, l := range r.lines {
		out.Lines = append(out.Lines, store.ReservationLine{
			SKU: store.SKU(l.sku), Item: store.ItemID(l.item), Quantity: store.Units(l.qty), Factor: store.Units(l.factor),
			Allocations: slices.Clone(l.allocs),
		})
	}
	if r.md != nil {
		r.md.promise(&out)
	}
	return out
}

func (mc *mcounter) String() string {
	return fmt.Sprintf("on_hand %d reserved %d committed %d v%d", mc.onHand, mc.reserved, mc.committed, mc.version)
}
