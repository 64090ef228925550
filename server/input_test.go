package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
)

var (
	longID = strings.Repeat("x", 257)
	maxID  = strings.Repeat("x", 256)
)

// TestInputErrorsAreNeverProposed sends malformed requests over gRPC: each is
// INVALID_ARGUMENT naming the field, nothing is proposed, and the state's
// digest is unchanged.
func TestInputErrorsAreNeverProposed(t *testing.T) {
	type call func(ctx context.Context, h *harness) error
	reserve := func(req *stockdv1.ReserveRequest) call {
		return func(ctx context.Context, h *harness) error { _, err := h.inv.Reserve(ctx, req); return err }
	}
	lines := func(ls ...*stockdv1.ReserveLine) *stockdv1.ReserveRequest {
		return &stockdv1.ReserveRequest{Channel: "web", ReservationId: "cart-1", Lines: ls}
	}
	withTTL := func(d *durationpb.Duration) *stockdv1.ReserveRequest {
		r := reserveReq("cart-1", 1)
		r.Ttl = d
		return r
	}
	manyLines := make([]*stockdv1.ReserveLine, 1001)
	for i := range manyLines {
		manyLines[i] = &stockdv1.ReserveLine{Sku: fmt.Sprintf("SKU-%d", i), Quantity: 1}
	}
	read := func(req *stockdv1.GetAvailabilityRequest) call {
		return func(ctx context.Context, h *harness) error { _, err := h.inv.GetAvailability(ctx, req); return err }
	}
	manySKUs := make([]string, 1001)
	for i := range manySKUs {
		manySKUs[i] = fmt.Sprintf("SKU-%d", i)
	}
	setStock := func(req *stockdv1.SetStockRequest) call {
		return func(ctx context.Context, h *harness) error { _, err := h.erp.SetStock(ctx, req); return err }
	}
	manyRows := make([]*stockdv1.StockCount, 10001)
	for i := range manyRows {
		manyRows[i] = &stockdv1.StockCount{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 1, Version: uint64(i + 10)}
	}
	putChannel := func(c *stockdv1.Channel) call {
		return func(ctx context.Context, h *harness) error {
			_, err := h.adm.PutChannel(ctx, &stockdv1.PutChannelRequest{Channel: c})
			return err
		}
	}
	putLocation := func(l *stockdv1.Location) call {
		return func(ctx context.Context, h *harness) error {
			_, err := h.adm.PutLocation(ctx, &stockdv1.PutLocationRequest{Location: l})
			return err
		}
	}

	cases := []struct {
		name  string
		call  call
		field string
	}{
		{"a zero quantity", reserve(lines(&stockdv1.ReserveLine{Sku: "ROSE", Quantity: 0})), "lines[0].quantity"},
		{"a negative quantity on the second line", reserve(lines(
			&stockdv1.ReserveLine{Sku: "ROSE", Quantity: 1},
			&stockdv1.ReserveLine{Sku: "TULIP", Quantity: -3})), "lines[1].quantity"},
		{"an empty sku", reserve(lines(&stockdv1.ReserveLine{Sku: "", Quantity: 1})), "lines[0].sku"},
		{"a 257-byte sku", reserve(lines(&stockdv1.ReserveLine{Sku: longID, Quantity: 1})), "lines[0].sku"},
		{"a 257-byte location", reserve(lines(&stockdv1.ReserveLine{Sku: "ROSE", Quantity: 1, Location: longID})), "lines[0].location"},
		{"a control character in a sku", reserve(lines(&stockdv1.ReserveLine{Sku: "RO\nSE", Quantity: 1})), "lines[0].sku"},
		{"an empty reservation id", reserve(reserveReq("", 1)), "reservation_id"},
		{"a 257-byte reservation id", reserve(reserveReq(longID, 1)), "reservation_id"},
		{"an empty channel", reserve(&stockdv1.ReserveRequest{ReservationId: "cart-1", Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 1}}}), "channel"},
		{"a cart without lines", reserve(lines()), "lines"},
		{"more than 1,000 lines", reserve(lines(manyLines...)), "lines"},
		{"a negative ttl", reserve(withTTL(durationpb.New(-time.Minute))), "ttl"},
		{"a non-normalised ttl", reserve(withTTL(&durationpb.Duration{Seconds: 60, Nanos: -1})), "ttl"},
		{"a ttl under 1s", reserve(withTTL(durationpb.New(500 * time.Millisecond))), "ttl"},
		{"a ttl over 24h", reserve(withTTL(durationpb.New(25 * time.Hour))), "ttl"},
		{"a ttl too long for int64 nanoseconds", reserve(withTTL(&durationpb.Duration{Seconds: 300_000_000_000})), "ttl"},
		{"a confirm without order_ref", func(ctx context.Context, h *harness) error {
			_, err := h.inv.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: "web", ReservationId: "cart-1"})
			return err
		}, "order_ref"},
		{"a confirm with a 257-byte order_ref", func(ctx context.Context, h *harness) error {
			_, err := h.inv.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: "web", ReservationId: "cart-1", OrderRef: longID})
			return err
		}, "order_ref"},
		{"a release without reservation id", func(ctx context.Context, h *harness) error {
			_, err := h.inv.Release(ctx, &stockdv1.ReleaseRequest{Channel: "web"})
			return err
		}, "reservation_id"},
		{"a read without channel", read(&stockdv1.GetAvailabilityRequest{Skus: []string{"ROSE"}}), "channel"},
		{"a read without skus", read(&stockdv1.GetAvailabilityRequest{Channel: "web"}), "skus"},
		{"a read of more than 1,000 skus", read(&stockdv1.GetAvailabilityRequest{Channel: "web", Skus: manySKUs}), "skus"},
		{"a read with an empty fourth sku", read(&stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"A", "B", "C", ""}}), "skus[3]"},
		{"a read of a 257-byte sku", read(&stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{longID}}), "skus[0]"},
		{"a reservation read without id", func(ctx context.Context, h *harness) error {
			_, err := h.inv.GetReservation(ctx, &stockdv1.GetReservationRequest{Channel: "web"})
			return err
		}, "reservation_id"},
		{"a reservation read with a 257-byte channel", func(ctx context.Context, h *harness) error {
			_, err := h.inv.GetReservation(ctx, &stockdv1.GetReservationRequest{Channel: longID, ReservationId: "cart-1"})
			return err
		}, "channel"},
		{"a stock batch without rows", setStock(&stockdv1.SetStockRequest{}), "rows"},
		{"a stock batch of more than 10,000 rows", setStock(&stockdv1.SetStockRequest{Rows: manyRows}), "rows"},
		{"an adjustment batch without rows", func(ctx context.Context, h *harness) error {
			_, err := h.erp.AdjustStock(ctx, &stockdv1.AdjustStockRequest{})
			return err
		}, "rows"},
		{"a location without body", putLocation(nil), "location"},
		{"an empty location id", putLocation(&stockdv1.Location{Name: "North"}), "location.id"},
		{"a 257-byte location id", putLocation(&stockdv1.Location{Id: longID}), "location.id"},
		{"a 257-byte location name", putLocation(&stockdv1.Location{Id: "WH3", Name: longID}), "location.name"},
		{"a channel without locations", putChannel(&stockdv1.Channel{Id: "shop"}), "channel.locations"},
		{"a channel listing a location twice", putChannel(&stockdv1.Channel{Id: "shop", Locations: []string{"WH1", "WH1"}}), "channel.locations[1]"},
		{"a channel with a negative default buffer", putChannel(&stockdv1.Channel{Id: "shop", Locations: []string{"WH1"}, DefaultBufferBaseUnits: -1}), "channel.default_buffer_base_units"},
		{"a negative buffer", func(ctx context.Context, h *harness) error {
			_, err := h.adm.SetBuffer(ctx, &stockdv1.SetBufferRequest{Item: "ROSE", BufferBaseUnits: -1})
			return err
		}, "buffer_base_units"},
		{"a buffer without item", func(ctx context.Context, h *harness) error {
			_, err := h.adm.SetBuffer(ctx, &stockdv1.SetBufferRequest{BufferBaseUnits: 1})
			return err
		}, "item"},
	}
	h := newHarness(t)
	h.seed(t)
	for _, tc := range cases {
		t.Run(tc.name+" is refused before the log", func(t *testing.T) {
			before, proposals := h.digest(t), h.p.count()
			err := tc.call(testContext(t), h)
			checkStatus(t, tc.name, err, codes.InvalidArgument, tc.field)
			if got := h.p.count(); got != proposals {
				t.Errorf("%s: %d commands proposed, want none", tc.name, got-proposals)
			}
			if after := h.digest(t); after != before {
				t.Errorf("%s: state digest changed from %x to %x", tc.name, before[:8], after[:8])
			}
		})
	}
	// The limits themselves are accepted.
	ctx := testContext(t)
	if _, err := h.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: manySKUs[:1000]}); err != nil {
		t.Errorf("GetAvailability of 1,000 skus: %v, want OK", err)
	}
	if _, err := h.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{maxID}}); err != nil {
		t.Errorf("GetAvailability of a 256-byte sku: %v, want OK", err)
	}
}

