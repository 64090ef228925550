package main

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
)

// sellTotals counts what the seller did.
type sellTotals struct {
	reserved, refused, confirmed, released, failed int
}

// sell plays a storefront for the demo (--sell-rate carts per second): each
// cart reserves 1-3 units of one or two random items on --channel, then is
// confirmed (nine in ten) or released. It returns once ctx ends and the cart
// in flight is finished; its calls use their own deadlines, not ctx, so
// nothing is cut halfway. With rate 0 it waits for ctx and returns.
func (s *sim) sell(ctx context.Context, rate float64, seed uint64) sellTotals {
	var t sellTotals
	if rate <= 0 {
		<-ctx.Done()
		return t
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x5e11))
	items := s.cfg.itemIDs()
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			s.log.Info("seller stopped", "reserved", t.reserved, "refused", t.refused, "confirmed", t.confirmed,
				"released", t.released, "failed", t.failed)
			return t
		case <-tick.C:
		}
		id := "sell-" + s.runID + "-" + strconv.Itoa(n)
		lines := []*stockdv1.ReserveLine{{Sku: items[rng.IntN(len(items))], Quantity: 1 + rng.Int64N(3)}}
		if rng.IntN(2) == 0 {
			if other := items[rng.IntN(len(items))]; other != lines[0].Sku {
				lines = append(lines, &stockdv1.ReserveLine{Sku: other, Quantity: 1 + rng.Int64N(3)})
			}
		}
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.inv.Reserve(cctx, &stockdv1.ReserveRequest{Channel: s.cfg.channel, ReservationId: id, Lines: lines})
		switch {
		case err != nil && isRefusal(err):
			t.refused++
		case err != nil:
			t.failed++
			s.log.Warn("sell: reserve", "id", id, "err", err)
		case rng.IntN(10) < 9:
			t.reserved++
			if _, err := s.inv.Confirm(cctx, &stockdv1.ConfirmRequest{Channel: s.cfg.channel, ReservationId: id, OrderRef: "order-" + id}); err != nil {
				t.failed++
				s.log.Warn("sell: confirm", "id", id, "err", err)
			} else {
				t.confirmed++
			}
		default:
			t.reserved++
			if _, err := s.inv.Release(cctx, &stockdv1.ReleaseRequest{Channel: s.cfg.channel, ReservationId: id}); err != nil {
				t.failed++
				s.log.Warn("sell: release", "id", id, "err", err)
			} else {
				t.released++
			}
		}
		cancel()
	}
}

// isRefusal: the cart was refused for want of stock, as a busy demo expects.
func isRefusal(err error) bool {
	return status.Code(err) == codes.FailedPrecondition
}
