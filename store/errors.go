package store

import (
	"errors"
	"strconv"
)

// Sentinel errors. Every refusal Apply or Validate returns unwraps to exactly one.
var (
	// ErrInvalid: the command is malformed (a field out of range, empty, too long).
	ErrInvalid = errors.New("invalid argument")
	// ErrUnknownChannel: the channel was never declared.
	ErrUnknownChannel = errors.New("unknown channel")
	// ErrUnknownLocation: the location was never declared.
	ErrUnknownLocation = errors.New("unknown location")
	// ErrUnknownReservation: no such reservation in the channel (or it was pruned).
	ErrUnknownReservation = errors.New("unknown reservation")
	// ErrInsufficientStock: a line cannot be held without overselling (I1).
	ErrInsufficientStock = errors.New("insufficient stock")
	// ErrNotHeld: the reservation is no longer held (expired, released or confirmed).
	ErrNotHeld = errors.New("reservation not held")
	// ErrLocationNotVisible: the location is declared but the channel does not sell from it.
	ErrLocationNotVisible = errors.New("location not visible to channel")
	// ErrIdempotencyConflict: the id was used before with another payload (I3).
	ErrIdempotencyConflict = errors.New("id reused with a different payload")
	// ErrOverflow: a quantity would leave the int64 range.
	ErrOverflow = errors.New("quantity overflow")
	// ErrUnknownSKU: the channel requires SKU mappings and the SKU has none,
	// or a SKU mapping to delete does not exist.
	ErrUnknownSKU = errors.New("unknown sku")
	// ErrRevisionChanged: compare-and-reserve lost, the SKU's figure moved
	// since the expected mod_revision; the Rejection carries the current one.
	ErrRevisionChanged = errors.New("revision changed")
	// ErrInUse: retiring a location, channel, group or SKU that live holds,
	// unabsorbed orders, channels or backorders still use.
	ErrInUse = errors.New("in use")
	// ErrUnknownLocationGroup: the location group was never declared.
	ErrUnknownLocationGroup = errors.New("unknown location group")
	// ErrNotConfirmed: CancelOrder of a reservation that is not a confirmed order.
	ErrNotConfirmed = errors.New("reservation not confirmed")
	// ErrAbsorbed: CancelOrder of an order the ERP has already absorbed.
	ErrAbsorbed = errors.New("order already absorbed by the ERP")
	// ErrUnknownIncoming: no such incoming (purchase-order) line.
	ErrUnknownIncoming = errors.New("unknown incoming line")
	// ErrUnknownOrder: no such order (by channel and order_ref, or by outbox sequence).
	ErrUnknownOrder = errors.New("unknown order")
)

// sentinels lists the sentinels in the order their kind numbers are
// persisted in snapshots; append only.
var sentinels = []error{
	nil,
	ErrInvalid,
	ErrUnknownChannel,
	ErrUnknownLocation,
	ErrUnknownReservation,
	ErrInsufficientStock,
	ErrNotHeld,
	ErrLocationNotVisible,
	ErrIdempotencyConflict,
	ErrOverflow,
	ErrUnknownSKU,
	ErrRevisionChanged,
	ErrInUse,
	ErrUnknownLocationGroup,
	ErrNotConfirmed,
	ErrAbsorbed,
	ErrUnknownIncoming,
	ErrUnknownOrder,
}

func kindOf(err error) uint32 {
	for i, s := range sentinels {
		if s != nil && errors.Is(err, s) {
			return uint32(i)
		}
	}
	return 0
}

func sentinelOf(kind uint32) error {
	if kind == 0 || int(kind) >= len(sentinels) {
		return nil
	}
	return sentinels[kind]
}

// Rejection is a refusal with its detail: the request field at fault (a proto
// field path such as "lines[2].quantity"), a reason, and for insufficient
// stock what was asked and what could be had in base units.
type Rejection struct {
	Kind      error
	Field     string
	Reason    string
	Requested Units
	Available Units
	// For ErrRevisionChanged: the SKU's current mod_revision and available
	// SKU units for the channel.
	ModRevision  Revision
	AvailableSKU Units
}

// Error reads "field: reason".
func (r *Rejection) Error() string {
	if r.Field == "" {
		return r.Reason
	}
	return r.Field + ": " + r.Reason
}

// Unwrap returns the sentinel.
func (r *Rejection) Unwrap() error { return r.Kind }

func reject(kind error, field, reason string) *Rejection {
	return &Rejection{Kind: kind, Field: field, Reason: reason}
}

func invalid(field, reason string) *Rejection { return reject(ErrInvalid, field, reason) }

func indexed(prefix string, i int, field string) string {
	return prefix + "[" + strconv.Itoa(i) + "]." + field
}
