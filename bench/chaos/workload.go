package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
)

// The catalog of a run: one channel over one location, every SKU its own
// item (factor 1), no buffer, so available = max(0, on_hand - reserved -
// committed) exactly.
const (
	chaosChannel  = "chaos"
	chaosLocation = "l1"
	// finalItem takes the write every run ends with.
	finalItem = "final"
	// holdTTL outlives any run, so no hold expires and the model needs no clock.
	holdTTL = time.Hour
)

// WorkloadConfig configures a workload.
type WorkloadConfig struct {
	Seed    uint64
	Clients int // concurrent clients; 6 unless set
	// LinSKUs get single-SKU operations only (reserve, confirm, release,
	// extend, ERP set and adjust, linearizable reads), so each is a
	// partition porcupine checks on its own. CartSKUs (the first ones hot)
	// get carts of 2-3 lines, single reserves, linearizable single-SKU reads
	// and positive adjustments only, so their on hand never drops below what
	// was promised; porcupine checks them per connected set of SKUs (the
	// SKUs one operation touches are connected).
	LinSKUs  []string
	CartSKUs []string
	// OpsPerSecond paces each client (0: back to back).
	OpsPerSecond float64
	// AttemptTimeout bounds one call; MaxAttempts bounds the calls of one
	// operation with the same id before it is recorded as unknown.
	AttemptTimeout time.Duration
	MaxAttempts    int
	// InitialStock is every SKU's on hand at the start.
	InitialStock int64
	// Generation, when set, moves the clients to fresh SKUs every
	// Generation (Jepsen's independent keys): generation g > 0 uses the SKUs
	// of LinSKUs and CartSKUs suffixed "-gNN", all stocked at setup, so each
	// SKU's history spans about one generation and porcupine, whose search
	// grows with the square of a history's length, checks a long soak as
	// many short histories. Generations is how many are stocked (the last
	// one stays in use once reached); 0 means 40.
	Generation  time.Duration
	Generations int
}

func (c *WorkloadConfig) setDefaults() {
	if c.Clients == 0 {
		c.Clients = 6
	}
	if len(c.LinSKUs) == 0 {
		c.LinSKUs = []string{"hot-a", "hot-b", "hot-c"}
	}
	if len(c.CartSKUs) == 0 {
		c.CartSKUs = []string{"cart-a", "cart-b"}
		for i := range 12 {
			c.CartSKUs = append(c.CartSKUs, fmt.Sprintf("cold-%02d", i))
		}
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = 2 * time.Second
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 6
	}
	if c.InitialStock == 0 {
		c.InitialStock = 30
	}
	if c.Generation <= 0 {
		c.Generations = 1
	} else if c.Generations <= 0 {
		c.Generations = 40
	}
}

// genSKUs returns generation g's names of skus.
func genSKUs(skus []string, g int) []string {
	if g == 0 {
		return skus
	}
	out := make([]string, len(skus))
	for i, s := range skus {
		out[i] = fmt.Sprintf("%s-g%02d", s, g)
	}
	return out
}

// workload drives the clients and records their history.
type workload struct {
	cfg   WorkloadConfig
	c     *Cluster
	start time.Time
	h     history

	// Each generation's SKUs (lin[g], carts[g]), and every generation's
	// lin SKUs as a set.
	lin, carts [][]string
	isLinSKU   map[string]bool

	versions sync.Map // SKU -> *atomic.Uint64, last ERP version handed out
	promised sync.Map // SKU -> *atomic.Int64, last promised figure a client saw
}

func newWorkload(cfg WorkloadConfig, c *Cluster) *workload {
	cfg.setDefaults()
	w := &workload{cfg: cfg, c: c, start: time.Now(), isLinSKU: map[string]bool{}}
	for g := range cfg.Generations {
		w.lin = append(w.lin, genSKUs(cfg.LinSKUs, g))
		w.carts = append(w.carts, genSKUs(cfg.CartSKUs, g))
		for _, s := range w.lin[g] {
			w.isLinSKU[s] = true
		}
	}
	return w
}

func (w *workload) now() int64 { return time.Since(w.start).Nanoseconds() }

// gen is the generation in use now.
func (w *workload) gen() int {
	if w.cfg.Generation <= 0 {
		return 0
	}
	return min(int(time.Since(w.start)/w.cfg.Generation), w.cfg.Generations-1)
}

