package store

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Stats are cumulative counts of what this machine decided since New, for
// metrics. They are local figures, not state: they reach no result, snapshot
// or digest, survive a Restore (the new state's history is not replayed into
// them), and start at zero in every process. Apply keeps them with a few
// atomic adds; they are deterministic (no clock) like everything Apply does.
type Stats struct {
	// ReservesAccepted counts Reserves that created a hold; a retry answered
	// from the remembered hold is not counted again.
	ReservesAccepted uint64
	// ReservesRefused counts refused Reserves by reason (see RefusalReason),
	// sorted by reason, reasons never seen left out. A retry answered from
	// the remembered refusal is not counted again; a retry with another
	// payload is (reason idempotency_conflict).
	ReservesRefused []ReasonCount
	// HoldsExpired counts holds that expired (reached their deadline held).
	HoldsExpired uint64
	// AvailableToZero counts the times a counter's unbuffered available
	// figure, max(0, on_hand) - reserved - committed, went from above 0 to
	// 0, by a Reserve or an ERP count, adjustment or backfill.
	AvailableToZero uint64
	// ERPRowsApplied, ERPRowsStale and ERPRowsRejected count the rows of ERP
	// counts (SetStock), adjustments (AdjustStock) and committed backfills by
	// outcome.
	ERPRowsApplied, ERPRowsStale, ERPRowsRejected uint64
	// ERPUpdates is, per location, the log time of the last entry holding an
	// ERP row for it that was applied or ignored as stale (both show the ERP
	// in touch), sorted by location. A location no such row named since New
	// is absent, deleted locations included.
	ERPUpdates []LocationTime
}

// ReasonCount is a count by refusal reason.
type ReasonCount struct {
	Reason string
	Count  uint64
}

// LocationTime is a log time at a location.
type LocationTime struct {
	Location LocationID
	At       Timestamp
}

// reasonNames are the sentinels' reasons, in sentinels order (append only,
// with sentinels); index 0 is any error that unwraps to no sentinel.
var reasonNames = []string{
	"other",
	"invalid",
	"unknown_channel",
	"unknown_location",
	"unknown_reservation",
	"insufficient_stock",
	"not_held",
	"location_not_visible",
	"idempotency_conflict",
	"overflow",
	"unknown_sku",
	"revision_changed",
	"in_use",
	"unknown_location_group",
	"not_confirmed",
	"absorbed",
	"unknown_incoming",
	"unknown_order",
}

// RefusalReason names err's sentinel in snake case, e.g. "insufficient_stock"
// for ErrInsufficientStock, "unknown_sku" for ErrUnknownSKU, or "other"; it
// is the reason label of refusal metrics. Safe for concurrent use.
func RefusalReason(err error) string { return reasonNames[kindOf(err)] }

// stats is where Apply keeps Stats. The counters are written on the apply
// goroutine and read from any; erpAt is guarded by erpMu.
type stats struct {
	reservesAccepted atomic.Uint64
	reservesRefused  []atomic.Uint64 // by sentinel kind
	holdsExpired     atomic.Uint64
	toZero           atomic.Uint64
	rows             [RowRejected + 1]atomic.Uint64 // by RowStatus

	erpMu sync.Mutex
	erpAt map[LocationID]Timestamp
}

func newStats() *stats {
	return &stats{reservesRefused: make([]atomic.Uint64, len(sentinels)), erpAt: make(map[LocationID]Timestamp)}
}

// The methods below take a nil *stats (a state that is not a machine's) and
// then do nothing.

func (s *stats) reserveAccepted() {
	if s != nil {
		s.reservesAccepted.Add(1)
	}
}

func (s *stats) reserveRefused(err error) {
	if s != nil {
		s.reservesRefused[kindOf(err)].Add(1)
	}
}

func (s *stats) expired(n int) {
	if s != nil && n > 0 {
		s.holdsExpired.Add(uint64(n))
	}
}

// dropped counts ct's unbuffered available going to 0 from before.
func (s *stats) dropped(before Units, ct *counter) {
	if s != nil && before > 0 && ct.available(0) == 0 {
		s.toZero.Add(1)
	}
}

// addRows counts rows of one ERP batch by status.
func (s *stats) addRows(status RowStatus, n uint64) {
	if s != nil && n > 0 && status <= RowRejected {
		s.rows[status].Add(n)
	}
}

// erpSeen records that the ERP reached locs at log time at.
func (s *stats) erpSeen(locs *seenLocations, at Timestamp) {
	if s == nil || len(locs.locs) == 0 {
		return
	}
	s.erpMu.Lock()
	for _, l := range locs.locs {
		s.erpAt[l] = at
	}
	s.erpMu.Unlock()
}

// seenLocations collects the distinct locations of one batch's rows;
// locations are few and rows come grouped, so a scan beats a map.
type seenLocations struct {
	last LocationID
	locs []LocationID
}

func (sl *seenLocations) add(loc LocationID) {
	if len(sl.locs) > 0 && sl.last == loc {
		return
	}
	sl.last = loc
	if !slices.Contains(sl.locs, loc) {
		sl.locs = append(sl.locs, loc)
	}
}

// Stats returns the machine's cumulative counts; see Stats. Safe from any
// goroutine, concurrently with Apply; the figures are each current but not
// taken atomically together.
func (m *Machine) Stats() Stats {
	s := m.stats
	out := Stats{
		ReservesAccepted: s.reservesAccepted.Load(),
		HoldsExpired:     s.holdsExpired.Load(),
		AvailableToZero:  s.toZero.Load(),
		ERPRowsApplied:   s.rows[RowApplied].Load(),
		ERPRowsStale:     s.rows[RowIgnoredStale].Load(),
		ERPRowsRejected:  s.rows[RowRejected].Load(),
	}
	for k := range s.reservesRefused {
		if n := s.reservesRefused[k].Load(); n > 0 {
			out.ReservesRefused = append(out.ReservesRefused, ReasonCount{Reason: reasonNames[k], Count: n})
		}
	}
	slices.SortFunc(out.ReservesRefused, func(a, b ReasonCount) int { return strings.Compare(a.Reason, b.Reason) })
	s.erpMu.Lock()
	for l, at := range s.erpAt {
		out.ERPUpdates = append(out.ERPUpdates, LocationTime{Location: l, At: at})
	}
	s.erpMu.Unlock()
	slices.SortFunc(out.ERPUpdates, func(a, b LocationTime) int { return strings.Compare(string(a.Location), string(b.Location)) })
	return out
}
