package server

import (
	"math"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// invalid is a request-level input error in the store's own style, so status
// maps it like one found by store.Validate.
func invalid(field, reason string) error {
	return &store.Rejection{Kind: store.ErrInvalid, Field: field, Reason: reason}
}

// indexed names element i of a repeated field: "skus[3]".
func indexed(field string, i int) string {
	return field + "[" + strconv.Itoa(i) + "]"
}

// checkID checks an id that a read takes, which no store.Validate sees, by
// the rules Validate applies to ids: 1 to store.MaxIDBytes bytes, no control
// characters.
func checkID(field, id string) error {
	if reason := idProblem(id); reason != "" {
		return invalid(field, reason)
	}
	return nil
}

// checkFilter checks an optional id a list read filters by: empty (no
// filter), or an id by checkID's rules, so a filter no id could ever match
// is refused rather than answered with an empty list.
func checkFilter(field, id string) error {
	if id == "" {
		return nil
	}
	return checkID(field, id)
}

// idProblem is what checkID finds wrong with id, empty when nothing. A caller
// checking many ids names the field only when one fails: a read of 100 SKUs
// then builds no field name at all.
func idProblem(id string) string {
	switch {
	case id == "":
		return "must not be empty"
	case len(id) > store.MaxIDBytes:
		return "at most " + strconv.Itoa(store.MaxIDBytes) + " bytes, got " + strconv.Itoa(len(id))
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] == 0x7f {
			return "must not contain control characters"
		}
	}
	return ""
}

// ttlNanos turns a request TTL into the store's nanoseconds: nil or zero is 0
// (the store's default); negative or non-normalised is refused. The range
// [1s, 24h] is the store's to check, but a TTL too large to count in int64
// nanoseconds is refused here.
func ttlNanos(d *durationpb.Duration) (int64, error) {
	if d == nil || (d.GetSeconds() == 0 && d.GetNanos() == 0) {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, invalid("ttl", "must be a normalised duration")
	}
	if d.GetSeconds() < 0 || d.GetNanos() < 0 {
		return 0, invalid("ttl", "must not be negative")
	}
	if d.GetSeconds() > store.MaxHoldTTLNanos/int64(time.Second) {
		return 0, invalid("ttl", "must be between 1s and 24h")
	}
	return d.GetSeconds()*int64(time.Second) + int64(d.GetNanos()), nil
}

// timestamp is a store time as a proto timestamp; 0 (never set) is nil.
func timestamp(ts store.Timestamp) *timestamppb.Timestamp {
	if ts == 0 {
		return nil
	}
	return timestamppb.New(time.Unix(0, int64(ts)))
}

func reservationStateToProto(s store.ReservationState) stockdv1.ReservationState {
	switch s {
	case store.StateHeld:
		return stockdv1.ReservationState_RESERVATION_STATE_HELD
	case store.StateConfirmed:
		return stockdv1.ReservationState_RESERVATION_STATE_CONFIRMED
	case store.StateReleased:
		return stockdv1.ReservationState_RESERVATION_STATE_RELEASED
	case store.StateExpired:
		return stockdv1.ReservationState_RESERVATION_STATE_EXPIRED
	case store.StateCancelled:
		return stockdv1.ReservationState_RESERVATION_STATE_CANCELLED
	}
	return stockdv1.ReservationState_RESERVATION_STATE_UNSPECIFIED
}

// reservationToProto converts r; nil stays nil. Allocations are shown in SKU
// units as well, base units divided by the line's factor.
func reservationToProto(r *store.Reservation) *stockdv1.Reservation {
	if r == nil {
		return nil
	}
	out := &stockdv1.Reservation{
		Channel:       string(r.Channel),
		ReservationId: string(r.ID),
		State:         reservationStateToProto(r.State),
		Lines:         make([]*stockdv1.ReservationLine, len(r.Lines)),
		CreatedAt:     timestamp(r.CreatedAt),
		ExpiresAt:     timestamp(r.ExpiresAt),
		OrderRef:      r.OrderRef,
		OrderSeq:      r.OrderSeq,
	}
	for i, l := range r.Lines {
		factor := l.Factor
		if factor <= 0 {
			factor = 1
		}
		line := &stockdv1.ReservationLine{
			Sku:              string(l.SKU),
			Item:             string(l.Item),
			QuantitySkuUnits: int64(l.Quantity),
			Allocations:      make([]*stockdv1.Allocation, len(l.Allocations)),
			Factor:           int64(factor),
			PromisedAt:       timestamp(l.PromisedAt),
		}
		for j, a := range l.Allocations {
			line.Allocations[j] = &stockdv1.Allocation{
				Location:          string(a.Location),
				QuantitySkuUnits:  int64(a.Quantity / factor),
				QuantityBaseUnits: int64(a.Quantity),
				PoLineId:          a.POLine,
				PromisedAt:        timestamp(a.PromisedAt),
			}
		}
		out.Lines[i] = line
	}
	return out
}

