package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
)

// Synopses of the hold lifecycle commands, shown with their usage errors.
const (
	extendSynopsis       = "--channel C --id ID --ttl D [--extend-id X]"
	cancelOrderSynopsis  = "--channel C --id ID"
	reservationsSynopsis = "--channel C [--state held|confirmed|released|expired|cancelled] [--expiring-within D] " +
		"[--limit N] [--page-token T] [--all] [--min-revision N] [--linearizable]"
	releaseAllSynopsis = "--channel C [--id ID]"
)

// maxPageSize is the most reservations ListReservations returns in one page.
const maxPageSize = 1000

// reservationStates are the --state values of reservations, in the order of
// the enum.
var reservationStates = []stockdv1.ReservationState{
	stockdv1.ReservationState_RESERVATION_STATE_HELD,
	stockdv1.ReservationState_RESERVATION_STATE_CONFIRMED,
	stockdv1.ReservationState_RESERVATION_STATE_RELEASED,
	stockdv1.ReservationState_RESERVATION_STATE_EXPIRED,
	stockdv1.ReservationState_RESERVATION_STATE_CANCELLED,
}

// extend pushes a live hold's deadline to now + ttl. Each call needs an
// extend id, applied once: --extend-id names it, a random one is made
// otherwise (extending twice only moves the deadline again).
func (s *session) extend(ctx context.Context, args []string) error {
	fs := s.newFlags("extend", extendSynopsis)
	channel := fs.String("channel", "", "the channel of the reservation (required)")
	id := fs.String("id", "", "reservation id (required)")
	ttl := fs.Duration("ttl", 0, "the new deadline is now + ttl, 1s to 24h (required)")
	extendID := fs.String("extend-id", "", "id of this extension, unique within the reservation; reuse it to retry (default: random hex)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := requireFlags(fs, extendSynopsis, "channel", "id"); err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, extendSynopsis, "unexpected argument %q", rest[0])
	}
	if *ttl <= 0 {
		return usagef(fs, extendSynopsis, "--ttl is required and must be > 0")
	}
	if *extendID == "" {
		if *extendID, err = randomHex(8); err != nil {
			return err
		}
	}
	c, err := s.inventory()
	if err != nil {
		return err
	}
	resp, err := c.Extend(ctx, &stockdv1.ExtendRequest{
		Channel:       *channel,
		ReservationId: *id,
		ExtendId:      *extendID,
		Ttl:           durationpb.New(*ttl),
	})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	fmt.Fprintf(s.stdout, "extend id %s\n", *extendID)
	return printReservation(s.stdout, resp.GetReservation(), resp.GetRevision())
}

// cancelOrder takes back a confirmed order the ERP has not yet absorbed.
func (s *session) cancelOrder(ctx context.Context, args []string) error {
	fs := s.newFlags("cancel-order", cancelOrderSynopsis)
	channel := fs.String("channel", "", "the channel of the reservation (required)")
	id := fs.String("id", "", "reservation id of the confirmed order (required)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := requireFlags(fs, cancelOrderSynopsis, "channel", "id"); err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, cancelOrderSynopsis, "unexpected argument %q", rest[0])
	}
	c, err := s.inventory()
	if err != nil {
		return err
	}
	resp, err := c.CancelOrder(ctx, &stockdv1.CancelOrderRequest{Channel: *channel, ReservationId: *id})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	return printReservation(s.stdout, resp.GetReservation(), resp.GetRevision())
}