// skusOfGen returns generation g's SKUs, lin ones first.
func (w *workload) skusOfGen(g int) []string { return slices.Concat(w.lin[g], w.carts[g]) }

// allLin, allCarts and allSKUs return every generation's lin SKUs, cart
// SKUs, and both.
func (w *workload) allLin() []string   { return slices.Concat(w.lin...) }
func (w *workload) allCarts() []string { return slices.Concat(w.carts...) }
func (w *workload) allSKUs() []string  { return slices.Concat(w.allLin(), w.allCarts()) }

// isLin reports whether sku is one of the linearizability-checked SKUs.
func (w *workload) isLin(sku string) bool { return w.isLinSKU[sku] }

// retry calls f until it succeeds or ctx ends, polling every 100 ms; for
// setup and the final checks, where the cluster must answer eventually.
func retry(ctx context.Context, what string, f func(ctx context.Context) error) error {
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		last = f(cctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// setup declares the location and channel and stocks every SKU (version 1).
func (w *workload) setup(ctx context.Context) error {
	nd := w.c.Nodes[0]
	var rows []*stockdv1.StockCount
	for _, s := range append(w.allSKUs(), finalItem, floodItem) {
		rows = append(rows, &stockdv1.StockCount{Item: s, Location: chaosLocation, OnHandBaseUnits: w.cfg.InitialStock, Version: 1})
		v := &atomic.Uint64{}
		v.Store(1)
		w.versions.Store(s, v)
		w.promised.Store(s, &atomic.Int64{})
	}
	return retry(ctx, "setup", func(ctx context.Context) error {
		if _, err := nd.Adm.PutLocation(ctx, &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: chaosLocation, Name: chaosLocation}}); err != nil {
			return err
		}
		if _, err := nd.Adm.PutChannel(ctx, &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: chaosChannel, Locations: []string{chaosLocation}}}); err != nil {
			return err
		}
		resp, err := nd.Erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: rows})
		if err != nil {
			return err
		}
		for i, r := range resp.GetRows() {
			if r.GetStatus() == stockdv1.RowStatus_ROW_STATUS_REJECTED {
				return fmt.Errorf("setup row %d rejected: %s", i, r.GetReason())
			}
		}
		return nil
	})
}

// indeterminate reports whether a call's outcome is unknown: it may have
// been applied (a timeout, a lost leader, a full queue whose entry may
// still commit) or not.
func indeterminate(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Canceled,
		codes.Unknown, codes.Internal, codes.Aborted:
		return true
	}
	return false
}

// heldRes is a reservation a client holds (acknowledged HELD).
type heldRes struct {
	id    string
	lines []line
}

// clientState is what one client remembers between operations.
type clientState struct {
	id      int
	rng     *rand.Rand
	seq     int
	held    []heldRes
	lastRev uint64 // revision of the client's last acknowledged write
}

// run drives the clients until stop closes; each client finishes the
// operation it is in (with its retries) before it returns, so the end of a
// run adds no unknown outcomes. ctx ends every call at once (test teardown).
func (w *workload) run(ctx context.Context, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for i := range w.cfg.Clients {
		cs := &clientState{id: i, rng: rand.New(rand.NewPCG(w.cfg.Seed, uint64(i)+1))}
		wg.Go(func() { w.client(ctx, stop, cs) })
	}
	wg.Wait()
}

func (w *workload) client(ctx context.Context, stop <-chan struct{}, cs *clientState) {
	var tick <-chan time.Time
	if w.cfg.OpsPerSecond > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / w.cfg.OpsPerSecond))
		defer t.Stop()
		tick = t.C
	}
	for {
		if tick != nil {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tick: // pacing: the offered load, not synchronisation
			}
		} else {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			default:
			}
		}
		w.step(ctx, cs)
	}
}