// skuAvailabilityToProto fills dst from a and returns it; a's slices are not
// kept, so a can be reused for the next SKU.
func skuAvailabilityToProto(dst *stockdv1.SkuAvailability, a *store.SKUAvailability) *stockdv1.SkuAvailability {
	return skuAvailabilityToProtoFrom(nil, dst, a)
}

// skuAvailabilityToProtoFrom is skuAvailabilityToProto taking dst's location
// messages from slab (nil: allocated on their own).
func skuAvailabilityToProtoFrom(slab *locationSlab, dst *stockdv1.SkuAvailability, a *store.SKUAvailability) *stockdv1.SkuAvailability {
	skuAvailabilityBasic(dst, a)
	dst.Item = string(a.Item)
	if len(a.Incoming) > 0 {
		dst.Incoming = make([]*stockdv1.IncomingAvailability, len(a.Incoming))
		for i, in := range a.Incoming {
			dst.Incoming[i] = &stockdv1.IncomingAvailability{
				PoLineId:          in.POLine,
				Location:          string(in.Location),
				Eta:               timestamp(in.ETA),
				AvailableSkuUnits: int64(in.Available),
			}
		}
	}
	if len(a.Locations) == 0 {
		return dst
	}
	locs, ptrs := slab.take(len(a.Locations))
	for i, l := range a.Locations {
		p := &locs[i]
		p.Location = string(l.Location)
		p.AvailableSkuUnits = int64(l.Available)
		p.OnHandBaseUnits = int64(l.OnHand)
		p.ReservedBaseUnits = int64(l.Reserved)
		p.CommittedBaseUnits = int64(l.Committed)
		p.BufferBaseUnits = int64(l.Buffer)
		p.OversoldBaseUnits = int64(l.Oversold)
		ptrs[i] = p
	}
	dst.Locations = ptrs
	return dst
}

// skuAvailabilityBasic fills dst with a's AVAILABILITY_VIEW_BASIC fields,
// clears the others, and returns it; skuAvailabilityToProtoFrom adds them.
func skuAvailabilityBasic(dst *stockdv1.SkuAvailability, a *store.SKUAvailability) *stockdv1.SkuAvailability {
	dst.Sku = string(a.SKU)
	dst.AvailableSkuUnits = int64(a.Available)
	dst.Known = a.Known
	dst.Factor = int64(a.Factor)
	dst.ModRevision = uint64(a.ModRevision)
	// dst may be filled again (ReadAtomic), or come from a pooled answer.
	dst.Item, dst.Incoming, dst.Locations = "", nil, nil
	return dst
}

// locationSlab hands out the LocationAvailability messages of one answer
// from a few large allocations instead of two per SKU (a read of 100 SKUs at
// 3 locations made 200 small allocations, and the collector's work with
// them). It only ever hands out fresh, zero messages, never one it handed out
// before. Not safe for concurrent use; a nil slab allocates every time.
type locationSlab struct {
	msgs []stockdv1.LocationAvailability
	ptrs []*stockdv1.LocationAvailability
	// skusLeft is how many SKUs, this one included, the answer still
	// converts: a new chunk has room for all of them at this one's count.
	skusLeft int
}

// take returns n zero messages and a slice of n pointers to fill, both with
// capacity n.
func (s *locationSlab) take(n int) ([]stockdv1.LocationAvailability, []*stockdv1.LocationAvailability) {
	if s == nil {
		return make([]stockdv1.LocationAvailability, n), make([]*stockdv1.LocationAvailability, n)
	}
	if len(s.msgs) < n {
		size := n * max(s.skusLeft, 1)
		s.msgs = make([]stockdv1.LocationAvailability, size)
		s.ptrs = make([]*stockdv1.LocationAvailability, size)
	}
	msgs, ptrs := s.msgs[:n:n], s.ptrs[:n:n]
	s.msgs, s.ptrs = s.msgs[n:], s.ptrs[n:]
	return msgs, ptrs
}

// rowCounts is how many rows of an ERP batch ended each way.
type rowCounts struct {
	applied, ignoredStale, rejected uint32
}