// reservations lists one channel's reservations in id order, one page or,
// with --all, every page.
func (s *session) reservations(ctx context.Context, args []string) error {
	fs := s.newFlags("reservations", reservationsSynopsis)
	channel := fs.String("channel", "", "the channel (required)")
	stateText := fs.String("state", "", "only reservations in this state: "+strings.Join(stateNames(), ", ")+" (default: every state)")
	expiring := fs.Duration("expiring-within", 0, "only live holds whose deadline is within this window")
	limit := fs.Uint64("limit", 0, fmt.Sprintf("reservations per page, 1 to %d (default: the server's, 100)", maxPageSize))
	pageToken := fs.String("page-token", "", "start at this page (the token a previous call printed)")
	all := fs.Bool("all", false, "follow the page tokens to the last page")
	minRevision := fs.Uint64("min-revision", 0, "wait until the node has applied this revision")
	linearizable := fs.Bool("linearizable", false, linearizableUsage)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := requireFlags(fs, reservationsSynopsis, "channel"); err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, reservationsSynopsis, "unexpected argument %q", rest[0])
	}
	var state stockdv1.ReservationState
	if *stateText != "" {
		if state, err = parseState(*stateText); err != nil {
			return usagef(fs, reservationsSynopsis, "--state: %v", err)
		}
	}
	if *expiring < 0 {
		return usagef(fs, reservationsSynopsis, "--expiring-within must be > 0, got %v", *expiring)
	}
	if *limit > maxPageSize {
		return usagef(fs, reservationsSynopsis, "--limit must be at most %d, got %d", maxPageSize, *limit)
	}
	c, err := s.inventory()
	if err != nil {
		return err
	}
	req := &stockdv1.ListReservationsRequest{
		Channel:      *channel,
		State:        state,
		PageSize:     uint32(*limit),
		PageToken:    *pageToken,
		MinRevision:  *minRevision,
		Linearizable: *linearizable,
	}
	if *expiring > 0 {
		req.ExpiringWithin = durationpb.New(*expiring)
	}
	var listed []*stockdv1.Reservation
	var last *stockdv1.ListReservationsResponse
	for {
		resp, err := c.ListReservations(ctx, req)
		if err != nil {
			return err
		}
		if s.opts.json {
			if err := printJSON(s.stdout, resp); err != nil {
				return err
			}
		}
		listed = append(listed, resp.GetReservations()...)
		last = resp
		next := resp.GetNextPageToken()
		if !*all || next == "" {
			break
		}
		if next == req.GetPageToken() {
			return fmt.Errorf("reservations: the server answered page token %q with itself", next)
		}
		req.PageToken = next
	}
	if s.opts.json {
		return nil
	}
	return printReservations(s.stdout, *channel, listed, last.GetNextPageToken(), last.GetRevision())
}

// releaseAll releases every live hold of a channel. The call needs an id,
// applied once: --id names it, a random one is made otherwise.
func (s *session) releaseAll(ctx context.Context, args []string) error {
	fs := s.newFlags("release-all", releaseAllSynopsis)
	channel := fs.String("channel", "", "the channel whose live holds to release (required)")
	id := fs.String("id", "", "id of this release-all; reuse it to retry and get the first count (default: random hex)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := requireFlags(fs, releaseAllSynopsis, "channel"); err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, releaseAllSynopsis, "unexpected argument %q", rest[0])
	}
	if *id == "" {
		if *id, err = randomHex(8); err != nil {
			return err
		}
	}
	c, err := s.inventory()
	if err != nil {
		return err
	}
	resp, err := c.ReleaseAll(ctx, &stockdv1.ReleaseAllRequest{Channel: *channel, ReleaseAllId: *id})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	_, err = fmt.Fprintf(s.stdout, "released %d live holds on channel %s (release-all id %s), revision %d\n",
		resp.GetReleased(), *channel, *id, resp.GetRevision())
	return err
}

// printReservations writes one row per reservation, the count and, when a
// page follows, its token.
func printReservations(w io.Writer, channel string, list []*stockdv1.Reservation, next string, revision uint64) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "RESERVATION\tSTATE\tLINES\tSKU_UNITS\tCREATED\tEXPIRES\tORDER")
	for _, r := range list {
		var units int64
		for _, l := range r.GetLines() {
			units += l.GetQuantitySkuUnits()
		}
		expires := "-"
		if r.GetState() == stockdv1.ReservationState_RESERVATION_STATE_HELD {
			expires = formatTimestamp(r.GetExpiresAt())
		}
		order := "-"
		if r.GetOrderRef() != "" {
			order = r.GetOrderRef()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", r.GetReservationId(), reservationState(r.GetState()),
			len(r.GetLines()), units, formatTimestamp(r.GetCreatedAt()), expires, order)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "listed %d on channel %s, revision %d\n", len(list), channel, revision)
	if next != "" {
		_, err := fmt.Fprintf(w, "more: --page-token %s (or --all)\n", next)
		return err
	}
	return nil
}

// parseState reads a --state value, in any case.
func parseState(text string) (stockdv1.ReservationState, error) {
	for _, st := range reservationStates {
		if strings.EqualFold(text, reservationState(st)) {
			return st, nil
		}
	}
	return 0, fmt.Errorf("unknown state %q (one of: %s)", text, strings.Join(stateNames(), ", "))
}

// stateNames are the --state values, lower case.
func stateNames() []string {
	names := make([]string, 0, len(reservationStates))
	for _, st := range reservationStates {
		names = append(names, strings.ToLower(reservationState(st)))
	}
	return names
}
