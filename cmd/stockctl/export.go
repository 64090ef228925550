package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/stockd/stockd/api/stockdv1"
)

const exportSynopsis = "[--item I] [--location L] [--all-columns] [--min-revision N] [--linearizable] [FILE.csv]"

// exportCSV writes stockd's counters as CSV in the format import reads
// (item,location,on_hand,version with a header line), to FILE.csv or to
// stdout, sorted by item then location, all from one revision, which goes to
// stderr. A counter the ERP never versioned gets an empty version, so the
// file imports (import gives it the time of the import). --all-columns adds
// reserved and committed, which import does not read. A file is written
// through a temporary file beside it: it is complete or untouched.
func (s *session) exportCSV(ctx context.Context, args []string) error {
	fs := s.newFlags("export", exportSynopsis)
	f := exportFlags(fs)
	all := fs.Bool("all-columns", false, "add the reserved and committed columns (import does not read them)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 1 {
		return usagef(fs, exportSynopsis, "want at most one FILE.csv, got %d arguments", len(rest))
	}
	var rev uint64
	var n int
	write := func(w io.Writer) error {
		var err error
		rev, n, err = s.writeExport(ctx, w, f.request(), *all)
		return err
	}
	if len(rest) == 0 {
		err = write(s.stdout)
	} else {
		err = writeFileAtomically(rest[0], write)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(s.stderr, "export: %d counters at revision %d\n", n, rev)
	return nil
}

// exportFilter holds the flags export and reconcile share.
type exportFilter struct {
	item, location string
	minRevision    uint64
	linearizable   bool
}

func exportFlags(fs *flag.FlagSet) *exportFilter {
	f := &exportFilter{}
	fs.StringVar(&f.item, "item", "", "only this item")
	fs.StringVar(&f.location, "location", "", "only this location")
	fs.Uint64Var(&f.minRevision, "min-revision", 0, "wait until the node has applied revision `N`")
	fs.BoolVar(&f.linearizable, "linearizable", false, "reflect every write acknowledged before the call")
	return f
}

func (f *exportFilter) request() *stockdv1.ExportStockRequest {
	return &stockdv1.ExportStockRequest{
		Item: f.item, Location: f.location, MinRevision: f.minRevision, Linearizable: f.linearizable,
	}
}

// writeExport writes the header and one CSV line per counter to w and
// returns the revision and the number of counters.
func (s *session) writeExport(ctx context.Context, w io.Writer, req *stockdv1.ExportStockRequest, all bool) (uint64, int, error) {
	cw := csv.NewWriter(w)
	header := []string{"item", "location", "on_hand", "version"}
	if all {
		header = append(header, "reserved", "committed")
	}
	if err := cw.Write(header); err != nil {
		return 0, 0, err
	}
	rec := make([]string, len(header))
	n := 0
	rev, err := s.exportStock(ctx, req, func(c *stockdv1.StockCounter) error {
		n++
		rec[0], rec[1] = c.GetItem(), c.GetLocation()
		rec[2] = strconv.FormatInt(c.GetOnHandBaseUnits(), 10)
		rec[3] = ""
		if v := c.GetVersion(); v > 0 {
			rec[3] = strconv.FormatUint(v, 10)
		}
		if all {
			rec[4] = strconv.FormatInt(c.GetReservedBaseUnits(), 10)
			rec[5] = strconv.FormatInt(c.GetCommittedBaseUnits(), 10)
		}
		return cw.Write(rec)
	})
	if err != nil {
		return rev, n, err
	}
	cw.Flush()
	return rev, n, cw.Error()
}

// exportStock calls fn for every counter ExportStock streams, in order, and
// returns the revision they reflect. Every message must carry the same
// revision: the export is one cut.
func (s *session) exportStock(ctx context.Context, req *stockdv1.ExportStockRequest, fn func(*stockdv1.StockCounter) error) (uint64, error) {
	c, err := s.erp()
	if err != nil {
		return 0, err
	}
	// Cancelling on return releases the stream if fn fails mid-way.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.ExportStock(ctx, req)
	if err != nil {
		return 0, err
	}
	var rev uint64
	for msgs := 0; ; msgs++ {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if msgs == 0 {
				return 0, errors.New("export: the server sent no message")
			}
			return rev, nil
		}
		if err != nil {
			return rev, err
		}
		if msgs == 0 {
			rev = m.GetRevision()
		} else if m.GetRevision() != rev {
			return rev, fmt.Errorf("export: message %d at revision %d, want %d as the ones before", msgs, m.GetRevision(), rev)
		}
		for _, c := range m.GetCounters() {
			if err := fn(c); err != nil {
				return rev, err
			}
		}
	}
}
