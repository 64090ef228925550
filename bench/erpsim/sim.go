package main

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
)

// The loop: one goroutine follows the outbox (follow) and hands entries to
// the loop, which owns the book and makes every other call in sequence, so
// what stockd receives is in the order the ERP decided it: acknowledgements,
// then counts with the absorbed mark riding on them, then adjustments and
// replays. Every answer is checked against the book; an answer that
// contradicts it is counted and logged, and fails the run at the end.

// maxRows is the most rows stockd takes in one ERP batch.
const maxRows = 10000

// callTimeout bounds one attempt of one RPC.
const callTimeout = 10 * time.Second

// sim is a running simulator. Its methods other than follow run on the
// loop's goroutine.
type sim struct {
	cfg   config
	log   *slog.Logger
	erp   stockdv1.ErpClient
	inv   stockdv1.InventoryClient
	admin stockdv1.AdminClient
	rng   *rand.Rand
	book  *Book
	// runID makes delta ids unique across runs against one node;
	// versionBase is the first version sent for every counter.
	runID       string
	versionBase uint64

	queue   dueQueue
	entries chan *stockdv1.OutboxEntry

	// lastMark is the absorbed mark stockd holds: found at start, then sent.
	lastMark uint64
	adjusts  []sentAdjust
	acks     []*stockdv1.OrderAck
	nextAdj  int
	// lastCheck is when the loop last compared stockd's mark with lastMark.
	lastCheck time.Time
}

// sentAdjust is an adjustment stockd applied, with its first answer.
type sentAdjust struct {
	row    *stockdv1.StockAdjustment
	answer *stockdv1.RowResult
}

func newSim(cfg config, conn grpc.ClientConnInterface, log *slog.Logger, now time.Time) *sim {
	return &sim{
		cfg: cfg, log: log,
		erp: stockdv1.NewErpClient(conn), inv: stockdv1.NewInventoryClient(conn), admin: stockdv1.NewAdminClient(conn),
		rng:         rand.New(rand.NewPCG(cfg.seed, cfg.seed^0x5eed)),
		runID:       strconv.FormatInt(now.UnixNano(), 36),
		versionBase: uint64(now.UnixNano()),
		entries:     make(chan *stockdv1.OutboxEntry, 1024),
	}
}

func (s *sim) policy() Policy {
	return Policy{RefuseRate: s.cfg.refuseRate, OtherLocationRate: s.cfg.otherLocationRate, Rand: s.rng}
}

// contradict records an answer that contradicts the book: the run fails.
func (s *sim) contradict(format string, args ...any) {
	s.book.Totals.Contradictions++
	s.log.Error("contradiction: " + fmt.Sprintf(format, args...))
}

// surprise records an answer the simulator did not expect but that does not
// contradict the book.
func (s *sim) surprise(format string, args ...any) {
	s.book.Totals.Surprises++
	s.log.Warn("surprise: " + fmt.Sprintf(format, args...))
}

// call runs one RPC attempt after another while stockd answers with a code
// a retry may cure (no leader, queue full, a lost deadline), up to ten
// attempts; it reports whether it retried, since a retried write may have
// been applied by an earlier attempt.
func call[T any](ctx context.Context, s *sim, what string, f func(context.Context) (T, error)) (T, bool, error) {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := f(actx)
		cancel()
		switch status.Code(err) {
		case codes.OK:
			return resp, attempt > 1, nil
		case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded:
			if attempt < 10 && ctx.Err() == nil {
				s.book.Totals.Retries++
				s.log.Warn("retrying", "call", what, "attempt", attempt, "err", err)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
				backoff = min(2*backoff, time.Second)
				continue
			}
		}
		var zero T
		return zero, attempt > 1, fmt.Errorf("%s: %w", what, err)
	}
}

