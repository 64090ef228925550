package store_test

import (
	"cmp"
	"reflect"
	"slices"
	"strconv"
	"time"

	"pgregory.net/rapid"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// The reference model of the hold lifecycle (Extend, partial Release,
// CancelOrder, ReleaseAll), written from the issue rather than from
// lifecycle.go, and the property-test actions that drive it.

// mop is an applied Extend (kind 1) or partial Release (kind 2).
type mop struct {
	kind    int
	id      string
	ttl     int64
	lines   [][2]int64 // (line, quantity)
	expires int64      // the deadline the op answered
}

func (r *mres) findOp(kind int, id string) *mop {
	for i := range r.ops {
		if r.ops[i].kind == kind && r.ops[i].id == id {
			return &r.ops[i]
		}
	}
	return nil
}

// answerOf is the reservation as it stands with the deadline an op answered.
func (r *mres) answerOf(op *mop) *store.Reservation {
	out := r.reservation()
	out.ExpiresAt = store.Timestamp(op.expires)
	return &out
}

func (r *mres) current() *store.Reservation {
	out := r.reservation()
	return &out
}

// extend: a held reservation's deadline becomes now + ttl; a retry with the
// same extend id answers the first deadline, even once the hold ended.
func (md *model) extend(c *logv1.Extend) (error, string, *store.Reservation) {
	if c.GetExtendId() == "" {
		return store.ErrInvalid, "extend_id", nil
	}
	if ttl := c.GetTtlNanos(); ttl < store.MinHoldTTLNanos || ttl > store.MaxHoldTTLNanos {
		return store.ErrInvalid, "ttl", nil
	}
	r := md.res[rkey{c.GetChannel(), c.GetReservationId()}]
	if r == nil {
		return store.ErrUnknownReservation, "reservation_id", nil
	}
	if op := r.findOp(1, c.GetExtendId()); op != nil {
		if op.ttl != c.GetTtlNanos() {
			return store.ErrIdempotencyConflict, "extend_id", nil
		}
		return nil, "", r.answerOf(op)
	}
	if r.state != store.StateHeld {
		return store.ErrNotHeld, "reservation_id", nil
	}
	r.expires = md.now + c.GetTtlNanos()
	r.ops = append(r.ops, mop{kind: 1, id: c.GetExtendId(), ttl: c.GetTtlNanos(), expires: r.expires})
	return nil, "", r.current()
}

// releasePart gives back SKU units of lines, all or nothing, from each line's
// last allocation first; a reservation whose lines are all at 0 is released.
func (md *model) releasePart(c *logv1.Release) (error, string, *store.Reservation) {
	if c.GetReleaseId() == "" {
		return store.ErrInvalid, "release_id", nil
	}
	var lines [][2]int64
	for i, l := range c.GetLines() {
		if l.GetQuantitySkuUnits() <= 0 {
			return store.ErrInvalid, "lines[" + strconv.Itoa(i) + "].quantity", nil
		}
		lines = append(lines, [2]int64{int64(l.GetLine()), l.GetQuantitySkuUnits()})
	}
	r := md.res[rkey{c.GetChannel(), c.GetReservationId()}]
	if r == nil {
		return store.ErrUnknownReservation, "reservation_id", nil
	}
	if op := r.findOp(2, c.GetReleaseId()); op != nil {
		if !slices.Equal(op.lines, lines) {
			return store.ErrIdempotencyConflict, "release_id", nil
		}
		return nil, "", r.answerOf(op)
	}
	if r.state != store.StateHeld {
		return store.ErrNotHeld, "reservation_id", nil
	}
	give := make([]int64, len(r.lines))
	for i, l := range lines {
		if l[0] >= int64(len(r.lines)) {
			return store.ErrInvalid, "lines[" + strconv.Itoa(i) + "].line", nil
		}
		give[l[0]] += l[1]
		if give[l[0]] > r.lines[l[0]].qty {
			return store.ErrInvalid, "lines[" + strconv.Itoa(i) + "].quantity", nil
		}
	}
	for i := range r.lines {
		l := &r.lines[i]
		l.qty -= give[i]
		left := give[i] * l.factor
		var kept []store.Allocation
		for j := len(l.allocs) - 1; j >= 0; j-- {
			a := l.allocs[j]
			take := min(left, int64(a.Quantity))
			if take > 0 && a.POLine != "" {
				md.incoming[a.POLine].backordered -= take // a backorder gives its units back to the line
				md.note("backorder partly released")
			} else if take > 0 {
				md.counters[mkey{l.item, string(a.Location)}].reserved -= take
				md.touch(mkey{l.item, string(a.Location)})
			}
			left -= take
			if a.Quantity -= store.Units(take); a.Quantity > 0 {
				kept = append([]store.Allocation{a}, kept...)
			}
		}
		l.allocs = kept
	}
	r.ops = append(r.ops, mop{kind: 2, id: c.GetReleaseId(), lines: lines, expires: r.expires})
	if !slices.ContainsFunc(r.lines, func(l mline) bool { return l.qty > 0 }) {
		md.finish(r, store.StateReleased)
	}
	return nil, "", r.current()
}

// cancelOrder takes a confirmed order the absorbed mark has not passed out of
// committed and sends a cancellation entry (a seq of its own); again answers
// the same.
func (md *model) cancelOrder(c *logv1.CancelOrder) (error, string, *store.Reservation) {
	r := md.res[rkey{c.GetChannel(), c.GetReservationId()}]
	switch {
	case r == nil:
		return store.ErrUnknownReservation, "reservation_id", nil
	case r.state == store.StateCancelled:
		return nil, "", r.current()
	case r.state != store.StateConfirmed:
		return store.ErrNotConfirmed, "reservation_id", nil
	}
	var o *morder
	for _, x := range md.orders {
		if x.seq == r.orderSeq {
			o = x
		}
	}
	if o.absorbed {
		return store.ErrAbsorbed, "reservation_id", nil
	}
	if o.refused {
		// The refusal freed its units already: nothing goes to the ERP.
		o.cancelled = true
		r.state = store.StateCancelled
		md.note("refused order cancelled")
		return nil, "", r.current()
	}
	for _, l := range o.lines {
		if l.po != "" {
			md.incoming[l.po].backordered -= l.qty // still waiting: back to the incoming line
			md.note("cancelled order gave back waiting units")
			continue
		}
		md.counters[mkey{l.item, l.loc}].committed -= l.qty
		md.touch(mkey{l.item, l.loc})
	}
	o.cancelled = true
	md.appendEntry(&mentry{cancels: o}) // the cancellation goes out through the outbox with its own seq
	r.state = store.StateCancelled
	return nil, "", r.current()
}

// releaseAll ends a channel's live holds in id order and remembers the count
// by (channel, release_all_id) for the retry window.
func (md *model) releaseAllHolds(c *logv1.ReleaseAll) (error, string, uint32) {
	key := rkey{c.GetChannel(), c.GetReleaseAllId()}
	if n, ok := md.releaseAll[key]; ok {
		return nil, "", n
	}
	if _, ok := md.channels[key.ch]; !ok {
		return store.ErrUnknownChannel, "channel", 0
	}
	var held []*mres
	for k, r := range md.res {
		if k.ch == key.ch && r.state == store.StateHeld {
			held = append(held, r)
		}
	}
	slices.SortFunc(held, func(a, b *mres) int { return cmp.Compare(a.key.id, b.key.id) })
	for _, r := range held {
		md.unhold(r)
		md.finish(r, store.StateReleased)
	}
	md.releaseAll[key] = uint32(len(held))
	md.queue = append(md.queue, mprune{at: md.now, kind: 4, key: key})
	return nil, "", uint32(len(held))
}

// listing is what Reservations must answer for one channel: every
// remembered reservation of it, in id order.
func (md *model) listing(ch string) []store.Reservation {
	var out []store.Reservation
	for k, r := range md.res {
		if k.ch == ch {
			out = append(out, r.reservation())
		}
	}
	slices.SortFunc(out, func(a, b store.Reservation) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func expectReservation(t *rapid.T, cmd *logv1.Command, got, want *store.Reservation) {
	t.Helper()
	if want != nil && (got == nil || !reflect.DeepEqual(*got, *want)) {
		t.Fatalf("input %v: got %+v, want %+v", cmd, got, *want)
	}
}

// target draws the reservation a lifecycle command names: usually one the
// model holds in a state where the command acts (so the commands reach past
// "unknown" and "not held"), else any channel and id.
func (p *propRun) target(t *rapid.T, states ...store.ReservationState) (string, string, *mres) {
	var keys []rkey
	for k, r := range p.md.res {
		if slices.Contains(states, r.state) {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b rkey) int { return cmp.Or(cmp.Compare(a.ch, b.ch), cmp.Compare(a.id, b.id)) })
	if len(keys) > 0 && rapid.IntRange(0, 3).Draw(t, "targeted") > 0 {
		k := rapid.SampledFrom(keys).Draw(t, "target")
		return k.ch, k.id, p.md.res[k]
	}
	ch, id := rapid.SampledFrom(anyChannel).Draw(t, "channel"), rapid.SampledFrom(propIDs).Draw(t, "id")
	return ch, id, p.md.res[rkey{ch, id}]
}

// lifecycleActions are the property test's lifecycle commands.
func (p *propRun) lifecycleActions() map[string]func(*rapid.T) {
	ttls := []time.Duration{0, 500 * time.Millisecond, time.Second, 30 * time.Second, 2 * time.Minute, 20 * time.Minute}
	return map[string]func(*rapid.T){
		// A well-formed hold and its confirmation, so the lifecycle commands
		// below find held and confirmed reservations to act on.
		"holdForLifecycle": func(t *rapid.T) {
			var lines []*logv1.ReserveLine
			for range rapid.IntRange(1, 2).Draw(t, "lines") {
				lines = append(lines, line(rapid.SampledFrom(propItems).Draw(t, "sku"), rapid.Int64Range(1, 4).Draw(t, "qty")))
			}
			cmd := reserve(rapid.SampledFrom([]string{"web", "rep"}).Draw(t, "channel"), rapid.SampledFrom(propIDs).Draw(t, "id"),
				rapid.SampledFrom([]time.Duration{30 * time.Second, 2 * time.Minute, 20 * time.Minute}).Draw(t, "ttl"), lines...)
			res := p.apply(t, p.stamp(t), cmd)
			wantErr, field, r := p.md.reserve(cmd.GetReserve())
			expectAnswer(t, cmd, res.Err, wantErr, field)
			if r != nil {
				expectReservation(t, cmd, res.Reservation, r.current())
			}
		},
		"confirmForLifecycle": func(t *rapid.T) {
			ch, id, _ := p.target(t, store.StateHeld, store.StateConfirmed)
			cmd := confirm(ch, id, rapid.SampledFrom([]string{"o1", "o2"}).Draw(t, "order_ref"))
			res := p.apply(t, p.stamp(t), cmd)
			wantErr, field, r := p.md.confirm(cmd.GetConfirm())
			expectAnswer(t, cmd, res.Err, wantErr, field)
			if r != nil {
				expectReservation(t, cmd, res.Reservation, r.current())
			}
		},
		"extend": func(t *rapid.T) {
			ch, id, _ := p.target(t, store.StateHeld)
			cmd := extendCmd(ch, id, rapid.SampledFrom([]string{"e1", "e2", "e3"}).Draw(t, "extend_id"), rapid.SampledFrom(ttls).Draw(t, "ttl"))
			res := p.apply(t, p.stamp(t), cmd)
			wantErr, field, want := p.md.extend(cmd.GetExtend())
			expectAnswer(t, cmd, res.Err, wantErr, field)
			expectReservation(t, cmd, res.Reservation, want)
		},
		"releasePart": func(t *rapid.T) {
			ch, id, r := p.target(t, store.StateHeld)
			var lines []*logv1.ReleaseLine
			for range rapid.IntRange(1, 3).Draw(t, "release_lines") {
				n, most := rapid.Uint32Range(0, 3).Draw(t, "line"), int64(5)
				if r != nil && len(r.lines) > 0 {
					n = rapid.Uint32Range(0, uint32(len(r.lines))).Draw(t, "line_of_target") // one past the end now and then
					if int(n) < len(r.lines) {
						most = r.lines[n].qty + 1
					}
				}
				lines = append(lines, give(n, rapid.Int64Range(0, most).Draw(t, "give")))
			}
			cmd := releasePart(ch, id, rapid.SampledFrom([]string{"p1", "p1", "p2", "p3", ""}).Draw(t, "release_id"), lines...)
			res := p.apply(t, p.stamp(t), cmd)
			wantErr, field, want := p.md.releasePart(cmd.GetRelease())
			expectAnswer(t, cmd, res.Err, wantErr, field)
			expectReservation(t, cmd, res.Reservation, want)
		},
		"cancelOrder": func(t *rapid.T) {
			ch, id, _ := p.target(t, store.StateConfirmed, store.StateCancelled)
			cmd := cancelOrder(ch, id)
			res := p.apply(t, p.stamp(t), cmd)
			wantErr, field, want := p.md.cancelOrder(cmd.GetCancelOrder())
			expectAnswer(t, cmd, res.Err, wantErr, field)
			expectReservation(t, cmd, res.Reservation, want)
		},
		"releaseAll": func(t *rapid.T) {
			cmd := releaseAll(rapid.SampledFrom(anyChannel).Draw(t, "channel"), rapid.SampledFrom([]string{"a1", "a2"}).Draw(t, "release_all_id"))
			res := p.apply(t, p.stamp(t), cmd)
			wantErr, field, want := p.md.releaseAllHolds(cmd.GetReleaseAll())
			expectAnswer(t, cmd, res.Err, wantErr, field)
			if res.Count != want {
				t.Fatalf("input %v: got count %d, want %d", cmd, res.Count, want)
			}
		},
	}
}

// checkListing holds Reservations to the model: every channel's
// reservations in id order, paged at random sizes.
func (p *propRun) checkListing(t *rapid.T) {
	limit := rapid.IntRange(1, 5).Draw(t, "page_size")
	for _, ch := range allChannels {
		want := p.md.listing(ch)
		var got []store.Reservation
		q := store.ReservationQuery{Channel: store.ChannelID(ch), Limit: limit}
		for range len(want) + 2 {
			page, more := p.m.Reservations(q)
			got = append(got, page...)
			if !more {
				break
			}
			q.After = page[len(page)-1].ID
		}
		if !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
			t.Fatalf("reservations of %s in pages of %d: got %+v, want %+v", ch, limit, got, want)
		}
	}
}
