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

// printAvailability writes one row per SKU and one row per location the
// channel sees below it.
func printAvailability(w io.Writer, channel string, r *stockdv1.GetAvailabilityResponse) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "SKU\tITEM\tAVAILABLE\tLOCATION\tLOC_AVAILABLE\tON_HAND\tRESERVED\tCOMMITTED\tBUFFER\tOVERSOLD")
	for _, a := range r.GetSkus() {
		if !a.GetKnown() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t(no ERP count)\t\t\t\t\t\t\n", a.GetSku(), a.GetItem(), a.GetAvailableSkuUnits())
			continue
		}
		if len(a.GetLocations()) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%d\t(no locations)\t\t\t\t\t\t\n", a.GetSku(), a.GetItem(), a.GetAvailableSkuUnits())
			continue
		}
		for i, l := range a.GetLocations() {
			sku, item, avail := "", "", ""
			if i == 0 {
				sku, item, avail = a.GetSku(), a.GetItem(), fmt.Sprint(a.GetAvailableSkuUnits())
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", sku, item, avail,
				l.GetLocation(), l.GetAvailableSkuUnits(), l.GetOnHandBaseUnits(), l.GetReservedBaseUnits(),
				l.GetCommittedBaseUnits(), l.GetBufferBaseUnits(), l.GetOversoldBaseUnits())
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "channel %s, revision %d\n", channel, r.GetRevision())
	return err
}

// printReservation writes a reservation's header and one row per allocation.
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
	fmt.Fprintln(tw, "SKU\tITEM\tQUANTITY\tLOCATION\tSKU_UNITS\tBASE_UNITS")
	for _, l := range r.GetLines() {
		if len(l.GetAllocations()) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%d\t\t\t\n", l.GetSku(), l.GetItem(), l.GetQuantitySkuUnits())
			continue
		}
		for i, a := range l.GetAllocations() {
			sku, item, qty := "", "", ""
			if i == 0 {
				sku, item, qty = l.GetSku(), l.GetItem(), fmt.Sprint(l.GetQuantitySkuUnits())
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", sku, item, qty, a.GetLocation(), a.GetQuantitySkuUnits(), a.GetQuantityBaseUnits())
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
