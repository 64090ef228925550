package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
)

// The write path the checkout, flash-sale and peak-day scenarios share:
// reserve a cart, then confirm, release or leave it, noting every answer in
// a holdBook; and the verification that reads the cluster back and runs
// checkLedger.

// reservationWriter marks the scenarios that reserve through this file's
// reserve and finish, whose writes --writes routes.
type reservationWriter interface{ reservationWrites() }

func (*Checkout) reservationWrites()  {}
func (*FlashSale) reservationWrites() {}
func (*PeakDay) reservationWrites()   {}

// Hold TTLs: long enough that a kept or confirmed hold never expires during
// a run, and the shortest stockd accepts for holds left to expire.
const (
	longTTL   = 10 * time.Minute
	expireTTL = time.Second
)

// callTimeout bounds one measured RPC, so a stuck node shows as
// DEADLINE_EXCEEDED instead of stalling a worker.
const callTimeout = 10 * time.Second

// reserve sends one Reserve for id and records op "reserve"; it returns the
// hold as the client knows it (fate not yet acted on).
func reserve(ctx context.Context, env *Env, w int, channel, id string, lines []*stockdv1.ReserveLine, ttl time.Duration, fate holdFate, rec Recorder) *hold {
	h := &hold{id: id, lines: lines, ttl: ttl, fate: fate}
	inv := stockdv1.NewInventoryClient(env.WriteConn(w))
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var (
		md   metadata.MD
		opts []grpc.CallOption
	)
	learn := env.learningLeader()
	if learn {
		opts = append(opts, grpc.Header(&md))
	}
	start := time.Now()
	resp, err := inv.Reserve(cctx, &stockdv1.ReserveRequest{Channel: channel, ReservationId: id, Lines: lines, Ttl: durationpb.New(ttl)}, opts...)
	rec.Record("reserve", time.Since(start), err)
	if learn {
		env.noteLeader(md)
	}
	h.expiresBy = start.Add(ttl)
	switch {
	case err == nil:
		h.outcome = reserveAcked
		h.alloc = allocOf(resp.GetReservation())
	case isRefusal(err):
		h.outcome = reserveRefused
	default:
		h.outcome = reserveUnknown
	}
	return h
}

// finish confirms or releases an acknowledged hold as its fate says and
// records op "confirm" or "release".
func finish(ctx context.Context, env *Env, w int, channel string, h *hold, rec Recorder) {
	if h.outcome != reserveAcked || (h.fate != fateConfirm && h.fate != fateRelease) {
		return
	}
	inv := stockdv1.NewInventoryClient(env.WriteConn(w))
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	start := time.Now()
	var err error
	op := "confirm"
	if h.fate == fateConfirm {
		_, err = inv.Confirm(cctx, &stockdv1.ConfirmRequest{Channel: channel, ReservationId: h.id, OrderRef: "order-" + h.id})
	} else {
		op = "release"
		_, err = inv.Release(cctx, &stockdv1.ReleaseRequest{Channel: channel, ReservationId: h.id})
	}
	rec.Record(op, time.Since(start), err)
	h.fateAcked = err == nil
}

// verifyParallel is how many lookups Verify has in flight.
const verifyParallel = 16

// verifyHolds reads back every hold of book (waiting for those left to
// expire), then every counter of items at locs through channel, and checks
// them with checkLedger. Reads are linearizable, so they reflect every write
// acknowledged before them whichever node answers.
func verifyHolds(ctx context.Context, env *Env, channel string, items, locs []string, book *holdBook, erp *erpBook, exactSellOut bool) error {
	holds := book.all()
	observed, err := lookupHolds(ctx, env, channel, holds)
	if err != nil {
		return err
	}
	counters, err := readCounters(ctx, env, channel, items)
	if err != nil {
		return err
	}
	errs := checkLedger(ledgerInput{holds: holds, observed: observed, counters: counters, erp: erp, exactSellOut: exactSellOut})
	return joinLimited(errs, 20)
}

// lookupHolds fetches every hold that is not a refusal. A hold left to
// expire that still shows HELD is fetched again until its expiry has had
// time to apply (TTL plus 10 s of slack).
func lookupHolds(ctx context.Context, env *Env, channel string, holds []*hold) (map[string]*stockdv1.Reservation, error) {
	var (
		mu       sync.Mutex
		observed = make(map[string]*stockdv1.Reservation, len(holds))
		first    error
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	for w := range verifyParallel {
		wg.Go(func() {
			inv := stockdv1.NewInventoryClient(env.Conn(w))
			for {
				i := int(next.Add(1)) - 1
				if i >= len(holds) {
					return
				}
				h := holds[i]
				if h.outcome == reserveRefused {
					continue
				}
				r, err := lookupHold(ctx, inv, channel, h)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				observed[h.id] = r
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return observed, first
}

func lookupHold(ctx context.Context, inv stockdv1.InventoryClient, channel string, h *hold) (*stockdv1.Reservation, error) {
	deadline := h.expiresBy.Add(10 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := inv.GetReservation(cctx, &stockdv1.GetReservationRequest{Channel: channel, ReservationId: h.id, Linearizable: true})
		cancel()
		if status.Code(err) == codes.NotFound {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("get reservation %s: %w", h.id, err)
		}
		r := resp.GetReservation()
		if h.fate != fateExpire || r.GetState() != stockdv1.ReservationState_RESERVATION_STATE_HELD || time.Now().After(deadline) {
			return r, nil
		}
		wait := max(time.Until(h.expiresBy), 50*time.Millisecond)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// readCounters reads every counter of items visible to channel, 1,000 SKUs
// per call.
func readCounters(ctx context.Context, env *Env, channel string, items []string) (map[counterKey]counterView, error) {
	out := map[counterKey]counterView{}
	inv := stockdv1.NewInventoryClient(env.Conn(0))
	for i := 0; i < len(items); i += 1000 {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := inv.GetAvailability(cctx, &stockdv1.GetAvailabilityRequest{Channel: channel, Skus: items[i:min(i+1000, len(items))], Linearizable: true})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("read counters: %w", err)
		}
		for _, s := range resp.GetSkus() {
			for _, l := range s.GetLocations() {
				out[counterKey{s.GetItem(), l.GetLocation()}] = counterView{
					onHand:    l.GetOnHandBaseUnits(),
					reserved:  l.GetReservedBaseUnits(),
					committed: l.GetCommittedBaseUnits(),
					oversold:  l.GetOversoldBaseUnits(),
				}
			}
		}
	}
	return out, nil
}

// loadCatalog declares locs and channel, sends every item at every location
// with onHand units through SetStock, and notes the counts in erp.
func loadCatalog(ctx context.Context, env *Env, channel string, items, locs []string, onHand int64, version uint64, erp *erpBook) error {
	if err := putLocationsAndChannel(ctx, env, channel, locs); err != nil {
		return err
	}
	rows := catalogRows(items, locs, onHand, version)
	if err := setStock(ctx, env, rows); err != nil {
		return err
	}
	for _, r := range rows {
		erp.add(counterKey{r.GetItem(), r.GetLocation()}, erpCount{version: version, onHand: onHand, acked: true})
	}
	return nil
}