// setUp reads where the outbox stands, seeds or adopts the catalog and
// sends every counter's first count.
func (s *sim) setUp(ctx context.Context) error {
	ob, _, err := call(ctx, s, "GetOutbox", func(ctx context.Context) (*stockdv1.GetOutboxResponse, error) {
		return s.erp.GetOutbox(ctx, &stockdv1.GetOutboxRequest{})
	})
	if err != nil {
		return err
	}
	// Every seq below the oldest pending one already has an outcome; every
	// later one will be delivered to this run.
	floor := ob.GetNextSeq() - 1
	if ob.GetPending() > 0 {
		floor = ob.GetOldestPendingSeq() - 1
	}
	s.book = NewBook(s.cfg.locations, floor)
	s.lastMark = ob.GetAbsorbedMark()
	if s.cfg.seedCatalog {
		err = s.seedCatalog(ctx)
	} else {
		err = s.adoptCatalog(ctx)
	}
	if err != nil {
		return err
	}
	for _, k := range s.book.Keys() {
		s.book.Counter(k).sent.version = s.versionBase - 1 // nothing sent yet: the first count is versionBase
	}
	s.log.Info("catalog ready", "counters", len(s.book.Keys()), "outbox_floor", floor, "absorbed_mark", s.lastMark)
	return s.flush(ctx)
}

// seedCatalog declares the locations and the channel and draws every
// counter's first on_hand from the seed.
func (s *sim) seedCatalog(ctx context.Context) error {
	for _, loc := range s.cfg.locations {
		if _, _, err := call(ctx, s, "PutLocation", func(ctx context.Context) (*stockdv1.PutLocationResponse, error) {
			return s.admin.PutLocation(ctx, &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: loc, Name: loc}})
		}); err != nil {
			return err
		}
	}
	if _, _, err := call(ctx, s, "PutChannel", func(ctx context.Context) (*stockdv1.PutChannelResponse, error) {
		return s.admin.PutChannel(ctx, &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{
			Id: s.cfg.channel, Locations: s.cfg.locations}})
	}); err != nil {
		return err
	}
	for _, item := range s.cfg.itemIDs() {
		for _, loc := range s.cfg.locations {
			s.book.AddCounter(item, loc, s.cfg.minStock+s.rng.Int64N(s.cfg.maxStock-s.cfg.minStock+1))
		}
	}
	return nil
}

// adoptCatalog starts the book from the on_hand stockd shows for the items
// on the channel, which must see every location.
func (s *sim) adoptCatalog(ctx context.Context) error {
	items := s.cfg.itemIDs()
	for chunk := range slices.Chunk(items, 1000) {
		resp, _, err := call(ctx, s, "GetAvailability", func(ctx context.Context) (*stockdv1.GetAvailabilityResponse, error) {
			return s.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: s.cfg.channel, Skus: chunk, Linearizable: true})
		})
		if err != nil {
			return err
		}
		for _, a := range resp.GetSkus() {
			for _, loc := range s.cfg.locations {
				i := slices.IndexFunc(a.GetLocations(), func(la *stockdv1.LocationAvailability) bool { return la.GetLocation() == loc })
				if i < 0 {
					return fmt.Errorf("channel %q does not see location %q: it must see every --locations entry", s.cfg.channel, loc)
				}
				s.book.AddCounter(a.GetItem(), loc, max(0, a.GetLocations()[i].GetOnHandBaseUnits()))
			}
		}
	}
	return nil
}

