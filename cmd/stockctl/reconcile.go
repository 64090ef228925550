package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"

	"github.com/stockd/stockd/api/stockdv1"
)

const reconcileSynopsis = "[--item I] [--location L] [--min-revision N] [--linearizable] FILE.csv"

// Kinds of drift, in the order the report lists them.
const (
	driftOnHand       = "on_hand"
	driftOnlyInFile   = "only_in_file"
	driftOnlyInStockd = "only_in_stockd"
)

// driftLine is one counter whose on_hand differs between the ERP's book and
// stockd. A side without the counter is null in JSON; its count is taken as
// 0 for the difference.
type driftLine struct {
	Kind     string `json:"kind"`
	Item     string `json:"item"`
	Location string `json:"location"`
	// ERPOnHand and StockdOnHand are base units as each side holds them
	// (negative kept).
	ERPOnHand    *int64 `json:"erp_on_hand"`
	StockdOnHand *int64 `json:"stockd_on_hand"`
	// Diff is stockd's on_hand minus the ERP's.
	Diff          int64   `json:"diff"`
	ERPVersion    *uint64 `json:"erp_version"`
	StockdVersion *uint64 `json:"stockd_version"`
	// StockdVersionIs compares stockd's version with the file's: older (an
	// update was lost or is still on its way), newer (the file is stale),
	// equal, or unknown (the file gives no version, or a side lacks the
	// counter).
	StockdVersionIs string `json:"stockd_version_is"`
}

// bookKey names a counter: (item, location).
type bookKey struct{ item, location string }

// reconcileSummary is the report's last line.
type reconcileSummary struct {
	Kind         string `json:"kind"` // "summary"
	Revision     uint64 `json:"revision"`
	Compared     int    `json:"compared"`
	Matching     int    `json:"matching"`
	Drifting     int    `json:"drifting"`
	OnlyInFile   int    `json:"only_in_file"`
	OnlyInStockd int    `json:"only_in_stockd"`
	// DriftUnits is the sum of |diff| over every drift line, base units.
	DriftUnits uint64 `json:"drift_units"`
}

