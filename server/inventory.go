package server

import (
	"context"
	"encoding/base64"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// maxSKUsPerRead bounds the SKUs of one GetAvailability.
const maxSKUsPerRead = 1000

// inventory serves stockdv1.Inventory: what selling channels call.
type inventory struct {
	stockdv1.UnimplementedInventoryServer
	s *Server
}

// GetAvailability stamps the answer with the applied index read before any
// figure, so the figures reflect at least that revision (DESIGN.md I5). A
// linearizable read first waits for the leader's read index, so it sees every
// write acknowledged before it began, on any node.
func (v *inventory) GetAvailability(ctx context.Context, req *stockdv1.GetAvailabilityRequest) (*stockdv1.GetAvailabilityResponse, error) {
	s := v.s
	if err := checkAvailabilityRequest(req); err != nil {
		return nil, s.status(ctx, err)
	}
	if err := s.awaitRead(ctx, store.Revision(req.GetMinRevision()), req.GetLinearizable()); err != nil {
		return nil, s.status(ctx, err)
	}
	resp := &stockdv1.GetAvailabilityResponse{Revision: uint64(s.reader.AppliedIndex())}
	skus := req.GetSkus()
	ch := store.ChannelID(req.GetChannel())
	var msgs []stockdv1.SkuAvailability
	if len(skus) >= minPooledSKUs {
		msgs, resp.Skus = lendAnswer(resp, len(skus)) // back after marshalling (answers.go)
	} else {
		msgs, resp.Skus = make([]stockdv1.SkuAvailability, len(skus)), make([]*stockdv1.SkuAvailability, len(skus))
	}
	var buf store.SKUAvailability
	var slab locationSlab
	basic := req.GetView() == stockdv1.AvailabilityView_AVAILABILITY_VIEW_BASIC
	read := func() error {
		for i, sku := range skus {
			if err := s.reader.Availability(ch, store.SKU(sku), &buf); err != nil {
				return atSKU(err, i)
			}
			if basic {
				resp.Skus[i] = skuAvailabilityBasic(&msgs[i], &buf)
				continue
			}
			slab.skusLeft = len(skus) - i
			resp.Skus[i] = skuAvailabilityToProtoFrom(&slab, &msgs[i], &buf)
		}
		return nil
	}
	if len(skus) > 1 {
		// All the SKUs before or all after a Backfill commit, never a mix.
		err := s.reader.ReadAtomic(read)
		if err != nil {
			returnAnswer(resp)
			return nil, s.status(ctx, err)
		}
		return resp, nil
	}
	if err := read(); err != nil {
		return nil, s.status(ctx, err)
	}
	return resp, nil
}

// atSKU names element i of the request's skus in an unknown-SKU refusal
// ("skus[3]: ..."), which the store can only name "skus"; other errors pass
// as they are.
func atSKU(err error, i int) error {
	var rej *store.Rejection
	if !errors.Is(err, store.ErrUnknownSKU) || !errors.As(err, &rej) {
		return err
	}
	r := *rej
	r.Field = indexed("skus", i)
	return &r
}

func checkAvailabilityRequest(req *stockdv1.GetAvailabilityRequest) error {
	if err := checkID("channel", req.GetChannel()); err != nil {
		return err
	}
	skus := req.GetSkus()
	switch {
	case len(skus) == 0:
		return invalid("skus", "at least one sku is required")
	case len(skus) > maxSKUsPerRead:
		return invalid("skus", "at most "+strconv.Itoa(maxSKUsPerRead)+" skus")
	}
	for i, sku := range skus {
		if reason := idProblem(sku); reason != "" {
			return invalid(indexed("skus", i), reason)
		}
	}
	if _, known := stockdv1.AvailabilityView_name[int32(req.GetView())]; !known {
		return invalid("view", "unknown view "+strconv.Itoa(int(req.GetView())))
	}
	return nil
}

// Reserve holds every line or none; a retry with the same reservation id and
// payload gets the first answer, a refusal included (DESIGN.md I3).
func (v *inventory) Reserve(ctx context.Context, req *stockdv1.ReserveRequest) (*stockdv1.ReserveResponse, error) {
	s := v.s
	cmd, err := reserveCommand(req)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	res, err := s.propose(ctx, cmd)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &stockdv1.ReserveResponse{
		Reservation: reservationToProto(res.Reservation),
		Revision:    uint64(res.Revision),
	}, nil
}

func reserveCommand(req *stockdv1.ReserveRequest) (*logv1.Command, error) {
	lines := req.GetLines()
	if len(lines) > store.MaxLines {
		return nil, invalid("lines", "at most "+strconv.Itoa(store.MaxLines)+" lines")
	}
	ttl, err := ttlNanos(req.GetTtl())
	if err != nil {
		return nil, err
	}
	r := &logv1.Reserve{
		Channel:       req.GetChannel(),
		ReservationId: req.GetReservationId(),
		Lines:         make([]*logv1.ReserveLine, len(lines)),
		TtlNanos:      ttl,
	}
	for i, l := range lines {
		r.Lines[i] = &logv1.ReserveLine{
			Sku:                 l.GetSku(),
			QuantitySkuUnits:    l.GetQuantity(),
			Location:            l.GetLocation(),
			ExpectedModRevision: l.GetExpectedModRevision(),
			AllowBackorder:      l.GetAllowBackorder(),
		}
	}
	return &logv1.Command{Kind: &logv1.Command_Reserve{Reserve: r}}, nil
}

// Confirm turns a live hold into an order; idempotent.
func (v *inventory) Confirm(ctx context.Context, req *stockdv1.ConfirmRequest) (*stockdv1.ConfirmResponse, error) {
	s := v.s
	res, err := s.propose(ctx, &logv1.Command{Kind: &logv1.Command_Confirm{Confirm: &logv1.Confirm{
		Channel:       req.GetChannel(),
		ReservationId: req.GetReservationId(),
		OrderRef:      req.GetOrderRef(),
	}}})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &stockdv1.ConfirmResponse{
		Reservation: reservationToProto(res.Reservation),
		Revision:    uint64(res.Revision),
	}, nil
}

// Release gives a hold's units back; idempotent.
func (v *inventory) Release(ctx context.Context, req *stockdv1.ReleaseRequest) (*stockdv1.ReleaseResponse, error) {
	s := v.s
	res, err := s.propose(ctx, releaseCommand(req))
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &stockdv1.ReleaseResponse{
		Reservation: reservationToProto(res.Reservation),
		Revision:    uint64(res.Revision),
	}, nil
}

// releaseCommand is a whole release, or a partial one when lines are given.
func releaseCommand(req *stockdv1.ReleaseRequest) *logv1.Command {
	r := &logv1.Release{
		Channel:       req.GetChannel(),
		ReservationId: req.GetReservationId(),
		ReleaseId:     req.GetReleaseId(),
	}
	if lines := req.GetLines(); len(lines) > 0 {
		r.Lines = make([]*logv1.ReleaseLine, len(lines))
		for i, l := range lines {
			r.Lines[i] = &logv1.ReleaseLine{Line: l.GetLine(), QuantitySkuUnits: l.GetQuantity()}
		}
	}
	return &logv1.Command{Kind: &logv1.Command_Release{Release: r}}
}

// Extend pushes a live hold's deadline; idempotent by extend_id.
func (v *inventory) Extend(ctx context.Context, req *stockdv1.ExtendRequest) (*stockdv1.ExtendResponse, error) {
	s := v.s
	ttl, err := ttlNanos(req.GetTtl())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	if ttl == 0 {
		return nil, s.status(ctx, invalid("ttl", "is required"))
	}
	res, err := s.propose(ctx, &logv1.Command{Kind: &logv1.Command_Extend{Extend: &logv1.Extend{
		Channel:       req.GetChannel(),
		ReservationId: req.GetReservationId(),
		ExtendId:      req.GetExtendId(),
		TtlNanos:      ttl,
	}}})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &stockdv1.ExtendResponse{Reservation: reservationToProto(res.Reservation), Revision: uint64(res.Revision)}, nil
}

// CancelOrder takes back a confirmed order the ERP has not absorbed; idempotent.
func (v *inventory) CancelOrder(ctx context.Context, req *stockdv1.CancelOrderRequest) (*stockdv1.CancelOrderResponse, error) {
	s := v.s
	res, err := s.propose(ctx, &logv1.Command{Kind: &logv1.Command_CancelOrder{CancelOrder: &logv1.CancelOrder{
		Channel:       req.GetChannel(),
		ReservationId: req.GetReservationId(),
	}}})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &stockdv1.CancelOrderResponse{Reservation: reservationToProto(res.Reservation), Revision: uint64(res.Revision)}, nil
}

// ReleaseAll releases every live hold of a channel; idempotent by release_all_id.
func (v *inventory) ReleaseAll(ctx context.Context, req *stockdv1.ReleaseAllRequest) (*stockdv1.ReleaseAllResponse, error) {
	s := v.s
	res, err := s.propose(ctx, &logv1.Command{Kind: &logv1.Command_ReleaseAll{ReleaseAll: &logv1.ReleaseAll{
		Channel:      req.GetChannel(),
		ReleaseAllId: req.GetReleaseAllId(),
	}}})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &stockdv1.ReleaseAllResponse{Released: res.Count, Revision: uint64(res.Revision)}, nil
}

// Page sizes of ListReservations.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// ListReservations pages through a channel's reservations in id order. The
// page token is the last id of the previous page, base64url-encoded.
func (v *inventory) ListReservations(ctx context.Context, req *stockdv1.ListReservationsRequest) (*stockdv1.ListReservationsResponse, error) {
	s := v.s
	q, err := reservationQuery(req)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	if err := s.awaitRead(ctx, store.Revision(req.GetMinRevision()), req.GetLinearizable()); err != nil {
		return nil, s.status(ctx, err)
	}
	if !s.hasChannel(q.Channel) {
		// The store lists nothing for an undeclared channel: say so, as
		// every other read of a channel does, rather than an empty page.
		return nil, s.status(ctx, &store.Rejection{Kind: store.ErrUnknownChannel, Field: "channel",
			Reason: "unknown channel " + strconv.Quote(req.GetChannel())})
	}
	rev := s.reader.AppliedIndex()
	page, more := s.reader.Reservations(q)
	resp := &stockdv1.ListReservationsResponse{Revision: uint64(rev), Reservations: make([]*stockdv1.Reservation, len(page))}
	for i := range page {
		resp.Reservations[i] = reservationToProto(&page[i])
	}
	if more && len(page) > 0 {
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(page[len(page)-1].ID))
	}
	return resp, nil
}

