package bench

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/stockd/stockd/api/stockdv1"
)

// The client's side of the stock invariants: what the writing scenarios were
// told (holds, their fates, the ERP counts they sent), and the check of that
// history against what the cluster shows afterwards through the public API
// (checkLedger, a pure function so tests can feed it broken histories).

// counterKey is one counter: an item at a location.
type counterKey struct{ item, location string }

func (k counterKey) String() string { return k.item + "@" + k.location }

// counterView is a counter as GetAvailability shows it, in base units.
type counterView struct {
	onHand, reserved, committed, oversold int64
}

// holdOutcome is what the client learnt from its Reserve call.
type holdOutcome int

const (
	// reserveAcked: Reserve answered OK; the hold must exist (I2).
	reserveAcked holdOutcome = iota
	// reserveRefused: Reserve answered FAILED_PRECONDITION: decided, nothing held.
	reserveRefused
	// reserveUnknown: Reserve failed otherwise (timeout, no leader): the
	// hold may or may not exist.
	reserveUnknown
)

// holdFate is what the scenario did with an acknowledged hold.
type holdFate int

const (
	fateConfirm holdFate = iota
	fateRelease
	fateExpire // left alone with a short TTL
	fateKeep   // left alone with a long TTL
)

// hold is one Reserve call of a scenario and what followed it.
type hold struct {
	id      string
	lines   []*stockdv1.ReserveLine
	ttl     time.Duration
	outcome holdOutcome
	// alloc is where the acknowledged hold took its base units.
	alloc map[counterKey]int64
	fate  holdFate
	// fateAcked: the Confirm or Release call answered OK.
	fateAcked bool
	// expiresBy is a local time after which a fateExpire hold must be
	// EXPIRED (the Reserve's start plus its TTL).
	expiresBy time.Time
}

// units returns the hold's base units in total.
func (h *hold) units() int64 {
	var n int64
	for _, u := range h.alloc {
		n += u
	}
	return n
}

// allocOf returns where a reservation's lines took their base units.
func allocOf(r *stockdv1.Reservation) map[counterKey]int64 {
	m := map[counterKey]int64{}
	for _, l := range r.GetLines() {
		for _, a := range l.GetAllocations() {
			if a.GetPoLineId() != "" {
				continue // a backorder takes no on-hand units
			}
			m[counterKey{l.GetItem(), a.GetLocation()}] += a.GetQuantityBaseUnits()
		}
	}
	return m
}

// holdBook collects the holds of a run, one slice per worker (safe for
// concurrent use by distinct workers; each slice has its own lock).
type holdBook struct {
	workers []workerHolds
}

type workerHolds struct {
	mu    sync.Mutex
	holds []*hold
}

func newHoldBook(workers int) *holdBook {
	return &holdBook{workers: make([]workerHolds, max(workers, 1))}
}

func (b *holdBook) add(w int, h *hold) {
	wh := &b.workers[w%len(b.workers)]
	wh.mu.Lock()
	wh.holds = append(wh.holds, h)
	wh.mu.Unlock()
}

// all returns every hold recorded, in worker order. Call it once the load
// has stopped.
func (b *holdBook) all() []*hold {
	var out []*hold
	for i := range b.workers {
		wh := &b.workers[i]
		wh.mu.Lock()
		out = append(out, wh.holds...)
		wh.mu.Unlock()
	}
	return out
}

// erpBook remembers the counts an ERP sent, so the on-hand figures the
// cluster shows can be checked although they move during the run.
type erpBook struct {
	mu   sync.Mutex
	sent map[counterKey][]erpCount
}

// erpCount is one count sent for a counter.
type erpCount struct {
	version uint64
	onHand  int64
	// acked: the call answered and this row was APPLIED or IGNORED_STALE
	// (decided); otherwise the call failed and the row may or may not apply.
	acked bool
}

func newERPBook() *erpBook { return &erpBook{sent: map[counterKey][]erpCount{}} }

func (b *erpBook) add(k counterKey, c erpCount) {
	b.mu.Lock()
	b.sent[k] = append(b.sent[k], c)
	b.mu.Unlock()
}

// expect returns the on-hand figures counter k may show after every count
// was sent: the count of the highest decided version, or that of any
// undecided one with a higher version; and the highest count ever sent, the
// most that can ever have been promised there (I1). ok is false when no
// count was sent.
func (b *erpBook) expect(k counterKey) (allowed []int64, maxOnHand int64, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cs := b.sent[k]
	if len(cs) == 0 {
		return nil, 0, false
	}
	var best *erpCount
	for i := range cs {
		if cs[i].acked && (best == nil || cs[i].version > best.version) {
			best = &cs[i]
		}
	}
	maxOnHand = cs[0].onHand
	for _, c := range cs {
		maxOnHand = max(maxOnHand, c.onHand)
		if !c.acked && (best == nil || c.version > best.version) {
			allowed = append(allowed, c.onHand)
		}
	}
	if best != nil {
		allowed = append(allowed, best.onHand)
	}
	return allowed, maxOnHand, true
}

// ledgerInput is everything checkLedger judges.
type ledgerInput struct {
	holds []*hold
	// observed maps a hold id to the reservation GetReservation returned
	// (nil: NOT_FOUND). Every hold not refused must have been looked up.
	observed map[string]*stockdv1.Reservation
	// counters are every counter of the run's items, as read at the end.
	counters map[counterKey]counterView
	// erp is the ERP's counts sent (initial load included).
	erp *erpBook
	// exactSellOut demands that every counter ends with everything
	// committed: on_hand == committed, nothing reserved (flash-sale).
	exactSellOut bool
}

