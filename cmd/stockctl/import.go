package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stockd/stockd/api/stockdv1"
)

const importSynopsis = "[--generation ID] [--prune] [--mark N] [--chunk 10000] FILE.csv"

// maxImportChunk is the server's limit of rows per Backfill message.
const maxImportChunk = 10000

// importCSV streams a CSV of item,location,on_hand[,version] rows through
// Erp.Backfill as one generation, in chunks, then commits it. A first line
// whose third field is not a whole number is a header and skipped; a row
// without a version gets the Unix time in nanoseconds at the start. Progress
// goes to stderr, one line per chunk; the summary to stdout. A malformed line
// stops the import before the commit, so nothing is applied. Exit status 1
// when a row was rejected.
func (s *session) importCSV(ctx context.Context, args []string) error {
	fs := s.newFlags("import", importSynopsis)
	gen := fs.String("generation", "", "generation id (default: import-UNIX_NANOS)")
	prune := fs.Bool("prune", false, "zero every counter the file does not name")
	mark := fs.Uint64("mark", 0, "absorbed mark: every order with outbox sequence <= N is reflected in these counts (0: leave it)")
	chunk := fs.Int("chunk", maxImportChunk, "rows per message, 1 to 10000")
	files, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(files) != 1 {
		return usagef(fs, importSynopsis, "want exactly one FILE.csv, got %d arguments", len(files))
	}
	if *chunk < 1 || *chunk > maxImportChunk {
		return usagef(fs, importSynopsis, "--chunk must be between 1 and %d, got %d", maxImportChunk, *chunk)
	}
	start := time.Now()
	version := uint64(start.UnixNano())
	if *gen == "" {
		*gen = "import-" + strconv.FormatUint(version, 10)
	}
	f, err := os.Open(files[0])
	if err != nil {
		return err
	}
	defer f.Close() // read only: a close error changes nothing
	var size int64
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	c, err := s.erp()
	if err != nil {
		return err
	}
	// Cancelling the stream on any local error breaks it: the server applies nothing.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Backfill(sctx)
	if err != nil {
		return err
	}
	rows := newStockCSV(files[0], f, version)
	var sent uint64
	batch := make([]*stockdv1.StockCount, 0, *chunk)
	flush := func() error {
		req := &stockdv1.BackfillRequest{Rows: batch}
		if sent == 0 {
			req.GenerationId = *gen
		}
		if err := stream.Send(req); err != nil {
			return backfillSendError(stream, err)
		}
		sent += uint64(len(batch))
		if size > 0 {
			fmt.Fprintf(s.stderr, "import: %d rows sent (%d%%)\n", sent, min(100, rows.offset()*100/size))
		} else {
			fmt.Fprintf(s.stderr, "import: %d rows sent\n", sent)
		}
		batch = make([]*stockdv1.StockCount, 0, *chunk)
		return nil
	}
	for {
		row, err := rows.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w (nothing was applied)", err)
		}
		batch = append(batch, row)
		if len(batch) == *chunk {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if len(batch) > 0 {
		if err := flush(); err != nil {
			return err
		}
	}
	if sent == 0 {
		return fmt.Errorf("%s: no rows (nothing was applied)", files[0])
	}
	if err := stream.Send(&stockdv1.BackfillRequest{Commit: true, Prune: *prune, AbsorbedMark: *mark}); err != nil {
		return backfillSendError(stream, err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	if s.opts.json {
		if err := printJSON(s.stdout, resp); err != nil {
			return err
		}
	} else {
		printImportSummary(s.stdout, resp, time.Since(start))
	}
	return rejectedError(resp.GetRejected(), int(min(resp.GetRows(), uint64(^uint(0)>>1))))
}

// backfillSendError is the server's answer when Send failed because the
// server already closed the stream (io.EOF), else err.
func backfillSendError(stream stockdv1.Erp_BackfillClient, err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := stream.CloseAndRecv(); rerr != nil {
			return rerr
		}
	}
	return err
}

// stockCSV reads the CSV format import loads and export writes:
// item,location,on_hand[,version] per line, fields trimmed of leading
// spaces. A first line whose third field is not a whole number is a header
// and skipped. Reconcile reads the ERP's book through it too.
type stockCSV struct {
	name    string
	r       *csv.Reader
	version uint64 // given to rows without one
	started bool   // a line was read: only the first may be a header
	line    int    // the line of the last row returned
}

// newStockCSV reads r, named name in errors; a row without a version gets
// version (0 leaves it unknown).
func newStockCSV(name string, r io.Reader, version uint64) *stockCSV {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	return &stockCSV{name: name, r: cr, version: version}
}

// next returns the next row, or io.EOF after the last. An error names the
// file and, for a malformed row, its line ("stock.csv:12: ...").
func (c *stockCSV) next() (*stockdv1.StockCount, error) {
	for {
		rec, err := c.r.Read()
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		first := !c.started
		c.started = true
		c.line, _ = c.r.FieldPos(0)
		if first && len(rec) >= 3 && !isInt(rec[2]) {
			continue // a header
		}
		row, err := parseCSVRow(rec, c.version)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", c.name, c.line, err)
		}
		return row, nil
	}
}

// offset is how many bytes of the input have been read.
func (c *stockCSV) offset() int64 { return c.r.InputOffset() }

// parseCSVRow reads item,location,on_hand[,version].
func parseCSVRow(rec []string, version uint64) (*stockdv1.StockCount, error) {
	if len(rec) != 3 && len(rec) != 4 {
		return nil, fmt.Errorf("want item,location,on_hand[,version], got %d fields", len(rec))
	}
	item, loc := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])
	if item == "" || loc == "" {
		return nil, errors.New("empty item or location")
	}
	onHand, err := strconv.ParseInt(strings.TrimSpace(rec[2]), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("on_hand %q is not a whole number", rec[2])
	}
	if len(rec) == 4 && strings.TrimSpace(rec[3]) != "" {
		version, err = strconv.ParseUint(strings.TrimSpace(rec[3]), 10, 64)
		if err != nil || version == 0 {
			return nil, fmt.Errorf("version %q is not a whole number > 0", rec[3])
		}
	}
	return &stockdv1.StockCount{Item: item, Location: loc, OnHandBaseUnits: onHand, Version: version}, nil
}