// hasChannel reports whether ch is declared.
func (s *Server) hasChannel(ch store.ChannelID) bool {
	for _, c := range s.reader.Channels() {
		if c.ID == ch {
			return true
		}
	}
	return false
}

func reservationQuery(req *stockdv1.ListReservationsRequest) (store.ReservationQuery, error) {
	q := store.ReservationQuery{Channel: store.ChannelID(req.GetChannel()), Limit: defaultPageSize}
	if err := checkID("channel", req.GetChannel()); err != nil {
		return q, err
	}
	switch n := req.GetPageSize(); {
	case n > maxPageSize:
		return q, invalid("page_size", "at most "+strconv.Itoa(maxPageSize))
	case n > 0:
		q.Limit = int(n)
	}
	if st := req.GetState(); st != stockdv1.ReservationState_RESERVATION_STATE_UNSPECIFIED {
		if _, ok := stockdv1.ReservationState_name[int32(st)]; !ok {
			return q, invalid("state", "unknown state "+strconv.Itoa(int(st)))
		}
		q.State = store.ReservationState(st)
	}
	if w := req.GetExpiringWithin(); w != nil {
		if err := w.CheckValid(); err != nil || w.GetSeconds() < 0 || w.GetNanos() < 0 ||
			w.GetSeconds() > math.MaxInt64/int64(time.Second)-1 {
			return q, invalid("expiring_within", "must be a non-negative duration")
		}
		q.ExpiringWithinNanos = w.AsDuration().Nanoseconds()
	}
	if tok := req.GetPageToken(); tok != "" {
		after, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(after) == 0 || len(after) > store.MaxIDBytes {
			return q, invalid("page_token", "is not a token this server gave")
		}
		q.After = store.ReservationID(after)
	}
	return q, nil
}

