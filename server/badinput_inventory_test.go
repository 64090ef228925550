package server

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// idCases are the malformed values of an id field (1-256 bytes, no control
// characters): each is INVALID_ARGUMENT naming field, before the log.
func idCases(rpc, field string, call func(v string) func(context.Context, *badServer) error) []badCase {
	return []badCase{
		{rpc + " with an empty " + field + " is invalid", call(""), codes.InvalidArgument, field, beforeLog},
		{rpc + " with a 257-byte " + field + " is invalid", call(tooLong), codes.InvalidArgument, field, beforeLog},
		{rpc + " with a control character in " + field + " is invalid", call(ctrlID), codes.InvalidArgument, field, beforeLog},
		{rpc + " with a DEL in " + field + " is invalid", call(delID), codes.InvalidArgument, field, beforeLog},
	}
}

// textCases are the malformed values of an optional text field (empty
// allowed): too long and control characters.
func textCases(rpc, field string, call func(v string) func(context.Context, *badServer) error) []badCase {
	return []badCase{
		{rpc + " with a 257-byte " + field + " is invalid", call(tooLong), codes.InvalidArgument, field, beforeLog},
		{rpc + " with a control character in " + field + " is invalid", call(ctrlID), codes.InvalidArgument, field, beforeLog},
	}
}

func skuList(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("SKU-%04d", i)
	}
	return out
}

func reserveLines(n int) []*stockdv1.ReserveLine {
	out := make([]*stockdv1.ReserveLine, n)
	for i := range out {
		out[i] = &stockdv1.ReserveLine{Sku: "ROSE", Quantity: 1}
	}
	return out
}

