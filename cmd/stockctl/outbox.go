package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
)

// Synopses of the order outbox commands, shown with their usage errors.
const (
	ordersPullSynopsis   = "[--after N] [--follow] [--limit N]"
	ordersAckSynopsis    = "SEQ=booked|refused[:REASON]|done..."
	ordersStatusSynopsis = ""
	orderSynopsis        = "--channel C --ref REF [--min-revision N] [--linearizable]"
	rejectedSynopsis     = "[--limit N]"
)

// Limits the server applies, checked here so a mistake is a usage error.
const (
	maxAcks          = 10000
	maxRejectedLimit = 10000
)

// entryColumns are the columns of orders pull and their widths: rows are
// written as they come, so the columns are fixed rather than measured (a
// longer value pushes the rest of its row).
var entryColumns = []struct {
	name  string
	width int
}{
	{"SEQ", 6}, {"KIND", 12}, {"CHANNEL", 10}, {"ORDER_REF", 12}, {"RESERVATION", 12},
	{"CANCELS_SEQ", 11}, {"CREATED", 30}, {"REVISION", 8}, {"LINES", 0},
}

// ordersPull prints the outbox entries with sequence > --after that have no
// outcome yet, in sequence order; with --follow it then keeps printing new
// ones as they are applied until interrupted or --limit entries were printed.
// The stream is not bounded by --timeout. An interrupt ends it with status 0.
func (s *session) ordersPull(ctx context.Context, args []string) error {
	fs := s.newFlags("orders pull", ordersPullSynopsis)
	after := fs.Uint64("after", 0, "print the entries with sequence > N (the last sequence already handled)")
	follow := fs.Bool("follow", false, "keep the stream open and print new entries as they come, until interrupted")
	limit := fs.Uint64("limit", 0, "stop after N entries (0: no limit)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, ordersPullSynopsis, "unexpected argument %q", rest[0])
	}
	c, err := s.erp()
	if err != nil {
		return err
	}
	// Cancelling on return ends the stream when --limit is reached or a
	// write fails.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.PullOrders(sctx, &stockdv1.PullOrdersRequest{AfterSeq: *after, Follow: *follow})
	if err != nil {
		return err
	}
	if !s.opts.json {
		header := make([]string, len(entryColumns))
		for i, c := range entryColumns {
			header[i] = c.name
		}
		if err := writeEntryRow(s.stdout, header); err != nil {
			return err
		}
	}
	var n, last uint64
	for *limit == 0 || n < *limit {
		e, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// An interrupt (the parent context) ends a pull cleanly.
			if ctx.Err() != nil && status.Code(err) == codes.Canceled {
				break
			}
			return err
		}
		n, last = n+1, e.GetSeq()
		if s.opts.json {
			err = printJSON(s.stdout, e)
		} else {
			err = writeEntry(s.stdout, e)
		}
		if err != nil {
			return err
		}
	}
	if n == 0 {
		s.notef("no entries after seq %d\n", *after)
		return nil
	}
	noun := "entries"
	if n == 1 {
		noun = "entry"
	}
	s.notef("%d %s, last seq %d (next: --after %d)\n", n, noun, last, last)
	return nil
}

// writeEntry writes one outbox entry as a row; its lines are one field,
// ITEM@LOCATION=QTY (base units), with "/PO_LINE" for a backorder, joined
// by commas.
func writeEntry(w io.Writer, e *stockdv1.OutboxEntry) error {
	cancels := "-"
	if e.GetCancelsSeq() != 0 {
		cancels = strconv.FormatUint(e.GetCancelsSeq(), 10)
	}
	return writeEntryRow(w, []string{strconv.FormatUint(e.GetSeq(), 10), outboxKind(e.GetKind()), e.GetChannel(),
		e.GetOrderRef(), e.GetReservationId(), cancels, formatTimestamp(e.GetCreatedAt()),
		strconv.FormatUint(e.GetRevision(), 10), entryLines(e.GetLines())})
}

// writeEntryRow writes fields padded to entryColumns' widths, two spaces
// apart, as one line.
func writeEntryRow(w io.Writer, fields []string) error {
	var b strings.Builder
	for i, f := range fields {
		b.WriteString(f)
		if i == len(fields)-1 {
			break
		}
		b.WriteString(strings.Repeat(" ", max(0, entryColumns[i].width-len(f))+2))
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

func entryLines(lines []*stockdv1.OutboxLine) string {
	if len(lines) == 0 {
		return "-"
	}
	parts := make([]string, len(lines))
	for i, l := range lines {
		parts[i] = fmt.Sprintf("%s@%s=%d", l.GetItem(), l.GetLocation(), l.GetQuantityBaseUnits())
		if l.GetPoLineId() != "" {
			parts[i] += "/" + l.GetPoLineId()
		}
	}
	return strings.Join(parts, ",")
}

func outboxKind(k stockdv1.OutboxKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "OUTBOX_KIND_"))
}