// rowsToProto converts an ERP batch's row results and counts them.
func rowsToProto(rows []store.RowResult) ([]*stockdv1.RowResult, rowCounts) {
	var n rowCounts
	out := make([]*stockdv1.RowResult, len(rows))
	msgs := make([]stockdv1.RowResult, len(rows))
	for i, r := range rows {
		p := &msgs[i]
		p.Reason = r.Reason
		p.Version = r.Version
		p.OnHandBaseUnits = int64(r.OnHand)
		out[i] = p
		switch r.Status {
		case store.RowApplied:
			p.Status = stockdv1.RowStatus_ROW_STATUS_APPLIED
			n.applied++
		case store.RowIgnoredStale:
			p.Status = stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE
			n.ignoredStale++
		case store.RowRejected:
			p.Status = stockdv1.RowStatus_ROW_STATUS_REJECTED
			n.rejected++
		}
	}
	return out, n
}

func locationToProto(l store.Location) *stockdv1.Location {
	return &stockdv1.Location{Id: string(l.ID), Name: l.Name}
}

func channelToProto(c store.Channel) *stockdv1.Channel {
	locs := make([]string, len(c.Locations))
	for i, l := range c.Locations {
		locs[i] = string(l)
	}
	return &stockdv1.Channel{Id: string(c.ID), Locations: locs, DefaultBufferBaseUnits: int64(c.DefaultBuffer),
		LocationGroup: c.LocationGroup, RequireSkuMapping: c.RequireSKUMapping}
}

func locationIDs(ls []store.LocationID) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = string(l)
	}
	return out
}

// timeNanos is a proto timestamp as store nanoseconds; nil is 0.
func timeNanos(field string, ts *timestamppb.Timestamp) (int64, error) {
	if ts == nil {
		return 0, nil
	}
	if err := ts.CheckValid(); err != nil {
		return 0, invalid(field, "must be a valid timestamp")
	}
	if ts.GetSeconds() < 0 || ts.GetSeconds() > math.MaxInt64/int64(time.Second)-1 {
		return 0, invalid(field, "must be between 1970 and 2262")
	}
	return ts.AsTime().UnixNano(), nil
}

// outboxEntryToProto converts e, read at revision rev. The store's kind and
// outcome numbers are the proto's (TestOutboxEnumsMatchTheProto pins them).
func outboxEntryToProto(e *store.OutboxEntry, rev store.Revision) *stockdv1.OutboxEntry {
	out := &stockdv1.OutboxEntry{
		Seq:           e.Seq,
		Kind:          stockdv1.OutboxKind(e.Kind),
		Channel:       string(e.Channel),
		ReservationId: string(e.ReservationID),
		OrderRef:      e.OrderRef,
		Lines:         make([]*stockdv1.OutboxLine, len(e.Lines)),
		CreatedAt:     timestamp(e.CreatedAt),
		CancelsSeq:    e.CancelsSeq,
		Outcome:       stockdv1.OrderOutcome(e.Outcome),
		OutcomeReason: e.OutcomeReason,
		Absorbed:      e.Absorbed,
		Cancelled:     e.Cancelled,
		Revision:      uint64(rev),
	}
	lines := make([]stockdv1.OutboxLine, len(e.Lines))
	for i, l := range e.Lines {
		p := &lines[i]
		p.Item = string(l.Item)
		p.Location = string(l.Location)
		p.QuantityBaseUnits = int64(l.Quantity)
		p.PoLineId = l.POLine
		out.Lines[i] = p
	}
	return out
}

func outboxStatusToProto(st store.OutboxStatus, rev store.Revision) *stockdv1.GetOutboxResponse {
	return &stockdv1.GetOutboxResponse{
		Pending:                st.Pending,
		OldestPendingSeq:       st.OldestPendingSeq,
		OldestPendingCreatedAt: timestamp(st.OldestPendingCreatedAt),
		NextSeq:                st.NextSeq,
		AbsorbedMark:           st.AbsorbedMark,
		Revision:               uint64(rev),
	}
}

func rejectedToProto(rows []store.RejectedRow, counts []store.RejectedCount, rev store.Revision) *stockdv1.ListRejectedResponse {
	out := &stockdv1.ListRejectedResponse{
		Rows:     make([]*stockdv1.RejectedRow, len(rows)),
		Counts:   make([]*stockdv1.RejectedCount, len(counts)),
		Revision: uint64(rev),
	}
	for i, r := range rows {
		out.Rows[i] = &stockdv1.RejectedRow{
			Revision: uint64(r.Revision),
			At:       timestamp(r.At),
			Source:   r.Source,
			Row:      r.Row,
			Key:      r.Key,
			Reason:   r.Reason,
		}
	}
	for i, c := range counts {
		out.Counts[i] = &stockdv1.RejectedCount{Reason: c.Reason, Count: c.Count}
	}
	return out
}