// step runs one operation chosen by the client's generator.
func (w *workload) step(ctx context.Context, cs *clientState) {
	r := cs.rng
	cs.seq++
	g := w.gen()
	lin := w.lin[g][r.IntN(len(w.lin[g]))]
	switch p := r.IntN(100); {
	case p < 26:
		w.reserve(ctx, cs, []line{{SKU: lin, Qty: 1 + r.Int64N(3)}})
	case p < 34:
		w.reserve(ctx, cs, w.cart(r, g))
	case p < 38:
		w.reserve(ctx, cs, []line{{SKU: w.cartSKU(r, g), Qty: 1 + r.Int64N(2)}})
	case p < 52:
		w.release(ctx, cs)
	case p < 57:
		w.confirm(ctx, cs)
	case p < 62:
		w.extend(ctx, cs)
	case p < 66:
		// An ERP count near what clients saw promised: sometimes below it
		// (the ERP is the master; the shortfall shows as oversold exposure).
		seen := w.promisedSeen(lin)
		w.setStock(ctx, cs, lin, max(0, seen-3+r.Int64N(25)))
	case p < 69:
		// Never 0: stockd rejects an empty delta.
		w.adjust(ctx, cs, lin, []int64{-3, -2, -1, 1, 2, 3, 4, 5, 6}[r.IntN(9)])
	case p < 72:
		w.adjust(ctx, cs, w.cartSKU(r, g), 1+r.Int64N(5))
	case p < 82:
		w.read(ctx, cs, []string{lin}, true)
	case p < 88:
		// Cart SKUs are checked as connected sets (linearizable_carts.go).
		w.read(ctx, cs, []string{w.cartSKU(r, g)}, true)
	default:
		w.read(ctx, cs, w.skusOfGen(g), false)
	}
}

// cartSKU picks a cart or cold SKU of generation g, the hot ones (the first
// two) half the time.
func (w *workload) cartSKU(r *rand.Rand, g int) string {
	skus := w.carts[g]
	if r.IntN(2) == 0 {
		return skus[r.IntN(min(2, len(skus)))]
	}
	return skus[r.IntN(len(skus))]
}

// cart returns 2-3 lines over distinct cart SKUs of generation g.
func (w *workload) cart(r *rand.Rand, g int) []line {
	n := 2 + r.IntN(2)
	var ls []line
	seen := map[string]bool{}
	for len(ls) < n {
		s := w.cartSKU(r, g)
		if seen[s] {
			continue
		}
		seen[s] = true
		ls = append(ls, line{SKU: s, Qty: 1 + r.Int64N(2)})
	}
	return ls
}

func (w *workload) promisedSeen(sku string) int64 {
	v, ok := w.promised.Load(sku)
	if !ok {
		return w.cfg.InitialStock
	}
	return v.(*atomic.Int64).Load()
}

// attempt is one call of an operation against one node.
type attempt func(ctx context.Context, nd *Node) error

// do runs the operation's calls: each against a random node, again with the
// same id while the outcome is indeterminate, at most MaxAttempts times. It
// fills o's timing, node, attempts and (for a final error) outcome and Err;
// it returns the last error.
func (w *workload) do(ctx context.Context, cs *clientState, o *op, f attempt) error {
	o.Client, o.Call = cs.id, w.now()
	var err error
	for o.Attempts < w.cfg.MaxAttempts {
		o.Attempts++
		o.Node = cs.rng.IntN(len(w.c.Nodes))
		cctx, cancel := context.WithTimeout(ctx, w.cfg.AttemptTimeout)
		err = f(cctx, w.c.Nodes[o.Node])
		cancel()
		if err == nil || !indeterminate(err) || ctx.Err() != nil {
			break
		}
		// Client retry backoff (50 ms doubling, at most 1 s): gives an
		// election time to finish before the same id is tried again.
		if wait(ctx, min(time.Second, 50*time.Millisecond<<(o.Attempts-1))) != nil {
			break
		}
	}
	o.Return = w.now()
	switch {
	case err == nil:
		o.Outcome = outOK
	case errors.Is(err, errMaybeApplied) || indeterminate(err):
		o.Outcome, o.Err = outUnknown, err.Error()
	default:
		o.Outcome, o.Err = outRefused, err.Error()
	}
	return err
}

func (w *workload) reserve(ctx context.Context, cs *clientState, lines []line) {
	o := op{Kind: opReserve, ID: fmt.Sprintf("r-%d-%d", cs.id, cs.seq), Lines: lines}
	req := &stockdv1.ReserveRequest{Channel: chaosChannel, ReservationId: o.ID, Ttl: durationpb.New(holdTTL)}
	for _, l := range lines {
		req.Lines = append(req.Lines, &stockdv1.ReserveLine{Sku: l.SKU, Quantity: l.Qty, Location: chaosLocation})
	}
	err := w.do(ctx, cs, &o, func(ctx context.Context, nd *Node) error {
		resp, err := nd.Inv.Reserve(ctx, req)
		if err == nil {
			o.Revision = resp.GetRevision()
		}
		return err
	})
	if err == nil {
		cs.held = append(cs.held, heldRes{id: o.ID, lines: lines})
		cs.lastRev = max(cs.lastRev, o.Revision)
	}
	w.h.add(o)
}