// outcomeName is an outcome as the table shows it; none yet is PENDING.
func outcomeName(o stockdv1.OrderOutcome) string {
	if o == stockdv1.OrderOutcome_ORDER_OUTCOME_UNSPECIFIED {
		return "PENDING"
	}
	return strings.TrimPrefix(o.String(), "ORDER_OUTCOME_")
}

// ordersAck reports the ERP's outcomes: booked, refused (with a reason,
// shown on the order; its units are freed at once) or, for a cancellation
// entry, done. Each ack is answered on its own; any rejected one makes the
// exit status 1.
func (s *session) ordersAck(ctx context.Context, args []string) error {
	fs := s.newFlags("orders ack", ordersAckSynopsis)
	specs, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(specs) == 0 {
		return usagef(fs, ordersAckSynopsis, "at least one SEQ=OUTCOME ack is required")
	}
	if len(specs) > maxAcks {
		return usagef(fs, ordersAckSynopsis, "at most %d acks, got %d", maxAcks, len(specs))
	}
	acks := make([]*stockdv1.OrderAck, len(specs))
	for i, spec := range specs {
		if acks[i], err = parseOrderAck(spec); err != nil {
			return usagef(fs, ordersAckSynopsis, "%v", err)
		}
	}
	c, err := s.erp()
	if err != nil {
		return err
	}
	resp, err := c.AckOrders(ctx, &stockdv1.AckOrdersRequest{Acks: acks})
	if err != nil {
		return err
	}
	var applied, stale, rejected uint32
	for i := range acks {
		switch rowAnswer(resp.GetRows(), i).GetStatus() {
		case stockdv1.RowStatus_ROW_STATUS_APPLIED:
			applied++
		case stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE:
			stale++
		default:
			rejected++
		}
	}
	if s.opts.json {
		if err := printJSON(s.stdout, resp); err != nil {
			return err
		}
	} else {
		tw := newTable(s.stdout)
		fmt.Fprintln(tw, "ROW\tSEQ\tOUTCOME\tSTATUS\tREASON")
		for i, a := range acks {
			res := rowAnswer(resp.GetRows(), i)
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", i, a.GetSeq(), outcomeName(a.GetOutcome()),
				rowStatus(res.GetStatus()), res.GetReason())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		printCounts(s.stdout, applied, stale, rejected, resp.GetRevision())
	}
	return rejectedError(rejected, len(acks))
}

// parseOrderAck reads SEQ=booked, SEQ=refused, SEQ=refused:REASON or
// SEQ=done; the outcome is case-insensitive, the reason everything after
// the first colon.
func parseOrderAck(spec string) (*stockdv1.OrderAck, error) {
	seqText, value, ok := strings.Cut(spec, "=")
	if !ok {
		return nil, fmt.Errorf("ack %q: want SEQ=booked, SEQ=refused[:REASON] or SEQ=done", spec)
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil || seq == 0 {
		return nil, fmt.Errorf("ack %q: sequence %q must be a whole number > 0", spec, seqText)
	}
	outcomeText, reason, hasReason := strings.Cut(value, ":")
	ack := &stockdv1.OrderAck{Seq: seq, Reason: reason}
	switch strings.ToLower(outcomeText) {
	case "booked":
		ack.Outcome = stockdv1.OrderOutcome_ORDER_OUTCOME_BOOKED
	case "refused":
		ack.Outcome = stockdv1.OrderOutcome_ORDER_OUTCOME_REFUSED
	case "done":
		ack.Outcome = stockdv1.OrderOutcome_ORDER_OUTCOME_DONE
	default:
		return nil, fmt.Errorf("ack %q: outcome %q is not booked, refused or done", spec, outcomeText)
	}
	if hasReason && ack.Outcome != stockdv1.OrderOutcome_ORDER_OUTCOME_REFUSED {
		return nil, fmt.Errorf("ack %q: only refused takes a reason", spec)
	}
	return ack, nil
}

// ordersStatus prints the outbox backlog: entries without an outcome, the
// oldest of them and its age (by this machine's clock), the next sequence
// and the absorbed mark.
func (s *session) ordersStatus(ctx context.Context, args []string) error {
	fs := s.newFlags("orders status", ordersStatusSynopsis)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, ordersStatusSynopsis, "unexpected argument %q", rest[0])
	}
	c, err := s.erp()
	if err != nil {
		return err
	}
	resp, err := c.GetOutbox(ctx, &stockdv1.GetOutboxRequest{})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	oldest, created, age := "-", "-", "-"
	if resp.GetPending() > 0 {
		oldest = strconv.FormatUint(resp.GetOldestPendingSeq(), 10)
		created = formatTimestamp(resp.GetOldestPendingCreatedAt())
		if ts := resp.GetOldestPendingCreatedAt(); ts != nil {
			age = max(0, time.Since(ts.AsTime())).Round(time.Second).String()
		}
	}
	tw := newTable(s.stdout)
	fmt.Fprintln(tw, "PENDING\tOLDEST_SEQ\tOLDEST_CREATED\tAGE\tNEXT_SEQ\tABSORBED_MARK\tREVISION")
	fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\n", resp.GetPending(), oldest, created, age,
		resp.GetNextSeq(), resp.GetAbsorbedMark(), resp.GetRevision())
	return tw.Flush()
}

