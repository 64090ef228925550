package store_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// This file holds the command builders and stream helpers every test of the
// package shares. Builders return ready log commands; quantities are base
// units (every SKU is its own item with factor 1 today).

// t0 is the leader time of the first entry of every scenario, Unix ns.
const t0 int64 = 1_700_000_000_000_000_000

const maxUnits = math.MaxInt64

func loc(id string) *logv1.Command { return locNamed(id, id+" warehouse") }

func locNamed(id, name string) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_PutLocation{PutLocation: &logv1.PutLocation{Id: id, Name: name}}}
}

// channel declares channel id seeing locations in priority order, with a
// default buffer in base units.
func channel(id string, buffer int64, locations ...string) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_PutChannel{PutChannel: &logv1.PutChannel{
		Id: id, Locations: locations, DefaultBufferBaseUnits: buffer,
	}}}
}

func row(item, location string, onHand int64, version uint64) *logv1.StockCount {
	return &logv1.StockCount{Item: item, Location: location, OnHandBaseUnits: onHand, Version: version}
}

func setStock(rows ...*logv1.StockCount) *logv1.Command { return setStockMark(0, rows...) }

// setStockMark is an ERP count batch carrying the absorbed mark.
func setStockMark(mark uint64, rows ...*logv1.StockCount) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_SetStock{SetStock: &logv1.SetStock{Rows: rows, AbsorbedMark: mark}}}
}

func delta(id, item, location string, units int64, version uint64) *logv1.StockAdjustment {
	return &logv1.StockAdjustment{DeltaId: id, Item: item, Location: location, DeltaBaseUnits: units, Version: version}
}

func adjust(rows ...*logv1.StockAdjustment) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_AdjustStock{AdjustStock: &logv1.AdjustStock{Rows: rows}}}
}

// line is a reserve line without a location: the machine allocates it.
func line(sku string, qty int64) *logv1.ReserveLine {
	return &logv1.ReserveLine{Sku: sku, QuantitySkuUnits: qty}
}

// lineAt is a reserve line pinned to a location.
func lineAt(sku string, qty int64, location string) *logv1.ReserveLine {
	return &logv1.ReserveLine{Sku: sku, QuantitySkuUnits: qty, Location: location}
}

// reserve holds lines for channel ch under reservation id; ttl 0 means the default.
func reserve(ch, id string, ttl time.Duration, lines ...*logv1.ReserveLine) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_Reserve{Reserve: &logv1.Reserve{
		Channel: ch, ReservationId: id, Lines: lines, TtlNanos: int64(ttl),
	}}}
}

func confirm(ch, id, orderRef string) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_Confirm{Confirm: &logv1.Confirm{Channel: ch, ReservationId: id, OrderRef: orderRef}}}
}

func release(ch, id string) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_Release{Release: &logv1.Release{Channel: ch, ReservationId: id}}}
}

// buffer sets the buffer rule of item for channel ch at location; "" is a wildcard, 0 units removes the rule.
func buffer(item, ch, location string, units int64) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_SetBuffer{SetBuffer: &logv1.SetBuffer{
		Item: item, Channel: ch, Location: location, BufferBaseUnits: units,
	}}}
}

func tickCmd() *logv1.Command { return &logv1.Command{Kind: &logv1.Command_Tick{Tick: &logv1.Tick{}}} }

// entry wraps commands into one log entry at the current feature version.
func entry(ts int64, cmds ...*logv1.Command) *logv1.Entry {
	return &logv1.Entry{TimeUnixNanos: ts, FeatureVersion: store.FeatureVersion, Commands: cmds}
}

// records returns a machine's canonical snapshot record stream.
func records(m *store.Machine) ([][]byte, error) {
	var out [][]byte
	err := m.Snapshot().WriteRecords(func(rec []byte) error {
		out = append(out, bytes.Clone(rec))
		return nil
	})
	return out, err
}

// frame joins records, each prefixed by its length as a uvarint (the
// framing Digest hashes), into one byte string for fuzz corpora.
func frame(recs [][]byte) []byte {
	var b []byte
	for _, r := range recs {
		b = binary.AppendUvarint(b, uint64(len(r)))
		b = append(b, r...)
	}
	return b
}

var errBadFrame = errors.New("bad frame")

// unframe returns a Restore source over a framed stream. A bad length prefix
// is an error of the source; a length past the end yields the truncated
// remainder as the last record, so the decoder sees cut records too.
func unframe(b []byte) func() ([]byte, error) {
	return func() ([]byte, error) {
		if len(b) == 0 {
			return nil, io.EOF
		}
		n, k := binary.Uvarint(b)
		if k <= 0 {
			b = nil
			return nil, errBadFrame
		}
		b = b[k:]
		if n > uint64(len(b)) {
			rec := b
			b = nil
			return rec, nil
		}
		rec := b[:n]
		b = b[n:]
		return rec, nil
	}
}

// sliceSource returns a Restore source over records.
func sliceSource(recs [][]byte) func() ([]byte, error) {
	i := 0
	return func() ([]byte, error) {
		if i == len(recs) {
			return nil, io.EOF
		}
		i++
		return recs[i-1], nil
	}
}

// restored returns a fresh machine restored from m's snapshot.
func restored(m *store.Machine, cfg store.Config) (*store.Machine, error) {
	recs, err := records(m)
	if err != nil {
		return nil, err
	}
	out := store.New(cfg)
	if err := out.Restore(sliceSource(recs)); err != nil {
		return nil, err
	}
	return out, nil
}

// digest is the machine's digest as hex, or the error text.
func digest(m *store.Machine) string {
	d, err := m.Digest()
	if err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("%x", d)
}

// describe renders a result compactly for failure messages.
func describe(r store.Result) string {
	s := fmt.Sprintf("rev %d", r.Revision)
	if r.Err != nil {
		s += fmt.Sprintf(" err %q", r.Err.Error())
	}
	if r.Reservation != nil {
		s += fmt.Sprintf(" reservation %+v", *r.Reservation)
	}
	if r.Rows != nil {
		s += fmt.Sprintf(" rows %+v", r.Rows)
	}
	return s
}

// sentinelName names the sentinel an error unwraps to, for messages.
func sentinelName(err error) string {
	for _, s := range allSentinels {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	if err == nil {
		return "ok"
	}
	return "unclassified: " + err.Error()
}

var allSentinels = []error{
	store.ErrInvalid, store.ErrUnknownChannel, store.ErrUnknownLocation, store.ErrUnknownReservation,
	store.ErrInsufficientStock, store.ErrNotHeld, store.ErrLocationNotVisible, store.ErrIdempotencyConflict,
	store.ErrOverflow, store.ErrUnknownSKU, store.ErrRevisionChanged, store.ErrInUse, store.ErrUnknownLocationGroup,
	store.ErrNotConfirmed, store.ErrAbsorbed, store.ErrUnknownIncoming, store.ErrUnknownOrder,
}