// TestBadInputInventory covers every field of the unary Inventory RPCs.
func TestBadInputInventory(t *testing.T) {
	b := newBadServer(t)
	b.seedBad(t)
	applied := uint64(b.m.AppliedIndex())

	avail := func(edit func(r *stockdv1.GetAvailabilityRequest)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			r := &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE", "TULIP"}}
			edit(r)
			_, err := b.inv.GetAvailability(ctx, r)
			return err
		}
	}
	// reserve edits a valid one-line cart (1 ROSE on web) under a fresh
	// reservation id: a refusal decided in the log is remembered for its id
	// (I3), so every case needs its own.
	fresh := 0
	reserve := func(edit func(r *stockdv1.ReserveRequest)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			fresh++
			r := reserveReq(fmt.Sprintf("new-%d", fresh), 1)
			edit(r)
			_, err := b.inv.Reserve(ctx, r)
			return err
		}
	}
	confirm := func(edit func(r *stockdv1.ConfirmRequest)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			r := &stockdv1.ConfirmRequest{Channel: "web", ReservationId: "held", OrderRef: "SO-NEW"}
			edit(r)
			_, err := b.inv.Confirm(ctx, r)
			return err
		}
	}
	release := func(edit func(r *stockdv1.ReleaseRequest)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			r := &stockdv1.ReleaseRequest{Channel: "web", ReservationId: "held"}
			edit(r)
			_, err := b.inv.Release(ctx, r)
			return err
		}
	}
	partial := func(lines ...*stockdv1.ReleaseLine) func(r *stockdv1.ReleaseRequest) {
		return func(r *stockdv1.ReleaseRequest) { r.ReleaseId, r.Lines = "rel-1", lines }
	}
	getRes := func(edit func(r *stockdv1.GetReservationRequest)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			r := &stockdv1.GetReservationRequest{Channel: "web", ReservationId: "held"}
			edit(r)
			_, err := b.inv.GetReservation(ctx, r)
			return err
		}
	}
	extend := func(edit func(r *stockdv1.ExtendRequest)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			r := &stockdv1.ExtendRequest{Channel: "web", ReservationId: "held", ExtendId: "ext-1", Ttl: durationpb.New(time.Hour)}
			edit(r)
			_, err := b.inv.Extend(ctx, r)
			return err
		}
	}
	cancelOrder := func(edit func(r *stockdv1.CancelOrderRequest)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			r := &stockdv1.CancelOrderRequest{Channel: "web", ReservationId: "sold"}
			edit(r)
			_, err := b.inv.CancelOrder(ctx, r)
			return err
		}
	}
	listRes := func(edit func(r *stockdv1.ListReservationsRequest)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			r := &stockdv1.ListReservationsRequest{Channel: "web"}
			edit(r)
			_, err := b.inv.ListReservations(ctx, r)
			return err
		}
	}
	getOrder := func(edit func(r *stockdv1.GetOrderRequest)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			r := &stockdv1.GetOrderRequest{Channel: "web", OrderRef: soldRef}
			edit(r)
			_, err := b.inv.GetOrder(ctx, r)
			return err
		}
	}
	releaseAll := func(edit func(r *stockdv1.ReleaseAllRequest)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			r := &stockdv1.ReleaseAllRequest{Channel: "web", ReleaseAllId: "incident-1"}
			edit(r)
			_, err := b.inv.ReleaseAll(ctx, r)
			return err
		}
	}
	listChanges := func(edit func(r *stockdv1.ListChangesRequest)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			r := &stockdv1.ListChangesRequest{Channel: "web"}
			edit(r)
			_, err := b.inv.ListChanges(ctx, r)
			return err
		}
	}
	listAvail := func(edit func(r *stockdv1.ListAvailabilityRequest)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			r := &stockdv1.ListAvailabilityRequest{Channel: "web"}
			edit(r)
			_, err := b.inv.ListAvailability(ctx, r)
			return err
		}
	}

	var cases []badCase
	add := func(cs ...badCase) { cases = append(cases, cs...) }

	// GetAvailability
	add(idCases("GetAvailability", "channel", func(v string) func(context.Context, *badServer) error {
		return avail(func(r *stockdv1.GetAvailabilityRequest) { r.Channel = v })
	})...)
	add(idCases("GetAvailability", "skus[1]", func(v string) func(context.Context, *badServer) error {
		return avail(func(r *stockdv1.GetAvailabilityRequest) { r.Skus[1] = v })
	})...)
	add(
		badCase{"GetAvailability of an unknown channel is not found", avail(func(r *stockdv1.GetAvailabilityRequest) { r.Channel = "nope" }), codes.NotFound, "channel", beforeLog},
		badCase{"GetAvailability without skus is invalid", avail(func(r *stockdv1.GetAvailabilityRequest) { r.Skus = nil }), codes.InvalidArgument, "skus", beforeLog},
		badCase{"GetAvailability of 1,001 skus is invalid", avail(func(r *stockdv1.GetAvailabilityRequest) { r.Skus = skuList(1001) }), codes.InvalidArgument, "skus", beforeLog},
		badCase{"GetAvailability of an unmapped sku on a channel requiring mappings names it", avail(func(r *stockdv1.GetAvailabilityRequest) {
			r.Channel, r.Skus = "strict", []string{caseSKU, "ROSE"}
		}), codes.NotFound, "skus[1]", beforeLog},
		badCase{"GetAvailability at a revision not applied in time is unavailable", avail(func(r *stockdv1.GetAvailabilityRequest) { r.MinRevision = applied + 1000 }), codes.Unavailable, "min_revision", beforeLog},
		badCase{"GetAvailability of an unknown view is invalid", avail(func(r *stockdv1.GetAvailabilityRequest) { r.View = 7 }), codes.InvalidArgument, "view", beforeLog},
		badCase{"GetAvailability at the largest revision is unavailable", avail(func(r *stockdv1.GetAvailabilityRequest) { r.MinRevision = math.MaxUint64 }), codes.Unavailable, "min_revision", beforeLog},
	)

	// Reserve
	add(idCases("Reserve", "channel", func(v string) func(context.Context, *badServer) error {
		return reserve(func(r *stockdv1.ReserveRequest) { r.Channel = v })
	})...)
	add(idCases("Reserve", "reservation_id", func(v string) func(context.Context, *badServer) error {
		return reserve(func(r *stockdv1.ReserveRequest) { r.ReservationId = v })
	})...)
	add(idCases("Reserve", "lines[1].sku", func(v string) func(context.Context, *badServer) error {
		return reserve(func(r *stockdv1.ReserveRequest) {
			r.Lines = append(r.Lines, &stockdv1.ReserveLine{Sku: v, Quantity: 1})
		})
	})...)
	add(textCases("Reserve", "lines[1].location", func(v string) func(context.Context, *badServer) error {
		return reserve(func(r *stockdv1.ReserveRequest) {
			r.Lines = append(r.Lines, &stockdv1.ReserveLine{Sku: "TULIP", Quantity: 1, Location: v})
		})
	})...)
	line := func(l *stockdv1.ReserveLine) func(r *stockdv1.ReserveRequest) {
		return func(r *stockdv1.ReserveRequest) { r.Lines = []*stockdv1.ReserveLine{l} }
	}
	ttl := func(d *durationpb.Duration) func(r *stockdv1.ReserveRequest) {
		return func(r *stockdv1.ReserveRequest) { r.Ttl = d }
	}
	add(
		badCase{"Reserve on an unknown channel is not found", reserve(func(r *stockdv1.ReserveRequest) { r.Channel = "nope" }), codes.NotFound, "channel", inLog},
		badCase{"Reserve without lines is invalid", reserve(func(r *stockdv1.ReserveRequest) { r.Lines = nil }), codes.InvalidArgument, "lines", beforeLog},
		badCase{"Reserve of 1,001 lines is invalid", reserve(func(r *stockdv1.ReserveRequest) { r.Lines = reserveLines(1001) }), codes.InvalidArgument, "lines", beforeLog},
		badCase{"Reserve of a nil line is invalid", reserve(func(r *stockdv1.ReserveRequest) {
			r.Lines = append(r.Lines, &stockdv1.ReserveLine{})
		}), codes.InvalidArgument, "lines[1].sku", beforeLog},
		badCase{"Reserve of a zero quantity is invalid", reserve(line(&stockdv1.ReserveLine{Sku: "ROSE"})), codes.InvalidArgument, "lines[0].quantity", beforeLog},
		badCase{"Reserve of a negative quantity is invalid", reserve(line(&stockdv1.ReserveLine{Sku: "ROSE", Quantity: -1})), codes.InvalidArgument, "lines[0].quantity", beforeLog},
		badCase{"Reserve of the most negative quantity is invalid", reserve(line(&stockdv1.ReserveLine{Sku: "ROSE", Quantity: math.MinInt64})), codes.InvalidArgument, "lines[0].quantity", beforeLog},
		badCase{"Reserve of a quantity whose base units overflow is invalid", reserve(line(&stockdv1.ReserveLine{Sku: hugeSKU, Quantity: math.MaxInt64 / 1000})), codes.InvalidArgument, "lines[0].quantity", inLog},
		badCase{"Reserve of duplicate lines whose sum overflows is invalid", reserve(func(r *stockdv1.ReserveRequest) {
			r.Lines = []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: math.MaxInt64}, {Sku: "ROSE", Quantity: 1}}
		}), codes.InvalidArgument, "lines[1].quantity", inLog},
		badCase{"Reserve of duplicate lines that fit apart but not together is refused whole (I1)", reserve(func(r *stockdv1.ReserveRequest) {
			r.Lines = []*stockdv1.ReserveLine{{Sku: "TULIP", Quantity: 3, Location: "WH1"}, {Sku: "TULIP", Quantity: 3, Location: "WH1"}}
		}), codes.FailedPrecondition, "lines[1].quantity", inLog},
		badCase{"Reserve of more than is available is refused (I1)", reserve(line(&stockdv1.ReserveLine{Sku: "ROSE", Quantity: 1000})), codes.FailedPrecondition, "lines[0].quantity", inLog},
		badCase{"Reserve at an unknown location is not found", reserve(line(&stockdv1.ReserveLine{Sku: "ROSE", Quantity: 1, Location: "WH9"})), codes.NotFound, "lines[0].location", inLog},
		badCase{"Reserve at a location the channel does not see is refused", reserve(line(&stockdv1.ReserveLine{Sku: "ROSE", Quantity: 1, Location: "WH3"})), codes.FailedPrecondition, "lines[0].location", inLog},
		badCase{"Reserve of an unmapped sku on a channel requiring mappings is not found", reserve(func(r *stockdv1.ReserveRequest) {
			r.Channel, r.Lines = "strict", []*stockdv1.ReserveLine{{Sku: caseSKU, Quantity: 1}, {Sku: "ROSE", Quantity: 1}}
		}), codes.NotFound, "lines[1].sku", inLog},
		badCase{"Reserve with a moved mod_revision is aborted", reserve(line(&stockdv1.ReserveLine{Sku: "ROSE", Quantity: 1, ExpectedModRevision: 1})), codes.Aborted, "lines[0].expected_mod_revision", inLog},
		badCase{"Reserve with a mod_revision from the future is aborted", reserve(line(&stockdv1.ReserveLine{Sku: "ROSE", Quantity: 1, ExpectedModRevision: math.MaxUint64})), codes.Aborted, "lines[0].expected_mod_revision", inLog},
		badCase{"Reserve of a backorder beyond every incoming line is refused", reserve(line(&stockdv1.ReserveLine{Sku: "ROSE", Quantity: 1000, AllowBackorder: true})), codes.FailedPrecondition, "lines[0].quantity", inLog},
		badCase{"Reserve with a negative ttl is invalid", reserve(ttl(durationpb.New(-time.Second))), codes.InvalidArgument, "ttl", beforeLog},
		badCase{"Reserve with a ttl of 999ms is invalid", reserve(ttl(durationpb.New(999 * time.Millisecond))), codes.InvalidArgument, "ttl", beforeLog},
		badCase{"Reserve with a ttl of 24h and 1ns is invalid", reserve(ttl(durationpb.New(24*time.Hour + 1))), codes.InvalidArgument, "ttl", beforeLog},
		badCase{"Reserve with a ttl of nanos only beyond a second is invalid", reserve(ttl(&durationpb.Duration{Nanos: 1_000_000_000})), codes.InvalidArgument, "ttl", beforeLog},
		badCase{"Reserve with the largest ttl is invalid", reserve(ttl(&durationpb.Duration{Seconds: math.MaxInt64})), codes.InvalidArgument, "ttl", beforeLog},
		badCase{"Reserve reusing a live hold's id with another cart already exists", reserve(func(r *stockdv1.ReserveRequest) { r.ReservationId = "held" }), codes.AlreadyExists, "lines[0].quantity", inLog},
		badCase{"Reserve reusing a confirmed order's id with another cart already exists", reserve(func(r *stockdv1.ReserveRequest) { r.ReservationId = "sold" }), codes.AlreadyExists, "lines[0].quantity", inLog},
	)

	// Confirm
	add(idCases("Confirm", "channel", func(v string) func(context.Context, *badServer) error {
		return confirm(func(r *stockdv1.ConfirmRequest) { r.Channel = v })
	})...)
	add(idCases("Confirm", "reservation_id", func(v string) func(context.Context, *badServer) error {
		return confirm(func(r *stockdv1.ConfirmRequest) { r.ReservationId = v })
	})...)
	add(idCases("Confirm", "order_ref", func(v string) func(context.Context, *badServer) error {
		return confirm(func(r *stockdv1.ConfirmRequest) { r.OrderRef = v })
	})...)
	add(
		badCase{"Confirm on an unknown channel is not found", confirm(func(r *stockdv1.ConfirmRequest) { r.Channel = "nope" }), codes.NotFound, "reservation_id", inLog},
		badCase{"Confirm of an unknown reservation is not found", confirm(func(r *stockdv1.ConfirmRequest) { r.ReservationId = "ghost" }), codes.NotFound, "reservation_id", inLog},
		badCase{"Confirm of a released hold is refused", confirm(func(r *stockdv1.ConfirmRequest) { r.ReservationId = "gone" }), codes.FailedPrecondition, "reservation_id", inLog},
		badCase{"Confirm of an expired hold is refused", confirm(func(r *stockdv1.ConfirmRequest) { r.ReservationId = "late" }), codes.FailedPrecondition, "reservation_id", inLog},
		badCase{"Confirm of a confirmed order under another order_ref already exists", confirm(func(r *stockdv1.ConfirmRequest) { r.ReservationId = "sold" }), codes.AlreadyExists, "order_ref", inLog},
	)

	// Release
	add(idCases("Release", "channel", func(v string) func(context.Context, *badServer) error {
		return release(func(r *stockdv1.ReleaseRequest) { r.Channel = v })
	})...)
	add(idCases("Release", "reservation_id", func(v string) func(context.Context, *badServer) error {
		return release(func(r *stockdv1.ReleaseRequest) { r.ReservationId = v })
	})...)
	add(idCases("Release of some lines", "release_id", func(v string) func(context.Context, *badServer) error {
		return release(func(r *stockdv1.ReleaseRequest) {
			r.ReleaseId, r.Lines = v, []*stockdv1.ReleaseLine{{Line: 0, Quantity: 1}}
		})
	})...)
	add(textCases("Release of a whole hold", "release_id", func(v string) func(context.Context, *badServer) error {
		return release(func(r *stockdv1.ReleaseRequest) { r.ReleaseId = v })
	})...)
	manyRelease := make([]*stockdv1.ReleaseLine, store.MaxLines+1)
	for i := range manyRelease {
		manyRelease[i] = &stockdv1.ReleaseLine{Quantity: 1}
	}
	add(
		badCase{"Release on an unknown channel is not found", release(func(r *stockdv1.ReleaseRequest) { r.Channel = "nope" }), codes.NotFound, "reservation_id", inLog},
		badCase{"Release of an unknown reservation is not found", release(func(r *stockdv1.ReleaseRequest) { r.ReservationId = "ghost" }), codes.NotFound, "reservation_id", inLog},
		badCase{"Release of a confirmed order is refused", release(func(r *stockdv1.ReleaseRequest) { r.ReservationId = "sold" }), codes.FailedPrecondition, "reservation_id", inLog},
		badCase{"Release of 1,001 lines is invalid", release(partial(manyRelease...)), codes.InvalidArgument, "lines", beforeLog},
		badCase{"Release of a zero quantity is invalid", release(partial(&stockdv1.ReleaseLine{Line: 0})), codes.InvalidArgument, "lines[0].quantity", beforeLog},
		badCase{"Release of a negative quantity is invalid", release(partial(&stockdv1.ReleaseLine{Line: 0, Quantity: 1}, &stockdv1.ReleaseLine{Line: 0, Quantity: -1})), codes.InvalidArgument, "lines[1].quantity", beforeLog},
		badCase{"Release of a line the hold does not have is invalid", release(partial(&stockdv1.ReleaseLine{Line: 1, Quantity: 1})), codes.InvalidArgument, "lines[0].line", inLog},
		badCase{"Release of the largest line index is invalid", release(partial(&stockdv1.ReleaseLine{Line: math.MaxUint32, Quantity: 1})), codes.InvalidArgument, "lines[0].line", inLog},
		badCase{"Release of more than the line holds is invalid", release(partial(&stockdv1.ReleaseLine{Line: 0, Quantity: 3})), codes.InvalidArgument, "lines[0].quantity", inLog},
		badCase{"Release of duplicate lines that together exceed the hold is invalid", release(partial(&stockdv1.ReleaseLine{Line: 0, Quantity: 2}, &stockdv1.ReleaseLine{Line: 0, Quantity: 1})), codes.InvalidArgument, "lines[1].quantity", inLog},
		badCase{"Release of some lines of a confirmed order is refused", release(func(r *stockdv1.ReleaseRequest) {
			r.ReservationId = "sold"
			partial(&stockdv1.ReleaseLine{Line: 0, Quantity: 1})(r)
		}), codes.FailedPrecondition, "reservation_id", inLog},
	)

	// GetReservation
	add(idCases("GetReservation", "channel", func(v string) func(context.Context, *badServer) error {
		return getRes(func(r *stockdv1.GetReservationRequest) { r.Channel = v })
	})...)
	add(idCases("GetReservation", "reservation_id", func(v string) func(context.Context, *badServer) error {
		return getRes(func(r *stockdv1.GetReservationRequest) { r.ReservationId = v })
	})...)
	add(
		badCase{"GetReservation of an unknown reservation is not found", getRes(func(r *stockdv1.GetReservationRequest) { r.ReservationId = "ghost" }), codes.NotFound, "reservation_id", beforeLog},
		badCase{"GetReservation on an unknown channel is not found", getRes(func(r *stockdv1.GetReservationRequest) { r.Channel = "nope" }), codes.NotFound, "reservation_id", beforeLog},
		badCase{"GetReservation at a revision not applied in time is unavailable", getRes(func(r *stockdv1.GetReservationRequest) { r.MinRevision = applied + 1000 }), codes.Unavailable, "min_revision", beforeLog},
	)

	// Extend
	add(idCases("Extend", "channel", func(v string) func(context.Context, *badServer) error {
		return extend(func(r *stockdv1.ExtendRequest) { r.Channel = v })
	})...)
	add(idCases("Extend", "reservation_id", func(v string) func(context.Context, *badServer) error {
		return extend(func(r *stockdv1.ExtendRequest) { r.ReservationId = v })
	})...)
	add(idCases("Extend", "extend_id", func(v string) func(context.Context, *badServer) error {
		return extend(func(r *stockdv1.ExtendRequest) { r.ExtendId = v })
	})...)
	extTTL := func(d *durationpb.Duration) func(context.Context, *badServer) error {
		return extend(func(r *stockdv1.ExtendRequest) { r.Ttl = d })
	}
	add(
		badCase{"Extend without ttl is invalid", extTTL(nil), codes.InvalidArgument, "ttl", beforeLog},
		badCase{"Extend with a zero ttl is invalid", extTTL(durationpb.New(0)), codes.InvalidArgument, "ttl", beforeLog},
		badCase{"Extend with a negative ttl is invalid", extTTL(durationpb.New(-time.Hour)), codes.InvalidArgument, "ttl", beforeLog},
		badCase{"Extend with a ttl under 1s is invalid", extTTL(durationpb.New(time.Millisecond)), codes.InvalidArgument, "ttl", beforeLog},
		badCase{"Extend with a ttl over 24h is invalid", extTTL(durationpb.New(24*time.Hour + time.Second)), codes.InvalidArgument, "ttl", beforeLog},
		badCase{"Extend with a non-normalised ttl is invalid", extTTL(&durationpb.Duration{Seconds: 10, Nanos: -5}), codes.InvalidArgument, "ttl", beforeLog},
		badCase{"Extend of an unknown reservation is not found", extend(func(r *stockdv1.ExtendRequest) { r.ReservationId = "ghost" }), codes.NotFound, "reservation_id", inLog},
		badCase{"Extend of a confirmed order is refused", extend(func(r *stockdv1.ExtendRequest) { r.ReservationId = "sold" }), codes.FailedPrecondition, "reservation_id", inLog},
		badCase{"Extend of an expired hold is refused", extend(func(r *stockdv1.ExtendRequest) { r.ReservationId = "late" }), codes.FailedPrecondition, "reservation_id", inLog},
		badCase{"Extend of a released hold is refused", extend(func(r *stockdv1.ExtendRequest) { r.ReservationId = "gone" }), codes.FailedPrecondition, "reservation_id", inLog},
	)

	// CancelOrder
	add(idCases("CancelOrder", "channel", func(v string) func(context.Context, *badServer) error {
		return cancelOrder(func(r *stockdv1.CancelOrderRequest) { r.Channel = v })
	})...)
	add(idCases("CancelOrder", "reservation_id", func(v string) func(context.Context, *badServer) error {
		return cancelOrder(func(r *stockdv1.CancelOrderRequest) { r.ReservationId = v })
	})...)
	add(
		badCase{"CancelOrder of an unknown reservation is not found", cancelOrder(func(r *stockdv1.CancelOrderRequest) { r.ReservationId = "ghost" }), codes.NotFound, "reservation_id", inLog},
		badCase{"CancelOrder of a live hold is refused", cancelOrder(func(r *stockdv1.CancelOrderRequest) { r.ReservationId = "held" }), codes.FailedPrecondition, "reservation_id", inLog},
		badCase{"CancelOrder of a released hold is refused", cancelOrder(func(r *stockdv1.CancelOrderRequest) { r.ReservationId = "gone" }), codes.FailedPrecondition, "reservation_id", inLog},
		badCase{"CancelOrder of an order the ERP absorbed is refused", cancelOrder(func(r *stockdv1.CancelOrderRequest) { r.ReservationId = "absorbed" }), codes.FailedPrecondition, "reservation_id", inLog},
	)

	// ListReservations
	add(idCases("ListReservations", "channel", func(v string) func(context.Context, *badServer) error {
		return listRes(func(r *stockdv1.ListReservationsRequest) { r.Channel = v })
	})...)
	add(
		badCase{"ListReservations in an unknown state is invalid", listRes(func(r *stockdv1.ListReservationsRequest) { r.State = 99 }), codes.InvalidArgument, "state", beforeLog},
		badCase{"ListReservations in a negative state is invalid", listRes(func(r *stockdv1.ListReservationsRequest) { r.State = -1 }), codes.InvalidArgument, "state", beforeLog},
		badCase{"ListReservations expiring within a negative window is invalid", listRes(func(r *stockdv1.ListReservationsRequest) { r.ExpiringWithin = durationpb.New(-time.Second) }), codes.InvalidArgument, "expiring_within", beforeLog},
		badCase{"ListReservations expiring within the largest window is invalid", listRes(func(r *stockdv1.ListReservationsRequest) {
			r.ExpiringWithin = &durationpb.Duration{Seconds: math.MaxInt64}
		}), codes.InvalidArgument, "expiring_within", beforeLog},
		badCase{"ListReservations of 1,001 per page is invalid", listRes(func(r *stockdv1.ListReservationsRequest) { r.PageSize = 1001 }), codes.InvalidArgument, "page_size", beforeLog},
		badCase{"ListReservations with a token that is not base64 is invalid", listRes(func(r *stockdv1.ListReservationsRequest) { r.PageToken = "!!" }), codes.InvalidArgument, "page_token", beforeLog},
		badCase{"ListReservations with a token over 256 bytes is invalid", listRes(func(r *stockdv1.ListReservationsRequest) { r.PageToken = tooLong + tooLong }), codes.InvalidArgument, "page_token", beforeLog},
		badCase{"ListReservations on an unknown channel is not found", listRes(func(r *stockdv1.ListReservationsRequest) { r.Channel = "nope" }), codes.NotFound, "channel", beforeLog},
		badCase{"ListReservations at a revision not applied in time is unavailable", listRes(func(r *stockdv1.ListReservationsRequest) { r.MinRevision = applied + 1000 }), codes.Unavailable, "min_revision", beforeLog},
	)

	// GetOrder
	add(idCases("GetOrder", "channel", func(v string) func(context.Context, *badServer) error {
		return getOrder(func(r *stockdv1.GetOrderRequest) { r.Channel = v })
	})...)
	add(idCases("GetOrder", "order_ref", func(v string) func(context.Context, *badServer) error {
		return getOrder(func(r *stockdv1.GetOrderRequest) { r.OrderRef = v })
	})...)
	add(
		badCase{"GetOrder of an unknown order_ref is not found", getOrder(func(r *stockdv1.GetOrderRequest) { r.OrderRef = "SO-404" }), codes.NotFound, "order_ref", beforeLog},
		badCase{"GetOrder of another channel's order is not found", getOrder(func(r *stockdv1.GetOrderRequest) { r.Channel = "grp" }), codes.NotFound, "order_ref", beforeLog},
		badCase{"GetOrder at a revision not applied in time is unavailable", getOrder(func(r *stockdv1.GetOrderRequest) { r.MinRevision = applied + 1000 }), codes.Unavailable, "min_revision", beforeLog},
	)

	// ReleaseAll
	add(idCases("ReleaseAll", "channel", func(v string) func(context.Context, *badServer) error {
		return releaseAll(func(r *stockdv1.ReleaseAllRequest) { r.Channel = v })
	})...)
	add(idCases("ReleaseAll", "release_all_id", func(v string) func(context.Context, *badServer) error {
		return releaseAll(func(r *stockdv1.ReleaseAllRequest) { r.ReleaseAllId = v })
	})...)
	add(badCase{"ReleaseAll on an unknown channel is not found", releaseAll(func(r *stockdv1.ReleaseAllRequest) { r.Channel = "nope" }), codes.NotFound, "channel", inLog})

	// ListChanges
	add(idCases("ListChanges", "channel", func(v string) func(context.Context, *badServer) error {
		return listChanges(func(r *stockdv1.ListChangesRequest) { r.Channel = v })
	})...)
	add(
		badCase{"ListChanges on an unknown channel is not found", listChanges(func(r *stockdv1.ListChangesRequest) { r.Channel = "nope" }), codes.NotFound, "channel", beforeLog},
		badCase{"ListChanges of 10,001 per page is invalid", listChanges(func(r *stockdv1.ListChangesRequest) { r.PageSize = 10001 }), codes.InvalidArgument, "page_size", beforeLog},
		badCase{"ListChanges with a token without revision is invalid", listChanges(func(r *stockdv1.ListChangesRequest) { r.PageToken = "ROSE" }), codes.InvalidArgument, "page_token", beforeLog},
		badCase{"ListChanges with a token at revision 0 is invalid", listChanges(func(r *stockdv1.ListChangesRequest) { r.PageToken = "0:ROSE" }), codes.InvalidArgument, "page_token", beforeLog},
		badCase{"ListChanges with a token before since_revision is invalid", listChanges(func(r *stockdv1.ListChangesRequest) {
			r.SinceRevision, r.PageToken = 5, "4:ROSE"
		}), codes.InvalidArgument, "page_token", beforeLog},
		badCase{"ListChanges since a revision not applied in time is unavailable", listChanges(func(r *stockdv1.ListChangesRequest) { r.SinceRevision = applied + 1000 }), codes.Unavailable, "since_revision", beforeLog},
		badCase{"ListChanges at a revision not applied in time is unavailable", listChanges(func(r *stockdv1.ListChangesRequest) { r.MinRevision = applied + 1000 }), codes.Unavailable, "min_revision", beforeLog},
	)

	// ListAvailability
	add(idCases("ListAvailability", "channel", func(v string) func(context.Context, *badServer) error {
		return listAvail(func(r *stockdv1.ListAvailabilityRequest) { r.Channel = v })
	})...)
	add(
		badCase{"ListAvailability on an unknown channel is not found", listAvail(func(r *stockdv1.ListAvailabilityRequest) { r.Channel = "nope" }), codes.NotFound, "channel", beforeLog},
		badCase{"ListAvailability of 10,001 per page is invalid", listAvail(func(r *stockdv1.ListAvailabilityRequest) { r.PageSize = 10001 }), codes.InvalidArgument, "page_size", beforeLog},
		badCase{"ListAvailability with a token over 256 bytes is invalid", listAvail(func(r *stockdv1.ListAvailabilityRequest) { r.PageToken = tooLong }), codes.InvalidArgument, "page_token", beforeLog},
		badCase{"ListAvailability at a revision not applied in time is unavailable", listAvail(func(r *stockdv1.ListAvailabilityRequest) { r.MinRevision = applied + 1000 }), codes.Unavailable, "min_revision", beforeLog},
	)

	runBadCases(t, b, cases)
}
