package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stockd/stockd/api/stockdv1"
)

// Synopses of the incoming supply commands, shown with their usage errors.
const (
	incomingSetSynopsis  = "PO_LINE=ITEM@LOCATION:QTY[/RECEIVED][,eta=TIME][,version=N]..."
	incomingListSynopsis = "[--item I]"
)

// etaDateLayout is the short form of an ETA: a day, at midnight UTC.
const etaDateLayout = "2006-01-02"

// incomingSet sends purchase-order lines on their way, as the ERP does. A row
// without a version gets the current Unix time in nanoseconds (plus its row
// index), as in stock set.
func (s *session) incomingSet(ctx context.Context, args []string) error {
	fs := s.newFlags("incoming set", incomingSetSynopsis)
	specs, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(specs) == 0 {
		return usagef(fs, incomingSetSynopsis, "at least one PO_LINE=ITEM@LOCATION:QTY row is required")
	}
	baseVersion := uint64(time.Now().UnixNano())
	rows := make([]*stockdv1.IncomingLine, 0, len(specs))
	for i, spec := range specs {
		row, err := parseIncomingLine(spec, baseVersion+uint64(i))
		if err != nil {
			return usagef(fs, incomingSetSynopsis, "%v", err)
		}
		rows = append(rows, row)
	}
	c, err := s.erp()
	if err != nil {
		return err
	}
	resp, err := c.SetIncoming(ctx, &stockdv1.SetIncomingRequest{Lines: rows})
	if err != nil {
		return err
	}
	if s.opts.json {
		if err := printJSON(s.stdout, resp); err != nil {
			return err
		}
	} else {
		tw := newTable(s.stdout)
		fmt.Fprintln(tw, "ROW\tPO_LINE\tITEM\tLOCATION\tQUANTITY\tRECEIVED\tETA\tVERSION\tSTATUS\tHELD_VERSION\tREASON")
		for i, row := range rows {
			res := rowAnswer(resp.GetRows(), i)
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%s\t%d\t%s\t%d\t%s\n", i, row.GetPoLineId(), row.GetItem(), row.GetLocation(),
				row.GetQuantityBaseUnits(), row.GetReceivedBaseUnits(), formatTimestamp(row.GetEta()), row.GetVersion(),
				rowStatus(res.GetStatus()), res.GetVersion(), res.GetReason())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		printCounts(s.stdout, resp.GetApplied(), resp.GetIgnoredStale(), resp.GetRejected(), resp.GetRevision())
	}
	return rejectedError(resp.GetRejected(), len(rows))
}

// incomingList prints the incoming lines, of one item or all, with what
// backorders hold on each.
func (s *session) incomingList(ctx context.Context, args []string) error {
	fs := s.newFlags("incoming list", incomingListSynopsis)
	item := fs.String("item", "", "only this item's lines (default: every item)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, incomingListSynopsis, "unexpected argument %q", rest[0])
	}
	c, err := s.erp()
	if err != nil {
		return err
	}
	resp, err := c.ListIncoming(ctx, &stockdv1.ListIncomingRequest{Item: *item})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	tw := newTable(s.stdout)
	fmt.Fprintln(tw, "PO_LINE\tITEM\tLOCATION\tQUANTITY\tRECEIVED\tBACKORDERED\tETA\tVERSION")
	for _, st := range resp.GetLines() {
		l := st.GetLine()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%d\n", l.GetPoLineId(), l.GetItem(), l.GetLocation(),
			l.GetQuantityBaseUnits(), l.GetReceivedBaseUnits(), st.GetBackorderedBaseUnits(), formatTimestamp(l.GetEta()), l.GetVersion())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(s.stdout, "revision %d\n", resp.GetRevision())
	return err
}

// parseIncomingLine reads PO_LINE=ITEM@LOCATION:QTY[/RECEIVED] followed by
// optional ",eta=TIME" (RFC 3339, or a YYYY-MM-DD day at midnight UTC) and
// ",version=N" in any order; defaultVersion is used when the row names none.
// The location is what follows the last "@" up to the ":", and the PO line
// what precedes the last "=" before it, so a PO line may contain "=" or
// "@" and an item "@", but a location neither ":" nor ",".
func parseIncomingLine(spec string, defaultVersion uint64) (*stockdv1.IncomingLine, error) {
	const want = "want PO_LINE=ITEM@LOCATION:QTY[/RECEIVED][,eta=TIME][,version=N]"
	at := strings.LastIndexByte(spec, '@')
	if at < 0 {
		return nil, fmt.Errorf("row %q: %s", spec, want)
	}
	head, tail := spec[:at], spec[at+1:]
	poLine, item, ok := cutLast(head, '=')
	if !ok {
		return nil, fmt.Errorf("row %q: %s", spec, want)
	}
	if poLine == "" {
		return nil, fmt.Errorf("row %q: empty PO line", spec)
	}
	if item == "" {
		return nil, fmt.Errorf("row %q: empty item", spec)
	}
	options := strings.Split(tail, ",")
	location, amounts, ok := strings.Cut(options[0], ":")
	if !ok {
		return nil, fmt.Errorf("row %q: want :QTY after the location", spec)
	}
	if location == "" {
		return nil, fmt.Errorf("row %q: empty location", spec)
	}
	qtyText, receivedText, hasReceived := strings.Cut(amounts, "/")
	if qtyText == "" {
		return nil, fmt.Errorf("row %q: missing quantity after the colon", spec)
	}
	qty, err := strconv.ParseInt(qtyText, 10, 64)
	if err != nil || qty < 0 {
		return nil, fmt.Errorf("row %q: quantity %q must be a whole number >= 0", spec, qtyText)
	}
	line := &stockdv1.IncomingLine{PoLineId: poLine, Item: item, Location: location, QuantityBaseUnits: qty, Version: defaultVersion}
	if hasReceived {
		received, err := strconv.ParseInt(receivedText, 10, 64)
		if err != nil || received < 0 || received > qty {
			return nil, fmt.Errorf("row %q: received %q must be a whole number from 0 to the quantity %d", spec, receivedText, qty)
		}
		line.ReceivedBaseUnits = received
	}
	seen := map[string]bool{}
	for _, opt := range options[1:] {
		key, value, _ := strings.Cut(opt, "=")
		if seen[key] {
			return nil, fmt.Errorf("row %q: %s given twice", spec, key)
		}
		seen[key] = true
		switch key {
		case "eta":
			eta, err := parseETA(value)
			if err != nil {
				return nil, fmt.Errorf("row %q: %v", spec, err)
			}
			line.Eta = timestamppb.New(eta)
		case "version":
			if line.Version, err = parseVersion(spec, value); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("row %q: unknown option %q (want eta=TIME or version=N)", spec, opt)
		}
	}
	return line, nil
}

// parseETA reads an RFC 3339 time or a YYYY-MM-DD day (midnight UTC).
func parseETA(text string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, text); err == nil {
		return t, nil
	}
	if t, err := time.Parse(etaDateLayout, text); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("eta %q is neither RFC 3339 (2026-05-01T08:00:00Z) nor a day (2026-05-01)", text)
}