// reconcile compares the ERP's book (a CSV in import's format) with
// stockd's counters, exported in one cut, and reports every counter whose
// on_hand differs: both figures and versions, counters only in the file and
// counters only in stockd, then a summary. A counter one side lacks counts as
// 0 there, so one the other side holds at 0 matches (a pruned counter, a
// line of zeros in the book). --item and --location narrow both sides.
// Drifting counters are counted apart from the ones only on one side. Exit
// status 0 without drift, 1 with drift (or on an error).
func (s *session) reconcile(ctx context.Context, args []string) error {
	fs := s.newFlags("reconcile", reconcileSynopsis)
	f := exportFlags(fs)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef(fs, reconcileSynopsis, "want exactly one FILE.csv, got %d arguments", len(rest))
	}
	book, err := readBook(rest[0], f)
	if err != nil {
		return err
	}
	var lines []driftLine
	sum := reconcileSummary{Kind: "summary"}
	sum.Revision, err = s.exportStock(ctx, f.request(), func(c *stockdv1.StockCounter) error {
		k := bookKey{c.GetItem(), c.GetLocation()}
		sum.Compared++
		row, inFile := book[k]
		delete(book, k)
		if l, drift := compareCounter(k, row, inFile, c); drift {
			lines = append(lines, l)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for k, row := range book {
		sum.Compared++
		if l, drift := compareCounter(k, row, true, nil); drift {
			lines = append(lines, l)
		}
	}
	order := map[string]int{driftOnHand: 0, driftOnlyInFile: 1, driftOnlyInStockd: 2}
	slices.SortFunc(lines, func(a, b driftLine) int {
		return cmp.Or(cmp.Compare(order[a.Kind], order[b.Kind]), cmp.Compare(a.Item, b.Item), cmp.Compare(a.Location, b.Location))
	})
	for _, l := range lines {
		switch l.Kind {
		case driftOnHand:
			sum.Drifting++
		case driftOnlyInFile:
			sum.OnlyInFile++
		case driftOnlyInStockd:
			sum.OnlyInStockd++
		}
		if u := absUnits(l.Diff); sum.DriftUnits > math.MaxUint64-u {
			sum.DriftUnits = math.MaxUint64
		} else {
			sum.DriftUnits += u
		}
	}
	sum.Matching = sum.Compared - len(lines)
	if s.opts.json {
		err = printDriftJSON(s.stdout, lines, sum)
	} else {
		err = printDrift(s.stdout, lines, sum)
	}
	if err != nil {
		return err
	}
	if len(lines) > 0 {
		return &exitError{msg: fmt.Sprintf("%d of %d counters drift (%d units)", len(lines), sum.Compared, sum.DriftUnits)}
	}
	return nil
}

// readBook reads the ERP's book, keeping the rows f selects. A counter named
// twice makes the book ambiguous and is refused. A row without a version
// has version 0 (unknown).
func readBook(name string, f *exportFilter) (map[bookKey]*stockdv1.StockCount, error) {
	file, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer file.Close() // read only: a close error changes nothing
	rows := newStockCSV(name, file, 0)
	book := map[bookKey]*stockdv1.StockCount{}
	lineOf := map[bookKey]int{}
	for {
		row, err := rows.next()
		if errors.Is(err, io.EOF) {
			return book, nil
		}
		if err != nil {
			return nil, err
		}
		if f.item != "" && row.GetItem() != f.item || f.location != "" && row.GetLocation() != f.location {
			continue
		}
		k := bookKey{row.GetItem(), row.GetLocation()}
		if first, ok := lineOf[k]; ok {
			return nil, fmt.Errorf("%s:%d: %s@%s is also on line %d", name, rows.line, k.item, k.location, first)
		}
		lineOf[k] = rows.line
		book[k] = row
	}
}

// compareCounter is the drift line of one counter, and whether it drifts:
// row is the book's (when inFile), c stockd's (nil when stockd lacks it).
func compareCounter(k bookKey, row *stockdv1.StockCount, inFile bool, c *stockdv1.StockCounter) (driftLine, bool) {
	l := driftLine{Item: k.item, Location: k.location, StockdVersionIs: "unknown"}
	var erp, stockd int64
	if inFile {
		erp = row.GetOnHandBaseUnits()
		l.ERPOnHand = &erp
		if v := row.GetVersion(); v > 0 {
			l.ERPVersion = &v
		}
	}
	if c != nil {
		stockd = c.GetOnHandBaseUnits()
		l.StockdOnHand = &stockd
		v := c.GetVersion()
		l.StockdVersion = &v
	}
	if erp == stockd {
		return l, false
	}
	switch {
	case !inFile:
		l.Kind = driftOnlyInStockd
	case c == nil:
		l.Kind = driftOnlyInFile
	default:
		l.Kind = driftOnHand
		if l.ERPVersion != nil {
			l.StockdVersionIs = [...]string{"older", "equal", "newer"}[cmp.Compare(*l.StockdVersion, *l.ERPVersion)+1]
		}
	}
	l.Diff = stockd - erp
	if erp < 0 && l.Diff < stockd || erp > 0 && l.Diff > stockd {
		// Far apart with opposite signs: saturate rather than wrap.
		l.Diff = math.MaxInt64
		if erp > 0 {
			l.Diff = math.MinInt64
		}
	}
	return l, true
}

func absUnits(d int64) uint64 {
	if d < 0 {
		return uint64(-(d + 1)) + 1
	}
	return uint64(d)
}

// printDrift writes one table row per drift line and the summary.
func printDrift(w io.Writer, lines []driftLine, sum reconcileSummary) error {
	if len(lines) > 0 {
		tw := newTable(w)
		fmt.Fprintln(tw, "DRIFT\tITEM\tLOCATION\tERP_ON_HAND\tSTOCKD_ON_HAND\tDIFF\tERP_VERSION\tSTOCKD_VERSION\tSTOCKD_VERSION_IS")
		for _, l := range lines {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%+d\t%s\t%s\t%s\n", l.Kind, l.Item, l.Location,
				optInt(l.ERPOnHand), optInt(l.StockdOnHand), l.Diff, optUint(l.ERPVersion), optUint(l.StockdVersion), l.StockdVersionIs)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "revision %d: %d counters compared, %d matching, %d drifting, %d only in file, %d only in stockd, %d units of drift\n",
		sum.Revision, sum.Compared, sum.Matching, sum.Drifting, sum.OnlyInFile, sum.OnlyInStockd, sum.DriftUnits)
	return err
}

// printDriftJSON writes one JSON object per drift line, then the summary.
func printDriftJSON(w io.Writer, lines []driftLine, sum reconcileSummary) error {
	enc := json.NewEncoder(w)
	for _, l := range lines {
		if err := enc.Encode(l); err != nil {
			return fmt.Errorf("encode drift line: %w", err)
		}
	}
	if err := enc.Encode(sum); err != nil {
		return fmt.Errorf("encode summary: %w", err)
	}
	return nil
}

func optInt(p *int64) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatInt(*p, 10)
}

func optUint(p *uint64) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatUint(*p, 10)
}