// rawCodec sends and receives bytes as they are, under the proto codec's
// name, so a request can carry what proto.Marshal would refuse.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }

func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

// TestInvalidUTF8IsRefusedByGRPC pins grpc-go's behaviour: a request whose
// string field is not valid UTF-8 fails while decoding, with codes.Internal,
// before any handler runs (the one exception STYLE.md accepts).
func TestInvalidUTF8IsRefusedByGRPC(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	before, proposals := h.digest(t), h.p.count()
	avail, _ := h.available(t, "web", "ROSE")

	// ReserveRequest{channel: "web", reservation_id: "\xff\xfe", lines: [{sku: "ROSE", quantity: 1}]}
	var line []byte
	line = protowire.AppendTag(line, 1, protowire.BytesType)
	line = protowire.AppendString(line, "ROSE")
	line = protowire.AppendTag(line, 2, protowire.VarintType)
	line = protowire.AppendVarint(line, 1)
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendString(req, "web")
	req = protowire.AppendTag(req, 2, protowire.BytesType)
	req = protowire.AppendBytes(req, []byte{0xff, 0xfe})
	req = protowire.AppendTag(req, 3, protowire.BytesType)
	req = protowire.AppendBytes(req, line)

	var resp []byte
	err := h.conn.Invoke(testContext(t), stockdv1.Inventory_Reserve_FullMethodName, &req, &resp, grpc.ForceCodec(rawCodec{}))
	checkStatus(t, `Reserve(reservation_id "\xff\xfe")`, err, codes.Internal, "")
	if !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf(`Reserve(reservation_id "\xff\xfe"): got %q, want grpc-go's UTF-8 decoding error`, err)
	}
	if got := h.p.count(); got != proposals {
		t.Errorf(`Reserve(reservation_id "\xff\xfe"): %d commands proposed, want none`, got-proposals)
	}
	if after := h.digest(t); after != before {
		t.Errorf(`Reserve(reservation_id "\xff\xfe"): state digest changed`)
	}
	if got, _ := h.available(t, "web", "ROSE"); got != avail {
		t.Errorf(`ROSE on web after Reserve(reservation_id "\xff\xfe"): got %d, want %d`, got, avail)
	}

	// The same bytes with a valid id go through the raw codec and are held,
	// so the refusal above is about UTF-8 and nothing else.
	ok := append([]byte(nil), req[:5]...) // tag+len+"web"
	ok = protowire.AppendTag(ok, 2, protowire.BytesType)
	ok = protowire.AppendString(ok, "cart-utf8")
	ok = protowire.AppendTag(ok, 3, protowire.BytesType)
	ok = protowire.AppendBytes(ok, line)
	if err := h.conn.Invoke(testContext(t), stockdv1.Inventory_Reserve_FullMethodName, &ok, &resp, grpc.ForceCodec(rawCodec{})); err != nil {
		t.Fatalf("Reserve(reservation_id cart-utf8) by raw bytes: %v, want OK", err)
	}
	if got, _ := h.available(t, "web", "ROSE"); got != avail-1 {
		t.Errorf("ROSE on web after a raw reserve of 1: got %d, want %d", got, avail-1)
	}
}