// GetReservation reads one reservation, stamped like GetAvailability.
func (v *inventory) GetReservation(ctx context.Context, req *stockdv1.GetReservationRequest) (*stockdv1.GetReservationResponse, error) {
	s := v.s
	if err := checkID("channel", req.GetChannel()); err != nil {
		return nil, s.status(ctx, err)
	}
	if err := checkID("reservation_id", req.GetReservationId()); err != nil {
		return nil, s.status(ctx, err)
	}
	if err := s.awaitRead(ctx, store.Revision(req.GetMinRevision()), req.GetLinearizable()); err != nil {
		return nil, s.status(ctx, err)
	}
	rev := s.reader.AppliedIndex()
	r, err := s.reader.Reservation(store.ChannelID(req.GetChannel()), store.ReservationID(req.GetReservationId()))
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &stockdv1.GetReservationResponse{Reservation: reservationToProto(&r), Revision: uint64(rev)}, nil
}

// GetOrder reads a confirmed order by (channel, order_ref): its lines,
// outcome, whether it was cancelled and whether the ERP's counts include it;
// stamped like GetAvailability.
func (v *inventory) GetOrder(ctx context.Context, req *stockdv1.GetOrderRequest) (*stockdv1.GetOrderResponse, error) {
	s := v.s
	if err := checkID("channel", req.GetChannel()); err != nil {
		return nil, s.status(ctx, err)
	}
	if err := checkID("order_ref", req.GetOrderRef()); err != nil {
		return nil, s.status(ctx, err)
	}
	if err := s.awaitRead(ctx, store.Revision(req.GetMinRevision()), req.GetLinearizable()); err != nil {
		return nil, s.status(ctx, err)
	}
	rev := s.reader.AppliedIndex()
	o, err := s.reader.Order(store.ChannelID(req.GetChannel()), req.GetOrderRef())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &stockdv1.GetOrderResponse{Order: outboxEntryToProto(&o, rev), Revision: uint64(rev)}, nil
}
