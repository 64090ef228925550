package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/stockd/stockd/api/stockdv1"
)

// Synopses of the ERP commands, shown with their usage errors.
const (
	stockSetSynopsis    = "[--mark N] ITEM@LOCATION=ON_HAND[:VERSION]..."
	stockAdjustSynopsis = "[--id DELTA_ID] [--reason R] ITEM@LOCATION=+DELTA|-DELTA[:VERSION]..."
)

// stockSet sends absolute on-hand counts, as the ERP does. A row without a
// version gets the current Unix time in nanoseconds (plus its row index), so
// that a person's correction is newer than what the ERP last sent.
func (s *session) stockSet(ctx context.Context, args []string) error {
	fs := s.newFlags("stock set", stockSetSynopsis)
	mark := fs.Uint64("mark", 0, "absorbed mark: every order with outbox sequence <= N is reflected in these counts (0: leave it)")
	specs, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(specs) == 0 {
		return usagef(fs, stockSetSynopsis, "at least one ITEM@LOCATION=ON_HAND row is required")
	}
	baseVersion := uint64(time.Now().UnixNano())
	rows := make([]*stockdv1.StockCount, 0, len(specs))
	for i, spec := range specs {
		row, err := parseStockCount(spec, baseVersion+uint64(i))
		if err != nil {
			return usagef(fs, stockSetSynopsis, "%v", err)
		}
		rows = append(rows, row)
	}
	c, err := s.erp()
	if err != nil {
		return err
	}
	resp, err := c.SetStock(ctx, &stockdv1.SetStockRequest{Rows: rows, AbsorbedMark: *mark})
	if err != nil {
		return err
	}
	if s.opts.json {
		if err := printJSON(s.stdout, resp); err != nil {
			return err
		}
	} else {
		tw := newTable(s.stdout)
		fmt.Fprintln(tw, "ROW\tITEM\tLOCATION\tSET_ON_HAND\tVERSION\tSTATUS\tON_HAND\tHELD_VERSION\tREASON")
		for i, row := range rows {
			res := rowAnswer(resp.GetRows(), i)
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%d\t%d\t%s\n", i, row.GetItem(), row.GetLocation(),
				row.GetOnHandBaseUnits(), row.GetVersion(), rowStatus(res.GetStatus()),
				res.GetOnHandBaseUnits(), res.GetVersion(), res.GetReason())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		printCounts(s.stdout, resp.GetApplied(), resp.GetIgnoredStale(), resp.GetRejected(), resp.GetRevision())
	}
	return rejectedError(resp.GetRejected(), len(rows))
}

// stockAdjust sends signed deltas. Each row needs a delta id, applied once:
// --id names it (rows of a multi-row call get ID-1, ID-2, ...), and a random
// one is made otherwise. Reuse --id to retry safely.
func (s *session) stockAdjust(ctx context.Context, args []string) error {
	fs := s.newFlags("stock adjust", stockAdjustSynopsis)
	id := fs.String("id", "", "delta id; rows of a multi-row call get ID-1, ID-2, ... (default: random hex)")
	reason := fs.String("reason", "", "why: receipt, return, damage, count correction (free text)")
	specs, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(specs) == 0 {
		return usagef(fs, stockAdjustSynopsis, "at least one ITEM@LOCATION=+DELTA or -DELTA row is required")
	}
	baseID := *id
	if baseID == "" {
		baseID, err = randomHex(8)
		if err != nil {
			return err
		}
	}
	rows := make([]*stockdv1.StockAdjustment, 0, len(specs))
	for i, spec := range specs {
		row, err := parseStockAdjustment(spec)
		if err != nil {
			return usagef(fs, stockAdjustSynopsis, "%v", err)
		}
		row.DeltaId = baseID
		if len(specs) > 1 {
			row.DeltaId = baseID + "-" + strconv.Itoa(i+1)
		}
		row.Reason = *reason
		rows = append(rows, row)
	}
	c, err := s.erp()
	if err != nil {
		return err
	}
	resp, err := c.AdjustStock(ctx, &stockdv1.AdjustStockRequest{Rows: rows})
	if err != nil {
		return err
	}
	if s.opts.json {
		if err := printJSON(s.stdout, resp); err != nil {
			return err
		}
	} else {
		tw := newTable(s.stdout)
		fmt.Fprintln(tw, "ROW\tDELTA_ID\tITEM\tLOCATION\tDELTA\tSTATUS\tON_HAND\tHELD_VERSION\tREASON")
		for i, row := range rows {
			res := rowAnswer(resp.GetRows(), i)
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%+d\t%s\t%d\t%d\t%s\n", i, row.GetDeltaId(), row.GetItem(), row.GetLocation(),
				row.GetDeltaBaseUnits(), rowStatus(res.GetStatus()), res.GetOnHandBaseUnits(), res.GetVersion(), res.GetReason())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		printCounts(s.stdout, resp.GetApplied(), resp.GetIgnoredStale(), resp.GetRejected(), resp.GetRevision())
	}
	return rejectedError(resp.GetRejected(), len(rows))
}

