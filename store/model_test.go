package store_test

import (
	"cmp"
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
}

type mline struct {
	sku, loc string
	qty      int64
	allocs   []store.Allocation
}

type mres struct {
	key              rkey
	state            store.ReservationState
	lines            []mline
	ttl              int64
	created, expires int64
	orderRef         string
	orderSeq         uint64
}

type mrefusal struct {
	lines []mline
	ttl   int64
	err   error
	field string
}

type mdelta struct {
	row *logv1.StockAdjustment
	ans store.RowResult
}

type morder struct {
	seq      uint64
	lines    []morderLine
	absorbed bool
}

type morderLine struct {
	item, loc string
	qty       int64
}

type mprune struct {
	at    int64
	kind  int // 1 reservation, 2 refusal, 3 delta
	key   rkey
	delta string
}

type mchannel struct {
	locs   []string
	buffer int64
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
	nextSeq    uint64
	mark       uint64
	queue      []mprune
}

func newModel(cfg store.Config) *model {
	return &model{
		window: cfg.RetryWindowNanos, maxRecords: cfg.MaxRecords,
		locs: map[string]bool{}, channels: map[string]mchannel{}, counters: map[mkey]*mcounter{},
		buffers: map[bkey]int64{}, res: map[rkey]*mres{}, refusals: map[rkey]*mrefusal{},
		deltas: map[string]*mdelta{}, nextSeq: 1,
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
		}
		md.queue = md.queue[1:]
	}
}

func (md *model) unhold(r *mres) {
	for _, l := range r.lines {
		for _, a := range l.allocs {
			md.counters[mkey{l.sku, string(a.Location)}].reserved -= int64(a.Quantity)
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
		out[i] = mline{sku: l.GetSku(), loc: l.GetLocation(), qty: l.GetQuantitySkuUnits()}
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
		if f := differs(r.lines, r.ttl, lines, c.GetTtlNanos()); f != "" {
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
		md.refusals[key] = &mrefusal{lines: lines, ttl: c.GetTtlNanos(), err: err, field: field}
		md.queue = append(md.queue, mprune{at: md.now, kind: 2, key: key})
		return err, field, nil
	}
	for _, l := range lines {
		for _, a := range l.allocs {
			md.counters[mkey{l.sku, string(a.Location)}].reserved += int64(a.Quantity)
		}
	}
	r := &mres{key: key, state: store.StateHeld, lines: lines, ttl: c.GetTtlNanos(), created: md.now, expires: md.now + ttlOf(c.GetTtlNanos())}
	md.res[key] = r
	return nil, "", r
}

// allocate fills lines[i].allocs per DESIGN.md: pinned lines at their
// location; then the first location in priority order that fills every free
// line; else each free line greedily in priority order.
func (md *model) allocate(ch string, lines []mline) (error, string) {
	c, ok := md.channels[ch]
	if !ok {
		return store.ErrUnknownChannel, "channel"
	}
	for i, l := range lines {
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
	taken := map[mkey]int64{}
	left := func(item, loc string) int64 { return md.avail(ch, item, loc) - taken[mkey{item, loc}] }
	var free []int
	for i := range lines {
		l := &lines[i]
		if l.loc == "" {
			free = append(free, i)
			continue
		}
		if l.qty > left(l.sku, l.loc) {
			return store.ErrInsufficientStock, "lines[" + strconv.Itoa(i) + "].quantity"
		}
		taken[mkey{l.sku, l.loc}] += l.qty
		l.allocs = []store.Allocation{{Location: store.LocationID(l.loc), Quantity: store.Units(l.qty)}}
	}
	if len(free) == 0 {
		return nil, ""
	}
	demand := map[string]int64{}
	for _, i := range free {
		demand[lines[i].sku] += lines[i].qty
	}
	for _, loc := range c.locs {
		fits := true
		for item, q := range demand {
			fits = fits && left(item, loc) >= q
		}
		if fits {
			for _, i := range free {
				lines[i].allocs = []store.Allocation{{Location: store.LocationID(loc), Quantity: store.Units(lines[i].qty)}}
			}
			return nil, ""
		}
	}
	for _, i := range free {
		l := &lines[i]
		rem := l.qty
		for _, loc := range c.locs {
			take := min(left(l.sku, loc), rem)
			if take <= 0 {
				continue
			}
			l.allocs = append(l.allocs, store.Allocation{Location: store.LocationID(loc), Quantity: store.Units(take)})
			taken[mkey{l.sku, loc}] += take
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
	case r.state == store.StateConfirmed && r.orderRef != c.GetOrderRef():
		return store.ErrIdempotencyConflict, "order_ref", nil
	case r.state == store.StateReleased || r.state == store.StateExpired:
		return store.ErrNotHeld, "reservation_id", nil
	case r.state == store.StateHeld:
		o := &morder{seq: md.nextSeq}
		md.nextSeq++
		for _, l := range r.lines {
			for _, a := range l.allocs {
				ct := md.counters[mkey{l.sku, string(a.Location)}]
				ct.reserved -= int64(a.Quantity)
				ct.committed += int64(a.Quantity)
				o.lines = append(o.lines, morderLine{l.sku, string(a.Location), int64(a.Quantity)})
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
	case r.state == store.StateConfirmed:
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
			out[i] = store.RowResult{Status: store.RowApplied, Version: ct.version, OnHand: store.Units(ct.onHand)}
		}
	}
	// The mark never passes the last order issued and never moves back.
	if mark := min(c.GetAbsorbedMark(), md.nextSeq-1); mark > md.mark {
		md.mark = mark
		for _, o := range md.orders {
			if o.seq <= mark && !o.absorbed {
				o.absorbed = true
				for _, l := range o.lines {
					md.counters[mkey{l.item, l.loc}].committed -= l.qty
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
	if c.GetBufferBaseUnits() == 0 {
		delete(md.buffers, k)
	} else {
		md.buffers[k] = c.GetBufferBaseUnits()
	}
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
			SKU: store.SKU(l.sku), Item: store.ItemID(l.sku), Quantity: store.Units(l.qty), Factor: 1,
			Allocations: slices.Clone(l.allocs),
		})
	}
	return out
}

func (mc *mcounter) String() string {
	return fmt.Sprintf("on_hand %d reserved %d committed %d v%d", mc.onHand, mc.reserved, mc.committed, mc.version)
}