// order prints a confirmed order by channel and order reference: its lines,
// the ERP's outcome, whether it was cancelled and whether the ERP's counts
// include it.
func (s *session) order(ctx context.Context, args []string) error {
	fs := s.newFlags("order", orderSynopsis)
	channel := fs.String("channel", "", "the channel that confirmed the order (required)")
	ref := fs.String("ref", "", "the order reference given at confirm (required)")
	minRevision := fs.Uint64("min-revision", 0, "wait until the node has applied this revision")
	linearizable := fs.Bool("linearizable", false, linearizableUsage)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := requireFlags(fs, orderSynopsis, "channel", "ref"); err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, orderSynopsis, "unexpected argument %q", rest[0])
	}
	c, err := s.inventory()
	if err != nil {
		return err
	}
	resp, err := c.GetOrder(ctx, &stockdv1.GetOrderRequest{
		Channel:      *channel,
		OrderRef:     *ref,
		MinRevision:  *minRevision,
		Linearizable: *linearizable,
	})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	return printOrder(s.stdout, resp.GetOrder(), resp.GetRevision())
}

// printOrder writes an order's header and one row per line.
func printOrder(w io.Writer, o *stockdv1.OutboxEntry, revision uint64) error {
	fmt.Fprintf(w, "order %s on channel %s: seq %d, reservation %s\n", o.GetOrderRef(), o.GetChannel(), o.GetSeq(), o.GetReservationId())
	fmt.Fprintf(w, "created %s\n", formatTimestamp(o.GetCreatedAt()))
	outcome := "outcome " + outcomeName(o.GetOutcome())
	if o.GetOutcomeReason() != "" {
		outcome += ": " + o.GetOutcomeReason()
	}
	fmt.Fprintln(w, outcome)
	fmt.Fprintf(w, "absorbed %s, cancelled %s\n", yesNo(o.GetAbsorbed()), yesNo(o.GetCancelled()))
	tw := newTable(w)
	fmt.Fprintln(tw, "LINE\tITEM\tLOCATION\tBASE_UNITS\tPO_LINE")
	for i, l := range o.GetLines() {
		poLine := l.GetPoLineId()
		if poLine == "" {
			poLine = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\n", i, l.GetItem(), l.GetLocation(), l.GetQuantityBaseUnits(), poLine)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "revision %d\n", revision)
	return err
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// rejected prints the most recent rejected ERP rows, newest first, and the
// counts of every rejection by reason.
func (s *session) rejected(ctx context.Context, args []string) error {
	fs := s.newFlags("rejected", rejectedSynopsis)
	limit := fs.Uint64("limit", 0, fmt.Sprintf("at most N of the most recent rows, 1 to %d (default: the server's, 100)", maxRejectedLimit))
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, rejectedSynopsis, "unexpected argument %q", rest[0])
	}
	if *limit > maxRejectedLimit {
		return usagef(fs, rejectedSynopsis, "--limit must be at most %d, got %d", maxRejectedLimit, *limit)
	}
	c, err := s.erp()
	if err != nil {
		return err
	}
	resp, err := c.ListRejected(ctx, &stockdv1.ListRejectedRequest{Limit: uint32(*limit)})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	tw := newTable(s.stdout)
	fmt.Fprintln(tw, "REVISION\tAT\tSOURCE\tROW\tKEY\tREASON")
	for _, r := range resp.GetRows() {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", r.GetRevision(), formatTimestamp(r.GetAt()), r.GetSource(),
			r.GetRow(), r.GetKey(), r.GetReason())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(s.stdout, "rejections by reason:")
	tw = newTable(s.stdout)
	fmt.Fprintln(tw, "REASON\tCOUNT")
	for _, c := range resp.GetCounts() {
		fmt.Fprintf(tw, "%s\t%d\n", c.GetReason(), c.GetCount())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(s.stdout, "revision %d\n", resp.GetRevision())
	return err
}