// checkLedger checks a run's history against the cluster's final state and
// returns every violation found (nil when there is none):
//   - I2: every acknowledged Reserve is present, with the allocation it was
//     answered with, in the state its fate implies;
//   - exact accounting: each counter's reserved and committed are the sums
//     of the holds the cluster shows HELD and CONFIRMED;
//   - I6: each counter's on_hand is what the ERP sent last (by version);
//   - I1: nothing oversold: promised (reserved + committed) never exceeds the
//     highest on_hand the counter ever had, and oversold exposure is exactly
//     what on_hand now falls short of promised.
func checkLedger(in ledgerInput) []error {
	var errs []error
	wantReserved := map[counterKey]int64{}
	wantCommitted := map[counterKey]int64{}
	for _, h := range in.holds {
		if h.outcome == reserveRefused {
			continue
		}
		r, looked := in.observed[h.id]
		if !looked {
			errs = append(errs, fmt.Errorf("reservation %s: not looked up", h.id))
			continue
		}
		if r == nil {
			if h.outcome == reserveAcked {
				errs = append(errs, fmt.Errorf("reservation %s: acknowledged, got NOT_FOUND, want present (I2 lost acknowledgement)", h.id))
			}
			continue
		}
		st := r.GetState()
		if h.outcome == reserveAcked {
			if got := allocOf(r); !maps.Equal(got, h.alloc) {
				errs = append(errs, fmt.Errorf("reservation %s: allocation got %v, want %v as Reserve answered", h.id, got, h.alloc))
			}
			if want := allowedStates(h); !slices.Contains(want, st) {
				errs = append(errs, fmt.Errorf("reservation %s (fate %s, acked %v): state got %v, want one of %v", h.id, h.fate, h.fateAcked, st, want))
			}
		}
		switch st {
		case stockdv1.ReservationState_RESERVATION_STATE_HELD:
			for k, u := range allocOf(r) {
				wantReserved[k] += u
			}
		case stockdv1.ReservationState_RESERVATION_STATE_CONFIRMED:
			for k, u := range allocOf(r) {
				wantCommitted[k] += u
			}
		}
	}
	for _, k := range sortedCounterKeys(in.counters, wantReserved, wantCommitted) {
		c, ok := in.counters[k]
		if !ok {
			errs = append(errs, fmt.Errorf("counter %s: holds take units there, got no counter", k))
			continue
		}
		if c.reserved != wantReserved[k] {
			errs = append(errs, fmt.Errorf("counter %s: reserved got %d, want %d (sum of its HELD reservations)", k, c.reserved, wantReserved[k]))
		}
		if c.committed != wantCommitted[k] {
			errs = append(errs, fmt.Errorf("counter %s: committed got %d, want %d (sum of its CONFIRMED reservations)", k, c.committed, wantCommitted[k]))
		}
		promised := c.reserved + c.committed
		maxOnHand := c.onHand
		if in.erp != nil {
			allowed, m, sent := in.erp.expect(k)
			if sent {
				maxOnHand = m
				if !slices.Contains(allowed, c.onHand) {
					errs = append(errs, fmt.Errorf("counter %s: on_hand got %d, want one of %v (the ERP's last count, I6)", k, c.onHand, allowed))
				}
			}
		}
		if promised > maxOnHand {
			errs = append(errs, fmt.Errorf("counter %s: oversold: reserved %d + committed %d > on_hand %d, the most it ever had (I1)", k, c.reserved, c.committed, maxOnHand))
		}
		if want := max(0, promised-max(c.onHand, 0)); c.oversold != want {
			errs = append(errs, fmt.Errorf("counter %s: oversold exposure got %d, want %d (promised %d, on_hand %d)", k, c.oversold, want, promised, c.onHand))
		}
		if in.exactSellOut && (c.reserved != 0 || c.committed != c.onHand) {
			errs = append(errs, fmt.Errorf("counter %s: sell-out: got on_hand %d, reserved %d, committed %d, want every unit committed and none reserved", k, c.onHand, c.reserved, c.committed))
		}
	}
	return errs
}

// allowedStates are the states an acknowledged hold may end in.
func allowedStates(h *hold) []stockdv1.ReservationState {
	const (
		held      = stockdv1.ReservationState_RESERVATION_STATE_HELD
		confirmed = stockdv1.ReservationState_RESERVATION_STATE_CONFIRMED
		released  = stockdv1.ReservationState_RESERVATION_STATE_RELEASED
		expired   = stockdv1.ReservationState_RESERVATION_STATE_EXPIRED
	)
	switch {
	case h.fate == fateConfirm && h.fateAcked:
		return []stockdv1.ReservationState{confirmed}
	case h.fate == fateRelease && h.fateAcked:
		return []stockdv1.ReservationState{released}
	case h.fate == fateConfirm:
		return []stockdv1.ReservationState{held, confirmed, expired}
	case h.fate == fateRelease:
		return []stockdv1.ReservationState{held, released, expired}
	case h.fate == fateExpire:
		return []stockdv1.ReservationState{expired}
	}
	return []stockdv1.ReservationState{held, expired}
}

func (f holdFate) String() string {
	switch f {
	case fateConfirm:
		return "confirm"
	case fateRelease:
		return "release"
	case fateExpire:
		return "expire"
	case fateKeep:
		return "keep"
	}
	return fmt.Sprintf("fate(%d)", int(f))
}

func sortedCounterKeys(a map[counterKey]counterView, b, c map[counterKey]int64) []counterKey {
	set := map[counterKey]bool{}
	for k := range a {
		set[k] = true
	}
	for k := range b {
		set[k] = true
	}
	for k := range c {
		set[k] = true
	}
	keys := slices.Collect(maps.Keys(set))
	slices.SortFunc(keys, func(x, y counterKey) int {
		return cmp.Or(cmp.Compare(x.item, y.item), cmp.Compare(x.location, y.location))
	})
	return keys
}
