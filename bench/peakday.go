package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/stockd/stockd/api/stockdv1"
)

// peakDayChannel is the channel peak-day reads and sells on.
const peakDayChannel = "bench-peak-day"

// Peak-day's counters start at peakDayOnHand; ERP counts set them anywhere
// in [0, peakDayMaxOnHand], so holds on the Zipf head compete for little
// stock and a count may fall below what is promised (oversold exposure).
const (
	peakDayOnHand    = 50
	peakDayMaxOnHand = 100
)

// PeakDay is the `peak-day` scenario, a blend by operation: 95% storefront
// reads of one SKU ("get-1"), 4% carts (1 to 3 lines of 1 or 2 units;
// "reserve", then 70% "confirm", 20% "release", 10% left to expire), 1% ERP
// counts of 1 to 5 counters through SetStock ("set-stock", new versions,
// on hand 0 to 100), all with Zipf popularity over Options.SKUs items of
// this run. Verify is checkout's, with on hand moving: every counter must
// show the ERP's last count (by version), and reserved plus committed may
// never exceed the highest count it ever had (I1); a count below what is
// promised must show as exactly that much oversold exposure.
type PeakDay struct {
	nonce   string
	items   []string
	locs    []string
	pop     *popularity
	book    *holdBook
	erp     *erpBook
	seq     atomic.Int64
	version atomic.Uint64
}

// NewPeakDay returns the peak-day scenario.
func NewPeakDay() *PeakDay { return &PeakDay{} }

// Name implements Scenario.
func (*PeakDay) Name() string { return "peak-day" }

// Setup implements Scenario: this run's catalog at 50 units per counter.
func (p *PeakDay) Setup(ctx context.Context, env *Env) error {
	p.nonce = runNonce()
	n := max(env.Opts.SKUs, 1)
	p.items = itemNames("PD-"+p.nonce, n)
	p.locs = benchLocations(env.Opts.Locations)
	p.pop = newPopularity(n)
	p.book = newHoldBook(env.Opts.Concurrency)
	p.erp = newERPBook()
	v := uint64(time.Now().UnixNano())
	p.version.Store(v)
	return loadCatalog(ctx, env, peakDayChannel, p.items, p.locs, peakDayOnHand, v, p.erp)
}

// Do implements Scenario: one read, cart or ERP count.
func (p *PeakDay) Do(ctx context.Context, env *Env, w int, rnd *rand.Rand, rec Recorder) {
	switch r := rnd.IntN(100); {
	case r < 95:
		p.read(ctx, env, w, rnd, rec)
	case r < 99:
		p.cart(ctx, env, w, rnd, rec)
	default:
		p.count(ctx, env, w, rnd, rec)
	}
}

func (p *PeakDay) read(ctx context.Context, env *Env, w int, rnd *rand.Rand, rec Recorder) {
	sku := p.items[p.pop.draw(rnd)]
	start := time.Now()
	_, err := stockdv1.NewInventoryClient(env.Conn(w)).GetAvailability(ctx,
		&stockdv1.GetAvailabilityRequest{Channel: peakDayChannel, Skus: []string{sku}})
	rec.Record("get-1", time.Since(start), err)
}

func (p *PeakDay) cart(ctx context.Context, env *Env, w int, rnd *rand.Rand, rec Recorder) {
	idx := p.pop.drawDistinct(rnd, 1+rnd.IntN(3))
	lines := make([]*stockdv1.ReserveLine, len(idx))
	for i, j := range idx {
		lines[i] = &stockdv1.ReserveLine{Sku: p.items[j], Quantity: 1 + rnd.Int64N(2)}
	}
	fate, ttl := fateConfirm, longTTL
	switch r := rnd.IntN(100); {
	case r >= 90:
		fate, ttl = fateExpire, expireTTL
	case r >= 70:
		fate = fateRelease
	}
	h := reserve(ctx, env, w, peakDayChannel, fmt.Sprintf("pd-%s-%d", p.nonce, p.seq.Add(1)), lines, ttl, fate, rec)
	finish(ctx, env, w, peakDayChannel, h, rec)
	p.book.add(w, h)
}

// count sends new ERP counts for 1 to 5 distinct items, each at one
// location, and notes them in the ERP book: decided rows (applied or stale)
// as acknowledged, every row of a failed call as undecided.
func (p *PeakDay) count(ctx context.Context, env *Env, w int, rnd *rand.Rand, rec Recorder) {
	idx := p.pop.drawDistinct(rnd, 1+rnd.IntN(5))
	rows := make([]*stockdv1.StockCount, len(idx))
	for i, j := range idx {
		rows[i] = &stockdv1.StockCount{
			Item:            p.items[j],
			Location:        p.locs[rnd.IntN(len(p.locs))],
			OnHandBaseUnits: rnd.Int64N(peakDayMaxOnHand + 1),
			Version:         p.version.Add(1),
		}
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	start := time.Now()
	resp, err := stockdv1.NewErpClient(env.WriteConn(w)).SetStock(cctx, &stockdv1.SetStockRequest{Rows: rows})
	d := time.Since(start)
	if err == nil && len(resp.GetRows()) != len(rows) {
		err = fmt.Errorf("set stock: sent %d rows, got %d answers", len(rows), len(resp.GetRows()))
	}
	for i, r := range rows {
		c := erpCount{version: r.GetVersion(), onHand: r.GetOnHandBaseUnits()}
		if err == nil {
			if resp.GetRows()[i].GetStatus() == stockdv1.RowStatus_ROW_STATUS_REJECTED {
				continue // never applies
			}
			c.acked = true
		}
		p.erp.add(counterKey{r.GetItem(), r.GetLocation()}, c)
	}
	rec.Record("set-stock", d, err)
}

// Verify implements Scenario.
func (p *PeakDay) Verify(ctx context.Context, env *Env) error {
	return verifyHolds(ctx, env, peakDayChannel, p.items, p.locs, p.book, p.erp, false)
}

// Summary implements Summarizer: reservation writes per second.
func (p *PeakDay) Summary(res *ScenarioResult) []Figure {
	return []Figure{{Name: "reservation writes", Value: writesPerSec(res), Unit: "writes/s"}}
}
