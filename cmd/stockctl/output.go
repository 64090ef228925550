package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stockd/stockd/api/stockdv1"
)

// newFlags returns the flag set of one subcommand, with the global flags
// registered on it and its usage built from synopsis.
func (s *session) newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("stockctl "+name, flag.ContinueOnError)
	fs.SetOutput(s.stderr)
	fs.Usage = func() {
		fmt.Fprintf(s.stderr, "usage: stockctl %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	s.opts.register(fs)
	return fs
}

// parseArgs parses flags mixed with positional arguments ("avail SKU-1
// --channel web" works) and returns the positional ones. Everything after
// "--" is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return nil, err
			}
			return nil, &usageError{msg: err.Error(), printed: true}
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// usagef reports a command-line mistake for the subcommand fs belongs to.
func usagef(fs *flag.FlagSet, synopsis, format string, a ...any) error {
	name := strings.TrimPrefix(fs.Name(), "stockctl ")
	return &usageError{
		msg:      name + ": " + fmt.Sprintf(format, a...),
		synopsis: "stockctl " + name + " " + synopsis,
	}
}

// requireFlags reports the first of the named string flags left empty.
func requireFlags(fs *flag.FlagSet, synopsis string, names ...string) error {
	for _, n := range names {
		f := fs.Lookup(n)
		if f == nil || f.Value.String() == "" {
			return usagef(fs, synopsis, "--%s is required", n)
		}
	}
	return nil
}

// printJSON writes m as one line of protojson. Every field is printed, zeros
// included, so that scripts see "availableSkuUnits": "0" rather than no key.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// notef writes a human remark: to stdout in table mode, to stderr in JSON
// mode so that stdout stays one JSON object per line.
func (s *session) notef(format string, a ...any) {
	w := s.stdout
	if s.opts.json {
		w = s.stderr
	}
	fmt.Fprintf(w, format, a...)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// printAvailability writes one row per SKU (its item, pack factor and
// mod_revision) and one row per location the channel sees below it, then the
// incoming supply a backorder may still take, earliest first.
func printAvailability(w io.Writer, channel string, r *stockdv1.GetAvailabilityResponse) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "SKU\tITEM\tFACTOR\tMOD_REVISION\tAVAILABLE\tLOCATION\tLOC_AVAILABLE\tON_HAND\tRESERVED\tCOMMITTED\tBUFFER\tOVERSOLD")
	incoming := false
	for _, a := range r.GetSkus() {
		incoming = incoming || len(a.GetIncoming()) > 0
		head := fmt.Sprintf("%s\t%s\t%d\t%d\t%d", a.GetSku(), a.GetItem(), a.GetFactor(), a.GetModRevision(), a.GetAvailableSkuUnits())
		if !a.GetKnown() {
			fmt.Fprintf(tw, "%s\t(no ERP count)\t\t\t\t\t\t\n", head)
			continue
		}
		if len(a.GetLocations()) == 0 {
			fmt.Fprintf(tw, "%s\t(no locations)\t\t\t\t\t\t\n", head)
			continue
		}
		for i, l := range a.GetLocations() {
			if i > 0 {
				head = "\t\t\t\t"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", head,
				l.GetLocation(), l.GetAvailableSkuUnits(), l.GetOnHandBaseUnits(), l.GetReservedBaseUnits(),
				l.GetCommittedBaseUnits(), l.GetBufferBaseUnits(), l.GetOversoldBaseUnits())
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if incoming {
		fmt.Fprintln(w, "incoming supply a backorder may take:")
		tw = newTable(w)
		fmt.Fprintln(tw, "SKU\tPO_LINE\tLOCATION\tETA\tAVAILABLE")
		for _, a := range r.GetSkus() {
			for _, in := range a.GetIncoming() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", a.GetSku(), in.GetPoLineId(), in.GetLocation(),
					formatTimestamp(in.GetEta()), in.GetAvailableSkuUnits())
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "channel %s, revision %d\n", channel, r.GetRevision())
	return err
}

// printReservation writes a reservation's header and one row per allocation;
// LINE is the index release LINE=QTY names.
func printReservation(w io.Writer, r *stockdv1.Reservation, revision uint64) error {
	fmt.Fprintf(w, "reservation %s on channel %s: %s\n", r.GetReservationId(), r.GetChannel(), reservationState(r.GetState()))
	if r.GetCreatedAt() != nil {
		fmt.Fprintf(w, "created %s\n", formatTime(r.GetCreatedAt().AsTime()))
	}
	if r.GetExpiresAt() != nil && r.GetState() == stockdv1.ReservationState_RESERVATION_STATE_HELD {
		fmt.Fprintf(w, "expires %s\n", formatTime(r.GetExpiresAt().AsTime()))
	}
	if r.GetOrderRef() != "" {
		fmt.Fprintf(w, "order %s (outbox sequence %d)\n", r.GetOrderRef(), r.GetOrderSeq())
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "LINE\tSKU\tITEM\tQUANTITY\tFACTOR\tLOCATION\tSKU_UNITS\tBASE_UNITS\tPO_LINE\tPROMISED")
	for n, l := range r.GetLines() {
		head := fmt.Sprintf("%d\t%s\t%s\t%d\t%d", n, l.GetSku(), l.GetItem(), l.GetQuantitySkuUnits(), l.GetFactor())
		if len(l.GetAllocations()) == 0 {
			fmt.Fprintf(tw, "%s\t\t\t\t\t\n", head)
			continue
		}
		for i, a := range l.GetAllocations() {
			if i > 0 {
				head = "\t\t\t\t"
			}
			poLine, promised := "", ""
			if a.GetPoLineId() != "" {
				// A backorder waits for its incoming line; the line's own
				// promised date stands in if the allocation carries none.
				poLine, promised = a.GetPoLineId(), formatTimestamp(a.GetPromisedAt())
				if a.GetPromisedAt() == nil && l.GetPromisedAt() != nil {
					promised = formatTimestamp(l.GetPromisedAt())
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", head, a.GetLocation(), a.GetQuantitySkuUnits(),
				a.GetQuantityBaseUnits(), poLine, promised)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "revision %d\n", revision)
	return err
}

func reservationState(st stockdv1.ReservationState) string {
	return strings.TrimPrefix(st.String(), "RESERVATION_STATE_")
}

func rowStatus(st stockdv1.RowStatus) string {
	return strings.TrimPrefix(st.String(), "ROW_STATUS_")
}

func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// formatTimestamp is formatTime of a protobuf timestamp, "-" when unset.
func formatTimestamp(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return formatTime(ts.AsTime())
}
