package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/stockd/stockd/api/stockdv1"
)

// checkoutChannel is the channel checkout reserves on.
const checkoutChannel = "bench-checkout"

// checkoutOnHand is every checkout counter's stock: ample, so carts are
// mostly accepted even on the Zipf head and the run measures writes.
const checkoutOnHand = 100_000

// Checkout is the `checkout` scenario: carts of 1 to 5 distinct SKUs (Zipf
// popularity over Options.SKUs items of this run, 1 to 3 units per line) are
// reserved (op "reserve"); then 70% are confirmed ("confirm"), 20% released
// ("release") and 10% left to expire with a 1 s TTL. Verify checks that
// every acknowledged reservation is present in the state its fate implies,
// that every counter's reserved and committed are exactly the sums of its
// held and confirmed reservations, and that nothing is oversold.
type Checkout struct {
	nonce string
	items []string
	locs  []string
	pop   *popularity
	book  *holdBook
	erp   *erpBook
	seq   atomic.Int64
}

// NewCheckout returns the checkout scenario.
func NewCheckout() *Checkout { return &Checkout{} }

// Name implements Scenario.
func (*Checkout) Name() string { return "checkout" }

// Setup implements Scenario: a catalog of its own for this run (item names
// carry a run nonce), each counter at 100,000 units.
func (c *Checkout) Setup(ctx context.Context, env *Env) error {
	c.nonce = runNonce()
	n := max(env.Opts.SKUs, 1)
	c.items = itemNames("CO-"+c.nonce, n)
	c.locs = benchLocations(env.Opts.Locations)
	c.pop = newPopularity(n)
	c.book = newHoldBook(env.Opts.Concurrency)
	c.erp = newERPBook()
	return loadCatalog(ctx, env, checkoutChannel, c.items, c.locs, checkoutOnHand, uint64(time.Now().UnixNano()), c.erp)
}

// Do implements Scenario: one cart, reserved and then confirmed, released
// or left to expire.
func (c *Checkout) Do(ctx context.Context, env *Env, w int, rnd *rand.Rand, rec Recorder) {
	idx := c.pop.drawDistinct(rnd, 1+rnd.IntN(5))
	lines := make([]*stockdv1.ReserveLine, len(idx))
	for i, j := range idx {
		lines[i] = &stockdv1.ReserveLine{Sku: c.items[j], Quantity: 1 + rnd.Int64N(3)}
	}
	fate, ttl := fateConfirm, longTTL
	switch p := rnd.IntN(100); {
	case p >= 90:
		fate, ttl = fateExpire, expireTTL
	case p >= 70:
		fate = fateRelease
	}
	id := fmt.Sprintf("co-%s-%d", c.nonce, c.seq.Add(1))
	h := reserve(ctx, env, w, checkoutChannel, id, lines, ttl, fate, rec)
	finish(ctx, env, w, checkoutChannel, h, rec)
	c.book.add(w, h)
}

// Verify implements Scenario.
func (c *Checkout) Verify(ctx context.Context, env *Env) error {
	return verifyHolds(ctx, env, checkoutChannel, c.items, c.locs, c.book, c.erp, false)
}

// Summary implements Summarizer: reservation writes (reserve, confirm and
// release answered OK) per second.
func (c *Checkout) Summary(res *ScenarioResult) []Figure {
	return []Figure{{Name: "reservation writes", Value: writesPerSec(res), Unit: "writes/s"}}
}

// writesPerSec sums the successful reserve, confirm and release calls per
// second of a result.
func writesPerSec(res *ScenarioResult) float64 {
	var v float64
	for _, op := range []string{"reserve", "confirm", "release"} {
		if o := res.Op(op); o != nil {
			v += o.OKPerSec
		}
	}
	return v
}