func isInt(s string) bool {
	_, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return err == nil
}

// printImportSummary prints the counts, the rejected rows the server
// returned (the first 100) and their count by reason.
func printImportSummary(w io.Writer, resp *stockdv1.BackfillResponse, took time.Duration) {
	fmt.Fprintf(w, "generation %s: %d rows in %s\n", resp.GetGenerationId(), resp.GetRows(), took.Round(time.Millisecond))
	fmt.Fprintf(w, "applied %d, ignored stale %d, rejected %d, pruned %d, revision %d\n",
		resp.GetApplied(), resp.GetIgnoredStale(), resp.GetRejected(), resp.GetPruned(), resp.GetRevision())
	rr := resp.GetRejectedRows()
	if len(rr) == 0 {
		return
	}
	byReason := map[string]int{}
	tw := newTable(w)
	fmt.Fprintln(tw, "ROW\tKEY\tREASON")
	for _, r := range rr {
		fmt.Fprintf(tw, "%d\t%s\t%s\n", r.GetRow(), r.GetKey(), r.GetReason())
		byReason[reasonField(r.GetReason())]++
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(w, "(table: %v)\n", err)
	}
	what := "rejected by reason"
	if uint32(len(rr)) < resp.GetRejected() {
		what += fmt.Sprintf(" (of the first %d shown)", len(rr))
	}
	fmt.Fprintln(w, what+":")
	for _, k := range slices.Sorted(maps.Keys(byReason)) {
		fmt.Fprintf(w, "  %s\t%d\n", k, byReason[k])
	}
}

// reasonField is the field a reason names without indexes:
// "rows[12].version: ..." -> "rows[].version".
func reasonField(reason string) string {
	field, _, ok := strings.Cut(reason, ": ")
	if !ok {
		return "other"
	}
	var b strings.Builder
	in := false
	for _, c := range field {
		switch {
		case c == '[':
			in = true
		case c == ']':
			in = false
		case in:
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}
