package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
)

// Synopses of the channel commands, shown with their usage errors.
const (
	availSynopsis       = "--channel C [--min-revision N] [--linearizable] SKU..."
	reserveSynopsis     = "--channel C --id ID [--ttl 15m] [--expect SKU=MOD_REVISION]... [--backorder] SKU=QTY[@LOCATION]..."
	confirmSynopsis     = "--channel C --id ID --order REF"
	releaseSynopsis     = "--channel C --id ID [--release-id R LINE=QTY...]"
	reservationSynopsis = "--channel C --id ID [--min-revision N] [--linearizable]"
)

// linearizableUsage is the help of the reads' --linearizable flag.
const linearizableUsage = "see every write acknowledged before the call, on any node (asks the leader for its read index)"

// avail prints how many units of each SKU a channel may promise.
func (s *session) avail(ctx context.Context, args []string) error {
	fs := s.newFlags("avail", availSynopsis)
	channel := fs.String("channel", "", "the channel asking (required)")
	minRevision := fs.Uint64("min-revision", 0, "wait until the node has applied this revision")
	linearizable := fs.Bool("linearizable", false, linearizableUsage)
	skus, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := requireFlags(fs, availSynopsis, "channel"); err != nil {
		return err
	}
	if len(skus) == 0 {
		return usagef(fs, availSynopsis, "at least one SKU is required")
	}
	c, err := s.inventory()
	if err != nil {
		return err
	}
	resp, err := c.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{
		Channel:      *channel,
		Skus:         skus,
		MinRevision:  *minRevision,
		Linearizable: *linearizable,
	})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	return printAvailability(s.stdout, *channel, resp)
}

// reserve holds every line of a cart, or none.
func (s *session) reserve(ctx context.Context, args []string) error {
	fs := s.newFlags("reserve", reserveSynopsis)
	channel := fs.String("channel", "", "the channel holding the units (required)")
	id := fs.String("id", "", "reservation id, unique within the channel; reuse it to retry (required)")
	ttl := fs.Duration("ttl", 15*time.Minute, "how long the hold lives, 1s to 24h")
	expect := expectFlag{}
	fs.Var(expect, "expect", "`SKU=MOD_REVISION`: hold the SKU's lines only if its figure still has this mod_revision "+
		"(from avail), else ABORTED with the current one; repeat for several SKUs")
	backorder := fs.Bool("backorder", false, "let every line take what on-hand cannot fill from incoming supply")
	specs, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := requireFlags(fs, reserveSynopsis, "channel", "id"); err != nil {
		return err
	}
	if len(specs) == 0 {
		return usagef(fs, reserveSynopsis, "at least one SKU=QTY[@LOCATION] line is required")
	}
	lines := make([]*stockdv1.ReserveLine, 0, len(specs))
	for _, spec := range specs {
		l, err := parseReserveLine(spec)
		if err != nil {
			return usagef(fs, reserveSynopsis, "%v", err)
		}
		l.ExpectedModRevision = expect[l.GetSku()]
		l.AllowBackorder = *backorder
		lines = append(lines, l)
	}
	for _, sku := range expect.skus() {
		if !slices.ContainsFunc(lines, func(l *stockdv1.ReserveLine) bool { return l.GetSku() == sku }) {
			return usagef(fs, reserveSynopsis, "--expect names SKU %q, which no line reserves", sku)
		}
	}
	c, err := s.inventory()
	if err != nil {
		return err
	}
	resp, err := c.Reserve(ctx, &stockdv1.ReserveRequest{
		Channel:       *channel,
		ReservationId: *id,
		Lines:         lines,
		Ttl:           durationpb.New(*ttl),
	})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	return printReservation(s.stdout, resp.GetReservation(), resp.GetRevision())
}

// confirm turns a live hold into an order on its way to the ERP.
func (s *session) confirm(ctx context.Context, args []string) error {
	fs := s.newFlags("confirm", confirmSynopsis)
	channel := fs.String("channel", "", "the channel of the reservation (required)")
	id := fs.String("id", "", "reservation id (required)")
	order := fs.String("order", "", "the channel's order reference, sent on to the ERP (required)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := requireFlags(fs, confirmSynopsis, "channel", "id", "order"); err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, confirmSynopsis, "unexpected argument %q", rest[0])
	}
	c, err := s.inventory()
	if err != nil {
		return err
	}
	resp, err := c.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: *channel, ReservationId: *id, OrderRef: *order})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	return printReservation(s.stdout, resp.GetReservation(), resp.GetRevision())
}

// release gives a hold's units back: all of them, or with LINE=QTY
// arguments only those quantities of those lines, once per release id.
func (s *session) release(ctx context.Context, args []string) error {
	fs := s.newFlags("release", releaseSynopsis)
	channel := fs.String("channel", "", "the channel of the reservation (required)")
	id := fs.String("id", "", "reservation id (required)")
	releaseID := fs.String("release-id", "", "id of a partial release, unique within the reservation; reuse it to retry "+
		"(required with LINE=QTY arguments)")
	specs, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := requireFlags(fs, releaseSynopsis, "channel", "id"); err != nil {
		return err
	}
	if len(specs) == 0 && *releaseID != "" {
		return usagef(fs, releaseSynopsis, "--release-id needs at least one LINE=QTY argument (without them the whole hold is released)")
	}
	if len(specs) > 0 && *releaseID == "" {
		return usagef(fs, releaseSynopsis, "--release-id is required to release part of a hold")
	}
	lines := make([]*stockdv1.ReleaseLine, 0, len(specs))
	for _, spec := range specs {
		l, err := parseReleaseLine(spec)
		if err != nil {
			return usagef(fs, releaseSynopsis, "%v", err)
		}
		lines = append(lines, l)
	}
	c, err := s.inventory()
	if err != nil {
		return err
	}
	resp, err := c.Release(ctx, &stockdv1.ReleaseRequest{Channel: *channel, ReservationId: *id, Lines: lines, ReleaseId: *releaseID})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	return printReservation(s.stdout, resp.GetReservation(), resp.GetRevision())
}

