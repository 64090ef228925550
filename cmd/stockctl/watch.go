package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
)

const watchSynopsis = "--channel C [--from-revision N] [--prefix P] [--limit N] [SKU...]"

// watchColumns are the columns of watch; rows are written as they come.
var watchColumns = []struct {
	name  string
	width int
}{
	{"REVISION", 10}, {"SKU", 20}, {"AVAILABLE", 10}, {"MOD_REVISION", 12}, {"LOCATIONS", 0},
}

// watch prints a channel's availability events as they come: the state
// first (rows marked by a "resync" note on stderr), then each SKU whose
// figure moves, with the progress mark on stderr to resume from
// (--from-revision). With --json each WatchResponse is one protojson line.
// It runs until interrupted (status 0), --limit events were printed, or the
// server ends the stream. Not bounded by --timeout.
func (s *session) watch(ctx context.Context, args []string) error {
	fs := s.newFlags("watch", watchSynopsis)
	channel := fs.String("channel", "", "the channel whose availability to watch (required)")
	from := fs.Uint64("from-revision", 0, "resume after this revision (a mark printed before) instead of starting with the state")
	prefix := fs.String("prefix", "", "watch the SKUs starting with `P` (instead of SKU arguments)")
	limit := fs.Uint64("limit", 0, "stop after N events (0: no limit)")
	skus, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := requireFlags(fs, watchSynopsis, "channel"); err != nil {
		return err
	}
	if *prefix != "" && len(skus) > 0 {
		return usagef(fs, watchSynopsis, "give --prefix or SKU arguments, not both")
	}
	c, err := s.inventory()
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Watch(sctx, &stockdv1.WatchRequest{Channel: *channel, Skus: skus, SkuPrefix: *prefix, FromRevision: *from})
	if err != nil {
		return err
	}
	if !s.opts.json {
		if err := writeWatchRow(s.stdout, headerOf()); err != nil {
			return err
		}
	}
	var n, mark uint64
	defer func() {
		if mark != 0 {
			fmt.Fprintf(s.stderr, "last revision %d (resume: --from-revision %d)\n", mark, mark)
		}
	}()
	for *limit == 0 || n < *limit {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil && status.Code(err) == codes.Canceled {
				return nil // interrupted
			}
			return err
		}
		if m.GetRevision() != 0 {
			mark = m.GetRevision()
		}
		if s.opts.json {
			if err := printJSON(s.stdout, m); err != nil {
				return err
			}
			n += uint64(len(m.GetEvents()))
			continue
		}
		if m.GetResync() {
			fmt.Fprintf(s.stderr, "resync (%s): the current state follows\n",
				strings.ToLower(strings.TrimPrefix(m.GetResyncReason().String(), "RESYNC_REASON_")))
		}
		for _, e := range m.GetEvents() {
			if err := writeWatchRow(s.stdout, watchRow(e)); err != nil {
				return err
			}
			n++
			if *limit != 0 && n >= *limit {
				break
			}
		}
	}
	return nil
}

func headerOf() []string {
	out := make([]string, len(watchColumns))
	for i, c := range watchColumns {
		out[i] = c.name
	}
	return out
}

// watchRow is one event: its revision, the SKU, units available, the
// figure's mod revision and LOCATION=AVAILABLE per location; a SKU that no
// longer resolves for the channel shows "removed" and no figure.
func watchRow(e *stockdv1.WatchEvent) []string {
	a := e.GetAvailability()
	if e.GetRemoved() {
		return []string{strconv.FormatUint(e.GetRevision(), 10), a.GetSku(), "removed", "-", "-"}
	}
	locs := make([]string, len(a.GetLocations()))
	for i, l := range a.GetLocations() {
		locs[i] = fmt.Sprintf("%s=%d", l.GetLocation(), l.GetAvailableSkuUnits())
	}
	loc := strings.Join(locs, ",")
	if loc == "" {
		loc = "-"
	}
	return []string{strconv.FormatUint(e.GetRevision(), 10), a.GetSku(), strconv.FormatInt(a.GetAvailableSkuUnits(), 10),
		strconv.FormatUint(a.GetModRevision(), 10), loc}
}

func writeWatchRow(w io.Writer, fields []string) error {
	var b strings.Builder
	for i, f := range fields {
		b.WriteString(f)
		if i == len(fields)-1 {
			break
		}
		b.WriteString(strings.Repeat(" ", max(0, watchColumns[i].width-len(f))+2))
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}