// takeHeld removes and returns a random held reservation of the client.
func (cs *clientState) takeHeld() (heldRes, bool) {
	if len(cs.held) == 0 {
		return heldRes{}, false
	}
	i := cs.rng.IntN(len(cs.held))
	hr := cs.held[i]
	cs.held = append(cs.held[:i], cs.held[i+1:]...)
	return hr, true
}

func (w *workload) release(ctx context.Context, cs *clientState) {
	hr, ok := cs.takeHeld()
	if !ok {
		return
	}
	o := op{Kind: opRelease, ID: hr.id, Lines: hr.lines}
	if err := w.do(ctx, cs, &o, func(ctx context.Context, nd *Node) error {
		resp, err := nd.Inv.Release(ctx, &stockdv1.ReleaseRequest{Channel: chaosChannel, ReservationId: hr.id})
		if err == nil {
			o.Revision = resp.GetRevision()
		}
		return err
	}); err == nil {
		cs.lastRev = max(cs.lastRev, o.Revision)
	}
	w.h.add(o)
}

// extend extends one of the client's held reservations by holdTTL from now
// with an extend id of its own; the hold stays with the client.
func (w *workload) extend(ctx context.Context, cs *clientState) {
	if len(cs.held) == 0 {
		return
	}
	hr := cs.held[cs.rng.IntN(len(cs.held))]
	o := op{Kind: opExtend, ID: hr.id, Lines: hr.lines}
	req := &stockdv1.ExtendRequest{Channel: chaosChannel, ReservationId: hr.id, ExtendId: fmt.Sprintf("e-%d-%d", cs.id, cs.seq), Ttl: durationpb.New(holdTTL)}
	if err := w.do(ctx, cs, &o, func(ctx context.Context, nd *Node) error {
		resp, err := nd.Inv.Extend(ctx, req)
		if err == nil {
			o.Revision = resp.GetRevision()
		}
		return err
	}); err == nil {
		cs.lastRev = max(cs.lastRev, o.Revision)
	}
	w.h.add(o)
}

func (w *workload) confirm(ctx context.Context, cs *clientState) {
	hr, ok := cs.takeHeld()
	if !ok {
		return
	}
	o := op{Kind: opConfirm, ID: hr.id, Lines: hr.lines}
	if err := w.do(ctx, cs, &o, func(ctx context.Context, nd *Node) error {
		resp, err := nd.Inv.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: chaosChannel, ReservationId: hr.id, OrderRef: "o-" + hr.id})
		if err == nil {
			o.Revision = resp.GetRevision()
		}
		return err
	}); err == nil {
		cs.lastRev = max(cs.lastRev, o.Revision)
	}
	w.h.add(o)
}

// errStale marks an ERP row ignored as stale: a definite refusal.
var errStale = status.Error(codes.FailedPrecondition, "row ignored as stale")

// errMaybeApplied ends a retried SetStock answered stale by a newer version:
// an earlier attempt may have applied before that version superseded it
// (seed 1795918399695044670), so the outcome is unknown, not a refusal.
var errMaybeApplied = errors.New("retried row found stale under a newer version: an earlier attempt may have applied")

func rowErr(rows []*stockdv1.RowResult) error {
	if len(rows) != 1 {
		return status.Errorf(codes.Internal, "%d row results, want 1", len(rows))
	}
	switch rows[0].GetStatus() {
	case stockdv1.RowStatus_ROW_STATUS_APPLIED:
		return nil
	case stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE:
		return errStale
	}
	return status.Errorf(codes.InvalidArgument, "row %v: %s", rows[0].GetStatus(), rows[0].GetReason())
}