// reservation shows one reservation and its state.
func (s *session) reservation(ctx context.Context, args []string) error {
	fs := s.newFlags("reservation", reservationSynopsis)
	channel := fs.String("channel", "", "the channel of the reservation (required)")
	id := fs.String("id", "", "reservation id (required)")
	minRevision := fs.Uint64("min-revision", 0, "wait until the node has applied this revision")
	linearizable := fs.Bool("linearizable", false, linearizableUsage)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := requireFlags(fs, reservationSynopsis, "channel", "id"); err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, reservationSynopsis, "unexpected argument %q", rest[0])
	}
	c, err := s.inventory()
	if err != nil {
		return err
	}
	resp, err := c.GetReservation(ctx, &stockdv1.GetReservationRequest{
		Channel:       *channel,
		ReservationId: *id,
		MinRevision:   *minRevision,
		Linearizable:  *linearizable,
	})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	return printReservation(s.stdout, resp.GetReservation(), resp.GetRevision())
}

// parseReserveLine reads SKU=QTY or SKU=QTY@LOCATION. The SKU is everything
// before the last "=", so a SKU may itself contain "=" or "@".
func parseReserveLine(spec string) (*stockdv1.ReserveLine, error) {
	sku, rhs, ok := cutLast(spec, '=')
	if !ok {
		return nil, fmt.Errorf("line %q: want SKU=QTY or SKU=QTY@LOCATION", spec)
	}
	if sku == "" {
		return nil, fmt.Errorf("line %q: empty SKU", spec)
	}
	qtyText, location, hasLocation := strings.Cut(rhs, "@")
	if hasLocation && location == "" {
		return nil, fmt.Errorf("line %q: empty location after @", spec)
	}
	if qtyText == "" {
		return nil, fmt.Errorf("line %q: missing quantity after =", spec)
	}
	qty, err := strconv.ParseInt(qtyText, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("line %q: quantity %q is not a whole number", spec, qtyText)
	}
	if qty <= 0 {
		return nil, fmt.Errorf("line %q: quantity must be > 0, got %d", spec, qty)
	}
	return &stockdv1.ReserveLine{Sku: sku, Quantity: qty, Location: location}, nil
}

// parseReleaseLine reads LINE=QTY: the index of a reservation line (as
// listed, from 0) and the SKU units of it to give back.
func parseReleaseLine(spec string) (*stockdv1.ReleaseLine, error) {
	lineText, qtyText, ok := strings.Cut(spec, "=")
	if !ok {
		return nil, fmt.Errorf("line %q: want LINE=QTY, LINE the reservation line's index from 0", spec)
	}
	line, err := strconv.ParseUint(lineText, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("line %q: line index %q is not a whole number >= 0", spec, lineText)
	}
	if qtyText == "" {
		return nil, fmt.Errorf("line %q: missing quantity after =", spec)
	}
	qty, err := strconv.ParseInt(qtyText, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("line %q: quantity %q is not a whole number", spec, qtyText)
	}
	if qty <= 0 {
		return nil, fmt.Errorf("line %q: quantity must be > 0, got %d", spec, qty)
	}
	return &stockdv1.ReleaseLine{Line: uint32(line), Quantity: qty}, nil
}

// expectFlag collects the repeated --expect SKU=MOD_REVISION of reserve.
type expectFlag map[string]uint64

func (e expectFlag) String() string {
	parts := make([]string, 0, len(e))
	for _, sku := range e.skus() {
		parts = append(parts, sku+"="+strconv.FormatUint(e[sku], 10))
	}
	return strings.Join(parts, ",")
}

// Set reads one SKU=MOD_REVISION. The SKU is everything before the last
// "=", as in a reserve line; naming a SKU twice with two revisions is a
// mistake.
func (e expectFlag) Set(text string) error {
	sku, revText, ok := cutLast(text, '=')
	if !ok || sku == "" {
		return fmt.Errorf("want SKU=MOD_REVISION, got %q", text)
	}
	rev, err := strconv.ParseUint(revText, 10, 64)
	if err != nil || rev == 0 {
		return fmt.Errorf("mod revision %q of %s must be a whole number > 0", revText, sku)
	}
	if old, dup := e[sku]; dup && old != rev {
		return fmt.Errorf("SKU %s expected at both %d and %d", sku, old, rev)
	}
	e[sku] = rev
	return nil
}

// skus returns the SKUs named, sorted.
func (e expectFlag) skus() []string {
	skus := make([]string, 0, len(e))
	for sku := range e {
		skus = append(skus, sku)
	}
	slices.Sort(skus)
	return skus
}