func printCounts(w io.Writer, applied, stale, rejected uint32, revision uint64) {
	fmt.Fprintf(w, "applied %d, ignored stale %d, rejected %d, revision %d\n", applied, stale, rejected, revision)
}

// rejectedError makes a batch with rejected rows exit with status 1, so a
// script notices; the rows themselves were already printed.
func rejectedError(rejected uint32, rows int) error {
	if rejected == 0 {
		return nil
	}
	return &exitError{msg: fmt.Sprintf("%d of %d rows rejected", rejected, rows)}
}

// parseCounter reads ITEM@LOCATION. The location is everything after the
// last "@", so an item may itself contain "@".
func parseCounter(spec, key string) (item, location string, err error) {
	i := strings.LastIndexByte(key, '@')
	if i < 0 {
		return "", "", fmt.Errorf("row %q: want ITEM@LOCATION before =", spec)
	}
	item, location = key[:i], key[i+1:]
	if item == "" {
		return "", "", fmt.Errorf("row %q: empty item", spec)
	}
	if location == "" {
		return "", "", fmt.Errorf("row %q: empty location", spec)
	}
	return item, location, nil
}

// parseVersion reads the optional ":VERSION" suffix of a row value.
func parseVersion(spec, text string) (uint64, error) {
	v, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("row %q: version %q is not a whole number", spec, text)
	}
	if v == 0 {
		return 0, fmt.Errorf("row %q: version must be > 0", spec)
	}
	return v, nil
}

// parseStockCount reads ITEM@LOCATION=ON_HAND[:VERSION]; defaultVersion is
// used when the row names none.
func parseStockCount(spec string, defaultVersion uint64) (*stockdv1.StockCount, error) {
	key, value, ok := cutLast(spec, '=')
	if !ok {
		return nil, fmt.Errorf("row %q: want ITEM@LOCATION=ON_HAND[:VERSION]", spec)
	}
	item, location, err := parseCounter(spec, key)
	if err != nil {
		return nil, err
	}
	onHandText, versionText, hasVersion := strings.Cut(value, ":")
	if onHandText == "" {
		return nil, fmt.Errorf("row %q: missing on-hand count after =", spec)
	}
	onHand, err := strconv.ParseInt(onHandText, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("row %q: on-hand count %q is not a whole number", spec, onHandText)
	}
	version := defaultVersion
	if hasVersion {
		if version, err = parseVersion(spec, versionText); err != nil {
			return nil, err
		}
	}
	return &stockdv1.StockCount{Item: item, Location: location, OnHandBaseUnits: onHand, Version: version}, nil
}

// parseStockAdjustment reads ITEM@LOCATION=+DELTA or -DELTA, optionally
// followed by ":VERSION" (the ERP's version after the delta). The sign is
// required so that an adjustment is never mistaken for an absolute count.
func parseStockAdjustment(spec string) (*stockdv1.StockAdjustment, error) {
	key, value, ok := cutLast(spec, '=')
	if !ok {
		return nil, fmt.Errorf("row %q: want ITEM@LOCATION=+DELTA or ITEM@LOCATION=-DELTA", spec)
	}
	item, location, err := parseCounter(spec, key)
	if err != nil {
		return nil, err
	}
	deltaText, versionText, hasVersion := strings.Cut(value, ":")
	if deltaText == "" {
		return nil, fmt.Errorf("row %q: missing delta after =", spec)
	}
	if deltaText[0] != '+' && deltaText[0] != '-' {
		return nil, fmt.Errorf("row %q: delta %q needs a sign, +N or -N (use stock set for an absolute count)", spec, deltaText)
	}
	delta, err := strconv.ParseInt(deltaText, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("row %q: delta %q is not a whole number", spec, deltaText)
	}
	if delta == 0 {
		return nil, fmt.Errorf("row %q: delta must be non-zero", spec)
	}
	var version uint64
	if hasVersion {
		if version, err = parseVersion(spec, versionText); err != nil {
			return nil, err
		}
	}
	return &stockdv1.StockAdjustment{Item: item, Location: location, DeltaBaseUnits: delta, Version: version}, nil
}

// cutLast splits s around the last sep.
func cutLast(s string, sep byte) (before, after string, found bool) {
	i := strings.LastIndexByte(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random delta id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// rowAnswer is the server's answer to row i of a batch, or a stand-in saying
// there was none (a server that answered fewer rows than it was sent).
func rowAnswer(rows []*stockdv1.RowResult, i int) *stockdv1.RowResult {
	if i < len(rows) {
		return rows[i]
	}
	return &stockdv1.RowResult{Reason: "no answer from server"}
}