func (w *workload) setStock(ctx context.Context, cs *clientState, sku string, onHand int64) {
	v, _ := w.versions.Load(sku)
	o := op{Kind: opSetStock, Lines: []line{{SKU: sku}}, Version: v.(*atomic.Uint64).Add(1), Value: onHand}
	req := &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{{Item: sku, Location: chaosLocation, OnHandBaseUnits: onHand, Version: o.Version}}}
	if err := w.do(ctx, cs, &o, func(ctx context.Context, nd *Node) error {
		resp, err := nd.Erp.SetStock(ctx, req)
		if err != nil {
			return err
		}
		o.Revision = resp.GetRevision()
		// SetStock has no request id: a retry after an attempt that did apply
		// is answered IGNORED_STALE, or REJECTED ("version N already holds
		// on_hand M") when an adjustment moved the count since. Both answers
		// carry the counter's version; versions are unique per write, so ours
		// means ours applied.
		if rows := resp.GetRows(); len(rows) == 1 && rows[0].GetVersion() == o.Version &&
			(rows[0].GetStatus() == stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE || rows[0].GetStatus() == stockdv1.RowStatus_ROW_STATUS_REJECTED) {
			return nil
		}
		if rows := resp.GetRows(); o.Attempts > 1 && len(rows) == 1 && rows[0].GetStatus() == stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE {
			return errMaybeApplied
		}
		return rowErr(resp.GetRows())
	}); err == nil {
		cs.lastRev = max(cs.lastRev, o.Revision)
	}
	w.h.add(o)
}

func (w *workload) adjust(ctx context.Context, cs *clientState, sku string, delta int64) {
	o := op{Kind: opAdjust, ID: fmt.Sprintf("d-%d-%d", cs.id, cs.seq), Lines: []line{{SKU: sku}}, Value: delta}
	req := &stockdv1.AdjustStockRequest{Rows: []*stockdv1.StockAdjustment{{DeltaId: o.ID, Item: sku, Location: chaosLocation, DeltaBaseUnits: delta}}}
	if err := w.do(ctx, cs, &o, func(ctx context.Context, nd *Node) error {
		resp, err := nd.Erp.AdjustStock(ctx, req)
		if err != nil {
			return err
		}
		o.Revision = resp.GetRevision()
		return rowErr(resp.GetRows())
	}); err == nil {
		cs.lastRev = max(cs.lastRev, o.Revision)
	}
	w.h.add(o)
}

// read records a GetAvailability of skus: linearizable through any node, or
// from one node's memory with the client's last write as min_revision. A
// read is tried once: a failed read has no effect to model.
func (w *workload) read(ctx context.Context, cs *clientState, skus []string, linearizable bool) {
	o := op{Kind: opReadLocal, Client: cs.id, MinRev: cs.lastRev}
	if linearizable {
		o.Kind, o.MinRev = opReadLin, 0
	}
	o.Node = cs.rng.IntN(len(w.c.Nodes))
	o.Attempts = 1
	o.Call = w.now()
	cctx, cancel := context.WithTimeout(ctx, w.cfg.AttemptTimeout)
	resp, err := w.c.Nodes[o.Node].Inv.GetAvailability(cctx, &stockdv1.GetAvailabilityRequest{
		Channel: chaosChannel, Skus: skus, Linearizable: linearizable, MinRevision: o.MinRev})
	cancel()
	o.Return = w.now()
	if err != nil {
		o.Outcome, o.Err = outFailed, err.Error()
		if !indeterminate(err) && !errors.Is(ctx.Err(), context.Canceled) {
			o.Outcome = outRefused // an unexpected definite error: checkers report it
		}
		w.h.add(o)
		return
	}
	o.Outcome, o.Revision = outOK, resp.GetRevision()
	o.Reads = readsOf(resp.GetSkus())
	for _, rd := range o.Reads {
		if v, ok := w.promised.Load(rd.SKU); ok {
			v.(*atomic.Int64).Store(rd.Reserved + rd.Committed)
		}
	}
	w.h.add(o)
}

// readsOf extracts each SKU's figure at the chaos location.
func readsOf(skus []*stockdv1.SkuAvailability) []skuRead {
	var out []skuRead
	for _, s := range skus {
		rd := skuRead{SKU: s.GetSku(), Known: s.GetKnown(), Available: s.GetAvailableSkuUnits()}
		for _, l := range s.GetLocations() {
			if l.GetLocation() == chaosLocation {
				rd.OnHand, rd.Reserved, rd.Committed = l.GetOnHandBaseUnits(), l.GetReservedBaseUnits(), l.GetCommittedBaseUnits()
				rd.Oversold = l.GetOversoldBaseUnits()
			}
		}
		out = append(out, rd)
	}
	return out
}
