package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
)

// flashSaleChannel is the channel flash-sale sells on.
const flashSaleChannel = "bench-flash-sale"

// Flash-sale's hot SKUs and their stock per location.
const (
	flashSaleSKUs   = 5
	flashSaleOnHand = 20
)

// FlashSale is the `flash-sale` scenario: 5 hot SKUs with 20 units at each
// location and every worker a buyer. A buyer reserves 1 unit (70%), 2 (20%)
// or 3 (10%) of one of them ("reserve") and confirms what it got
// ("confirm"); once sold out, every reserve is refused (FAILED_PRECONDITION,
// counted under errors). Verify settles any call whose outcome is unknown
// (a Reserve retried with its id gets the first answer, I3), then demands an
// exact sell-out (every unit committed, none reserved, none oversold) and
// that the units accepted add up to the stock.
type FlashSale struct {
	nonce string
	items []string
	locs  []string
	book  *holdBook
	erp   *erpBook
	seq   atomic.Int64

	accepted, refused, unknown int64 // set by Verify
	acceptedUnits, stock       int64
}

// NewFlashSale returns the flash-sale scenario.
func NewFlashSale() *FlashSale { return &FlashSale{} }

// Name implements Scenario.
func (*FlashSale) Name() string { return "flash-sale" }

// Setup implements Scenario: this run's hot SKUs, stocked.
func (f *FlashSale) Setup(ctx context.Context, env *Env) error {
	f.nonce = runNonce()
	f.items = itemNames("FS-"+f.nonce, flashSaleSKUs)
	f.locs = benchLocations(env.Opts.Locations)
	f.book = newHoldBook(env.Opts.Concurrency)
	f.erp = newERPBook()
	f.stock = int64(len(f.items) * len(f.locs) * flashSaleOnHand)
	return loadCatalog(ctx, env, flashSaleChannel, f.items, f.locs, flashSaleOnHand, uint64(time.Now().UnixNano()), f.erp)
}

// Do implements Scenario: one buyer.
func (f *FlashSale) Do(ctx context.Context, env *Env, w int, rnd *rand.Rand, rec Recorder) {
	qty := int64(1)
	switch p := rnd.IntN(10); {
	case p == 9:
		qty = 3
	case p >= 7:
		qty = 2
	}
	lines := []*stockdv1.ReserveLine{{Sku: f.items[rnd.IntN(len(f.items))], Quantity: qty}}
	id := fmt.Sprintf("fs-%s-%d", f.nonce, f.seq.Add(1))
	h := reserve(ctx, env, w, flashSaleChannel, id, lines, longTTL, fateConfirm, rec)
	finish(ctx, env, w, flashSaleChannel, h, rec)
	f.book.add(w, h)
}

// Verify implements Scenario.
func (f *FlashSale) Verify(ctx context.Context, env *Env) error {
	if err := settle(ctx, env, flashSaleChannel, f.book.all()); err != nil {
		return err
	}
	f.accepted, f.refused, f.unknown, f.acceptedUnits = 0, 0, 0, 0
	for _, h := range f.book.all() {
		switch h.outcome {
		case reserveAcked:
			f.accepted++
			f.acceptedUnits += h.units()
		case reserveRefused:
			f.refused++
		default:
			f.unknown++
		}
	}
	if err := verifyHolds(ctx, env, flashSaleChannel, f.items, f.locs, f.book, f.erp, true); err != nil {
		return err
	}
	if f.acceptedUnits != f.stock {
		return fmt.Errorf("sell-out: accepted units got %d, want the stock, %d", f.acceptedUnits, f.stock)
	}
	return nil
}

// settle decides every hold whose outcome the run left unknown: a Reserve
// retried with the same id and payload returns the first answer (I3), so the
// client learns whether it holds stock; an acknowledged hold whose Confirm
// failed is confirmed again (idempotent).
func settle(ctx context.Context, env *Env, channel string, holds []*hold) error {
	inv := stockdv1.NewInventoryClient(env.Conn(0))
	for _, h := range holds {
		if h.outcome == reserveUnknown {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			resp, err := inv.Reserve(cctx, &stockdv1.ReserveRequest{Channel: channel, ReservationId: h.id, Lines: h.lines, Ttl: durationpb.New(h.ttl)})
			cancel()
			switch {
			case err == nil:
				h.outcome, h.alloc = reserveAcked, allocOf(resp.GetReservation())
			case isRefusal(err):
				h.outcome = reserveRefused
			default:
				return fmt.Errorf("settle reservation %s: retry reserve: %w", h.id, err)
			}
		}
		if h.outcome == reserveAcked && h.fate == fateConfirm && !h.fateAcked {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			_, err := inv.Confirm(cctx, &stockdv1.ConfirmRequest{Channel: channel, ReservationId: h.id, OrderRef: "order-" + h.id})
			cancel()
			if err != nil {
				return fmt.Errorf("settle reservation %s: retry confirm: %w", h.id, err)
			}
			h.fateAcked = true
		}
	}
	return nil
}

// Summary implements Summarizer: carts accepted and refused, units sold.
func (f *FlashSale) Summary(*ScenarioResult) []Figure {
	return []Figure{
		{Name: "carts accepted", Value: float64(f.accepted)},
		{Name: "carts refused", Value: float64(f.refused)},
		{Name: "carts unknown", Value: float64(f.unknown)},
		{Name: "units sold", Value: float64(f.acceptedUnits)},
		{Name: "units in stock", Value: float64(f.stock)},
	}
}