// follow streams the outbox into s.entries until ctx ends, reconnecting
// after a broken stream (from the floor again: the book drops duplicates).
// It runs on its own goroutine and touches nothing but s.entries and s.log.
func (s *sim) follow(ctx context.Context, after uint64) {
	for {
		st, err := s.erp.PullOrders(ctx, &stockdv1.PullOrdersRequest{AfterSeq: after, Follow: true})
		for err == nil {
			var e *stockdv1.OutboxEntry
			if e, err = st.Recv(); err == nil {
				select {
				case s.entries <- e:
				case <-ctx.Done():
					return
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("PullOrders ended; reconnecting", "err", err)
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// receive books an entry in, once, and schedules its decision after a
// random delay, so decisions come out of order.
func (s *sim) receive(e *stockdv1.OutboxEntry, now time.Time) {
	v := entryView{seq: e.GetSeq(), channel: e.GetChannel(), orderRef: e.GetOrderRef(), cancelsSeq: e.GetCancelsSeq(), kind: kindOrder}
	if e.GetKind() == stockdv1.OutboxKind_OUTBOX_KIND_CANCELLATION {
		v.kind = kindCancellation
	}
	for _, l := range e.GetLines() {
		v.lines = append(v.lines, lineView{item: l.GetItem(), location: l.GetLocation(), units: l.GetQuantityBaseUnits(), poLine: l.GetPoLineId()})
	}
	if !s.book.Deliver(v) {
		return
	}
	delay := time.Duration(s.rng.Int64N(int64(s.cfg.maxDelay) + 1))
	heap.Push(&s.queue, scheduled{due: now.Add(delay), seq: v.seq})
}

// tick decides what is due (everything when draining), acknowledges it,
// sends the counts it changed with the mark, then, unless draining, sends
// adjustments and replays.
func (s *sim) tick(ctx context.Context, now time.Time, draining bool) error {
	var ds []Decision
	for s.queue.Len() > 0 && (draining || !s.queue[0].due.After(now)) {
		sc := heap.Pop(&s.queue).(scheduled)
		o := s.book.Order(sc.seq)
		var got []Decision
		switch {
		case o.decided:
			// A cancellation decided its order first.
		case o.entry.kind == kindOrder:
			got = append(got, s.book.DecideOrder(sc.seq, s.policy()))
		default:
			got = s.book.DecideCancellation(sc.seq, s.policy())
		}
		for _, d := range got {
			// Judged before anything else moves the book: a cancellation
			// decided next may give back the units this one lacked.
			if d.Short != nil {
				if err := s.judgeShortage(ctx, d); err != nil {
					return err
				}
			}
		}
		ds = append(ds, got...)
	}
	if err := s.ack(ctx, ds); err != nil {
		return err
	}
	if err := s.flush(ctx); err != nil {
		return err
	}
	if draining {
		return nil
	}
	if err := s.adjustments(ctx); err != nil {
		return err
	}
	if err := s.replays(ctx); err != nil {
		return err
	}
	if now.Sub(s.lastCheck) >= time.Second {
		s.lastCheck = now
		return s.checkMark(ctx)
	}
	return nil
}

// judgeShortage decides whether a booking refused for lack of stock at the
// location stockd allocated is evidence of an oversell. stockd admits a hold
// only within the on_hand it was sent minus what it holds committed, and an
// order stays committed until the mark passes it, which the loop sends only
// with the counts that include it; so a counter nobody else took from never
// runs short. Two things do take from it behind stockd's back: the ERP
// itself (a damage, a line fulfilled here that stockd allocated elsewhere:
// the counter's takes), and a cancelled order the ERP booked here whose
// cancellation it has not processed yet (stockd freed its units at once).
// The second is looked up in the outbox now: a cancellation that freed the
// units sold twice was applied before those holds, so it is there.
func (s *sim) judgeShortage(ctx context.Context, d Decision) error {
	c := d.Short
	if c.takes > 0 {
		s.book.Totals.ShortagesExplained++
		return nil
	}
	pending, err := s.pullPending(ctx)
	if err != nil {
		return err
	}
	for _, e := range pending {
		if e.GetKind() != stockdv1.OutboxKind_OUTBOX_KIND_CANCELLATION {
			continue
		}
		o := s.book.Order(e.GetCancelsSeq())
		if o == nil || !o.booked || o.cancelled {
			continue
		}
		for _, f := range o.fulfils {
			if f.key == c.key {
				s.book.Totals.ShortagesExplained++
				return nil
			}
		}
	}
	s.book.Totals.ShortagesUnexplained++
	s.contradict("order %d: %s short at %s (book on_hand %d, stockd was sent %d at version %d), "+
		"with no damage, moved line or unprocessed cancellation there: stockd promised units it did not have",
		d.Seq, c.key, c.key, c.onHand, c.sent.onHand, c.sent.version)
	return nil
}

// pullPending reads the outbox entries without an outcome now.
func (s *sim) pullPending(ctx context.Context) ([]*stockdv1.OutboxEntry, error) {
	out, _, err := call(ctx, s, "PullOrders", func(ctx context.Context) ([]*stockdv1.OutboxEntry, error) {
		st, err := s.erp.PullOrders(ctx, &stockdv1.PullOrdersRequest{})
		if err != nil {
			return nil, err
		}
		var out []*stockdv1.OutboxEntry
		for {
			e, err := st.Recv()
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
	})
	return out, err
}

// ack reports the decisions' outcomes and, at --replay-rate, one earlier
// outcome again, which must come back IGNORED_STALE.
func (s *sim) ack(ctx context.Context, ds []Decision) error {
	if len(ds) > 0 {
		req := &stockdv1.AckOrdersRequest{}
		for _, d := range ds {
			a := &stockdv1.OrderAck{Seq: d.Seq, Outcome: stockdv1.OrderOutcome_ORDER_OUTCOME_REFUSED, Reason: d.Reason}
			switch {
			case d.Done:
				a.Outcome = stockdv1.OrderOutcome_ORDER_OUTCOME_DONE
			case d.Booked:
				a.Outcome = stockdv1.OrderOutcome_ORDER_OUTCOME_BOOKED
			}
			req.Acks = append(req.Acks, a)
		}
		for chunk := range slices.Chunk(req.GetAcks(), maxRows) {
			resp, retried, err := call(ctx, s, "AckOrders", func(ctx context.Context) (*stockdv1.AckOrdersResponse, error) {
				return s.erp.AckOrders(ctx, &stockdv1.AckOrdersRequest{Acks: chunk})
			})
			if err != nil {
				return err
			}
			if len(resp.GetRows()) != len(chunk) {
				return fmt.Errorf("AckOrders: %d acks answered with %d rows", len(chunk), len(resp.GetRows()))
			}
			for i, r := range resp.GetRows() {
				a := chunk[i]
				switch st := r.GetStatus(); {
				case st == stockdv1.RowStatus_ROW_STATUS_APPLIED:
					s.acks = append(s.acks, a)
				case st == stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE && retried:
				default:
					s.contradict("AckOrders(seq %d %s): got %s %q, want APPLIED", a.GetSeq(), a.GetOutcome(), st, r.GetReason())
				}
				s.book.Acked(a.GetSeq()) // a rejected ack must not stall the mark: the run fails anyway
			}
		}
	}
	if len(s.acks) > 0 && s.chance(s.cfg.replayRate) {
		a := s.acks[s.rng.IntN(len(s.acks))]
		resp, _, err := call(ctx, s, "AckOrders(replay)", func(ctx context.Context) (*stockdv1.AckOrdersResponse, error) {
			return s.erp.AckOrders(ctx, &stockdv1.AckOrdersRequest{Acks: []*stockdv1.OrderAck{a}})
		})
		if err != nil {
			return err
		}
		s.book.Totals.AckReplays++
		if r := resp.GetRows(); len(r) != 1 || r[0].GetStatus() != stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE {
			s.contradict("AckOrders(seq %d %s again): got %v, want IGNORED_STALE", a.GetSeq(), a.GetOutcome(), r)
		}
	}
	return nil
}

// chance reports true with probability rate x tick (rate per second).
func (s *sim) chance(ratePerSecond float64) bool {
	return s.rng.Float64() < ratePerSecond*s.cfg.tick.Seconds()
}

// planned is a count the flush sends, and, for a swapped pair, the older
// count of the pair it sends after it.
type planned struct {
	c     *counter
	want  sentCount
	older *sentCount
}

// flush sends the counts of every counter the book moved, each at a new
// version, with the absorbed mark on the last batch: the counts reflecting
// every decided order are applied before the mark that covers them (rows
// first, then the mark, in one log entry). With nothing to count but a mark
// to move (refusals only), the batch carries the mark alone: stockd takes a
// batch without rows when it has a mark, whatever erp.proto's "1 to 10,000
// rows" says. At --swap-rate a counter's change is sent as two counts in
// swapped order; the older must come back stale.
func (s *sim) flush(ctx context.Context) error {
	mark := s.book.Mark()
	dirty := s.book.Dirty()
	if len(dirty) == 0 && mark <= s.lastMark {
		return nil
	}
	var plan []planned
	for _, c := range dirty {
		p := planned{c: c, want: sentCount{version: c.sent.version + 1, onHand: c.onHand}}
		if c.sent.version >= s.versionBase && s.rng.Float64() < s.cfg.swapRate {
			p.older = &sentCount{version: p.want.version, onHand: c.sent.onHand}
			p.want.version++
		}
		plan = append(plan, p)
	}
	for i := 0; i == 0 || i < len(plan); i += maxRows {
		chunk := plan[i:min(i+maxRows, len(plan))]
		req := &stockdv1.SetStockRequest{}
		for _, p := range chunk {
			req.Rows = append(req.Rows, &stockdv1.StockCount{Item: p.c.key.item, Location: p.c.key.location,
				OnHandBaseUnits: p.want.onHand, Version: p.want.version})
		}
		last := i+maxRows >= len(plan)
		if last && mark > s.lastMark {
			req.AbsorbedMark = mark
		}
		resp, retried, err := call(ctx, s, "SetStock", func(ctx context.Context) (*stockdv1.SetStockResponse, error) {
			return s.erp.SetStock(ctx, req)
		})
		if err != nil {
			return err
		}
		if len(resp.GetRows()) != len(chunk) {
			return fmt.Errorf("SetStock: %d rows answered with %d", len(chunk), len(resp.GetRows()))
		}
		s.book.Totals.CountBatches++
		s.book.Totals.CountRows += len(chunk)
		for j, r := range resp.GetRows() {
			p := chunk[j]
			want := stockdv1.RowStatus_ROW_STATUS_APPLIED
			if retried && r.GetStatus() == stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE {
				want = stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE // an earlier attempt applied it
			}
			if r.GetStatus() != want || r.GetVersion() != p.want.version || r.GetOnHandBaseUnits() != p.want.onHand {
				s.contradict("SetStock(%s on_hand %d version %d): got %s version %d on_hand %d %q, want %s with that version and on_hand",
					p.c.key, p.want.onHand, p.want.version, r.GetStatus(), r.GetVersion(), r.GetOnHandBaseUnits(), r.GetReason(), want)
			}
			p.c.Sent(p.want)
		}
		if req.GetAbsorbedMark() != 0 {
			s.lastMark = mark
			s.book.Totals.MarksSent++
		}
	}
	for _, p := range plan {
		if p.older != nil {
			s.book.Totals.SwappedCounts++
			if err := s.expectStale(ctx, p.c, *p.older, "the older of two swapped counts"); err != nil {
				return err
			}
		}
	}
	return nil
}

// expectStale sends old, a count older than what stockd holds for c, which
// must come back IGNORED_STALE with what c was last sent.
func (s *sim) expectStale(ctx context.Context, c *counter, old sentCount, what string) error {
	resp, _, err := call(ctx, s, "SetStock(stale)", func(ctx context.Context) (*stockdv1.SetStockResponse, error) {
		return s.erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
			{Item: c.key.item, Location: c.key.location, OnHandBaseUnits: old.onHand, Version: old.version}}})
	})
	if err != nil {
		return err
	}
	r := resp.GetRows()
	if len(r) != 1 || r[0].GetStatus() != stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE ||
		r[0].GetVersion() != c.sent.version || r[0].GetOnHandBaseUnits() != c.sent.onHand {
		s.contradict("SetStock(%s, %s: on_hand %d version %d): got %v, want IGNORED_STALE with version %d on_hand %d",
			c.key, what, old.onHand, old.version, r, c.sent.version, c.sent.onHand)
	}
	return nil
}

// adjustments sends receipts and damages at their rates. Every counter is
// clean here (flush ran first), so stockd holds what the book was sent.
func (s *sim) adjustments(ctx context.Context) error {
	if s.chance(s.cfg.receiptRate) {
		// The emptiest of a few counters: receipts go where stock ran low.
		keys := s.book.Keys()
		c := s.book.Counter(keys[s.rng.IntN(len(keys))])
		for range 3 {
			if o := s.book.Counter(keys[s.rng.IntN(len(keys))]); o.onHand < c.onHand {
				c = o
			}
		}
		if err := s.adjust(ctx, c, 1+s.rng.Int64N(s.cfg.receiptMax), "receipt"); err != nil {
			return err
		}
	}
	if s.chance(s.cfg.damageRate) {
		return s.damage(ctx)
	}
	return nil
}

// damage takes a few units from a random counter, never more than stockd
// shows free there (on_hand - committed - reserved), so that a damage does
// not by itself oversell; a hold racing in between can still be exposed,
// which is why a damaged counter's later shortages count as explained.
func (s *sim) damage(ctx context.Context) error {
	keys := s.book.Keys()
	c := s.book.Counter(keys[s.rng.IntN(len(keys))])
	resp, _, err := call(ctx, s, "GetAvailability", func(ctx context.Context) (*stockdv1.GetAvailabilityResponse, error) {
		return s.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: s.cfg.channel, Skus: []string{c.key.item}})
	})
	if err != nil {
		return err
	}
	var la *stockdv1.LocationAvailability
	for _, a := range resp.GetSkus() {
		for _, l := range a.GetLocations() {
			if l.GetLocation() == c.key.location {
				la = l
			}
		}
	}
	if la == nil {
		return fmt.Errorf("GetAvailability(%s, %s): no figure for location %s", s.cfg.channel, c.key.item, c.key.location)
	}
	if la.GetOnHandBaseUnits() != c.sent.onHand {
		s.contradict("GetAvailability(%s): on_hand %d, want %d, the count sent at version %d", c.key, la.GetOnHandBaseUnits(), c.sent.onHand, c.sent.version)
	}
	free := la.GetOnHandBaseUnits() - la.GetCommittedBaseUnits() - la.GetReservedBaseUnits()
	units := min(1+s.rng.Int64N(3), free, c.onHand)
	if units <= 0 {
		return nil
	}
	return s.adjust(ctx, c, -units, "damage")
}

// adjust sends one delta to c with a new delta id and version.
func (s *sim) adjust(ctx context.Context, c *counter, delta int64, reason string) error {
	s.nextAdj++
	want := sentCount{version: c.sent.version + 1, onHand: c.sent.onHand + delta}
	row := &stockdv1.StockAdjustment{DeltaId: "erpsim-" + s.runID + "-" + strconv.Itoa(s.nextAdj), Item: c.key.item,
		Location: c.key.location, DeltaBaseUnits: delta, Version: want.version, Reason: reason}
	resp, _, err := call(ctx, s, "AdjustStock", func(ctx context.Context) (*stockdv1.AdjustStockResponse, error) {
		return s.erp.AdjustStock(ctx, &stockdv1.AdjustStockRequest{Rows: []*stockdv1.StockAdjustment{row}})
	})
	if err != nil {
		return err
	}
	r := resp.GetRows()
	if len(r) != 1 || r[0].GetStatus() != stockdv1.RowStatus_ROW_STATUS_APPLIED || r[0].GetVersion() != want.version ||
		r[0].GetOnHandBaseUnits() != want.onHand {
		s.contradict("AdjustStock(%s %+d version %d): got %v, want APPLIED with version %d on_hand %d",
			c.key, delta, want.version, r, want.version, want.onHand)
		return nil
	}
	if delta > 0 {
		s.book.Receipt(c, delta)
	} else {
		s.book.Damage(c, -delta)
	}
	c.Sent(want)
	s.adjusts = append(s.adjusts, sentAdjust{row: row, answer: r[0]})
	if len(s.adjusts) > 64 {
		s.adjusts = slices.Delete(s.adjusts, 0, 1)
	}
	return nil
}

// replays resend, at --replay-rate each, an old count of a counter (stale)
// and an old adjustment with its delta id (applied once: the first answer
// again), then read the counter back through a stale count to see that the
// replay changed nothing. Less often it reads the outbox afresh and takes
// in what it delivers, as a reconnecting adapter would: entries delivered
// before must be dropped as duplicates.
func (s *sim) replays(ctx context.Context) error {
	if s.chance(s.cfg.replayRate / 5) {
		pending, err := s.pullPending(ctx)
		if err != nil {
			return err
		}
		now := time.Now()
		for _, e := range pending {
			s.receive(e, now)
		}
	}
	if s.chance(s.cfg.replayRate) {
		keys := s.book.Keys()
		c := s.book.Counter(keys[s.rng.IntN(len(keys))])
		if n := len(c.history); n >= 2 {
			s.book.Totals.StaleCountReplays++
			if err := s.expectStale(ctx, c, c.history[s.rng.IntN(n-1)], "an old count replayed"); err != nil {
				return err
			}
		}
	}
	if len(s.adjusts) > 0 && s.chance(s.cfg.replayRate) {
		a := s.adjusts[s.rng.IntN(len(s.adjusts))]
		resp, _, err := call(ctx, s, "AdjustStock(replay)", func(ctx context.Context) (*stockdv1.AdjustStockResponse, error) {
			return s.erp.AdjustStock(ctx, &stockdv1.AdjustStockRequest{Rows: []*stockdv1.StockAdjustment{a.row}})
		})
		if err != nil {
			return err
		}
		s.book.Totals.AdjustReplays++
		c := s.book.Counter(counterKey{a.row.GetItem(), a.row.GetLocation()})
		r := resp.GetRows()
		switch {
		case len(r) != 1:
			s.contradict("AdjustStock(%s replayed): got %d rows, want 1", a.row.GetDeltaId(), len(r))
		case r[0].GetStatus() == stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE:
			// What common.proto's RowStatus comment promises for a reused
			// delta id; stockd answers the first answer instead (I3).
			s.surprise("AdjustStock(%s replayed): IGNORED_STALE rather than the first answer %v", a.row.GetDeltaId(), a.answer)
		case r[0].GetStatus() != a.answer.GetStatus() || r[0].GetVersion() != a.answer.GetVersion() ||
			r[0].GetOnHandBaseUnits() != a.answer.GetOnHandBaseUnits():
			s.contradict("AdjustStock(%s replayed): got %v, want the first answer %v", a.row.GetDeltaId(), r[0], a.answer)
		}
		old := sentCount{version: c.sent.version - 1}
		if n := len(c.history); n >= 2 {
			old = c.history[n-2]
		}
		return s.expectStale(ctx, c, old, "a read-back after an adjustment replay")
	}
	return nil
}

// checkMark compares the absorbed mark stockd holds with the last one sent.
func (s *sim) checkMark(ctx context.Context) error {
	ob, _, err := call(ctx, s, "GetOutbox", func(ctx context.Context) (*stockdv1.GetOutboxResponse, error) {
		return s.erp.GetOutbox(ctx, &stockdv1.GetOutboxRequest{})
	})
	if err != nil {
		return err
	}
	switch m := ob.GetAbsorbedMark(); {
	case m < s.lastMark:
		s.contradict("GetOutbox: absorbed_mark %d, want %d, the mark last sent", m, s.lastMark)
	case m > s.lastMark:
		s.surprise("GetOutbox: absorbed_mark %d is past %d, the mark last sent: another adapter sends marks", m, s.lastMark)
		s.lastMark = m
	}
	return nil
}

// loop runs until ctx ends (the duration, or a signal), then drains.
func (s *sim) loop(ctx, rpcCtx context.Context) error {
	t := time.NewTicker(s.cfg.tick)
	defer t.Stop()
	progress := time.NewTicker(5 * time.Second)
	defer progress.Stop()
	for {
		select {
		case e := <-s.entries:
			s.receive(e, time.Now())
		case now := <-t.C:
			if err := s.tick(rpcCtx, now, false); err != nil {
				return err
			}
		case <-progress.C:
			tt := s.book.Totals
			s.log.Info("progress", "entries", tt.EntriesSeen, "booked", tt.OrdersBooked, "refused", tt.OrdersRefused,
				"cancellations", tt.CancellationsDone, "moved_lines", tt.LinesMoved, "mark", s.lastMark,
				"queued", s.queue.Len(), "contradictions", tt.Contradictions)
		case <-ctx.Done():
			return s.drain(rpcCtx)
		}
	}
}

// drain decides everything outstanding and sends the final counts and mark,
// again until stockd's outbox has nothing without an outcome and its mark
// covers the last entry; the channels' load must have ended.
func (s *sim) drain(ctx context.Context) error {
	s.log.Info("draining", "queued", s.queue.Len())
	ctx, cancel := context.WithTimeout(ctx, s.cfg.drainTimeout)
	defer cancel()
	for {
		ob, _, err := call(ctx, s, "GetOutbox", func(ctx context.Context) (*stockdv1.GetOutboxResponse, error) {
			return s.erp.GetOutbox(ctx, &stockdv1.GetOutboxRequest{})
		})
		if err != nil {
			return fmt.Errorf("drain: %w", err)
		}
		if ob.GetPending() == 0 && ob.GetAbsorbedMark() == ob.GetNextSeq()-1 && s.book.Mark() <= s.lastMark && s.queue.Len() == 0 {
			if ob.GetAbsorbedMark() != s.lastMark {
				s.contradict("drain: stockd's absorbed_mark is %d, want %d, the mark last sent", ob.GetAbsorbedMark(), s.lastMark)
			}
			s.log.Info("drained", "mark", s.lastMark)
			return nil
		}
		for last := ob.GetNextSeq() - 1; s.book.Delivered() < last; {
			select {
			case e := <-s.entries:
				s.receive(e, time.Now())
			case <-ctx.Done():
				return fmt.Errorf("drain: entries up to seq %d not delivered within %v (got to %d)", last, s.cfg.drainTimeout, s.book.Delivered())
			}
		}
		for len(s.entries) > 0 {
			s.receive(<-s.entries, time.Now())
		}
		if err := s.tick(ctx, time.Now(), true); err != nil {
			return fmt.Errorf("drain: %w", err)
		}
	}
}

// finalCheck compares every counter with what stockd shows after the drain:
// on_hand as last sent and nothing committed (the mark passed every order).
func (s *sim) finalCheck(ctx context.Context) error {
	if err := s.book.Balance(); err != nil {
		s.contradict("book does not balance: %v", err)
	}
	items := s.cfg.itemIDs()
	for chunk := range slices.Chunk(items, 1000) {
		resp, _, err := call(ctx, s, "GetAvailability", func(ctx context.Context) (*stockdv1.GetAvailabilityResponse, error) {
			return s.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: s.cfg.channel, Skus: chunk, Linearizable: true})
		})
		if err != nil {
			return err
		}
		for _, a := range resp.GetSkus() {
			for _, la := range a.GetLocations() {
				c := s.book.Counter(counterKey{a.GetItem(), la.GetLocation()})
				if c == nil {
					continue
				}
				if la.GetOnHandBaseUnits() != c.onHand || la.GetCommittedBaseUnits() != 0 {
					s.contradict("after the drain, %s: stockd on_hand %d committed %d, want on_hand %d (the book; last sent %d) committed 0",
						c.key, la.GetOnHandBaseUnits(), la.GetCommittedBaseUnits(), c.onHand, c.sent.onHand)
				}
			}
		}
	}
	return nil
}

// scheduled is an outbox entry due for a decision.
type scheduled struct {
	due time.Time
	seq uint64
}

// dueQueue is a min-heap of scheduled entries by due time (then seq).
type dueQueue []scheduled

func (q dueQueue) Len() int { return len(q) }
func (q dueQueue) Less(i, j int) bool {
	if !q[i].due.Equal(q[j].due) {
		return q[i].due.Before(q[j].due)
	}
	return q[i].seq < q[j].seq
}
func (q dueQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *dueQueue) Push(x any)   { *q = append(*q, x.(scheduled)) }
func (q *dueQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}
