package server

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/stockdv1"
)

// serveGateway serves NewGateway over conn on an httptest server, mounted at
// "/v1/" of an http.ServeMux as cmd/stockd mounts it, and returns its base URL.
func serveGateway(t *testing.T, conn *grpc.ClientConn) string {
	t.Helper()
	gw, err := NewGateway(testContext(t), conn)
	if err != nil {
		t.Fatalf("NewGateway: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", gw)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// gatewayCall sends one HTTP request (body is JSON, or empty for none) and
// returns the status and the raw body.
func gatewayCall(t *testing.T, method, u, body string, header http.Header) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(testContext(t), method, u, rd)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return resp.StatusCode, b
}

// gatewayOK is gatewayCall that wants 200 and decodes the body into dst.
func gatewayOK(t *testing.T, method, u, body string, dst proto.Message) {
	t.Helper()
	code, b := gatewayCall(t, method, u, body, nil)
	if code != http.StatusOK {
		t.Fatalf("%s %s %s: got HTTP %d %s, want 200", method, u, body, code, b)
	}
	if err := protojson.Unmarshal(b, dst); err != nil {
		t.Fatalf("%s %s %s: decode %s: %v", method, u, body, b, err)
	}
}

// gatewayError is the JSON error body: a google.rpc.Status.
type gatewayError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type            string `json:"@type"`
		FieldViolations []struct {
			Field string `json:"field"`
		} `json:"field_violations"`
	} `json:"details"`
}

// checkGatewayError fails unless the answer is HTTP wantHTTP with a JSON
// body carrying gRPC code want and, if field is set, a message naming it.
func checkGatewayError(t *testing.T, input string, code int, body []byte, wantHTTP int, want codes.Code, field string) gatewayError {
	t.Helper()
	var e gatewayError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%s: got body %s, want a JSON status: %v", input, body, err)
	}
	if code != wantHTTP || codes.Code(e.Code) != want {
		t.Fatalf("%s: got HTTP %d code %s %q, want HTTP %d code %s", input, code, codes.Code(e.Code), e.Message, wantHTTP, want)
	}
	if field != "" && !strings.HasPrefix(e.Message, field+": ") {
		t.Errorf("%s: got message %q, want it to name field %q", input, e.Message, field)
	}
	return e
}

func TestGatewayAnswersTheSameFiguresAsGRPC(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	// TULIP is counted at WH1 with nothing on hand: its figure is 0, and the
	// JSON must say so rather than leave the field out.
	h.setStock(t, "TULIP", "WH1", 0, 1)
	if _, err := h.inv.Reserve(testContext(t), reserveReq("r0", 4)); err != nil {
		t.Fatalf("Reserve(r0, 4): %v", err)
	}
	base := serveGateway(t, h.conn)

	want, err := h.inv.GetAvailability(testContext(t), &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE", "TULIP"}})
	if err != nil {
		t.Fatalf("GetAvailability over gRPC: %v", err)
	}
	if got := want.GetSkus()[0].GetAvailableSkuUnits(); got != 11 {
		t.Fatalf("GetAvailability(web, ROSE) over gRPC: got %d, want 11 (15 counted, 4 held)", got)
	}

	t.Run("GET with repeated skus gives the gRPC figures", func(t *testing.T) {
		var got stockdv1.GetAvailabilityResponse
		gatewayOK(t, http.MethodGet, base+"/v1/channels/web/availability:batchGet?skus=ROSE&skus=TULIP", "", &got)
		if !proto.Equal(want, &got) {
			t.Errorf("GET availability:batchGet: got %v, want %v (gRPC)", &got, want)
		}
	})
	t.Run("POST with a JSON body gives the gRPC figures", func(t *testing.T) {
		var got stockdv1.GetAvailabilityResponse
		gatewayOK(t, http.MethodPost, base+"/v1/channels/web/availability:batchGet", `{"skus":["ROSE","TULIP"]}`, &got)
		if !proto.Equal(want, &got) {
			t.Errorf("POST availability:batchGet: got %v, want %v (gRPC)", &got, want)
		}
	})
	t.Run("GET with view=AVAILABILITY_VIEW_BASIC gives the gRPC BASIC figures", func(t *testing.T) {
		basic, err := h.inv.GetAvailability(testContext(t), &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE", "TULIP"},
			View: stockdv1.AvailabilityView_AVAILABILITY_VIEW_BASIC})
		if err != nil {
			t.Fatalf("GetAvailability(BASIC) over gRPC: %v", err)
		}
		var got stockdv1.GetAvailabilityResponse
		gatewayOK(t, http.MethodGet, base+"/v1/channels/web/availability:batchGet?skus=ROSE&skus=TULIP&view=AVAILABILITY_VIEW_BASIC", "", &got)
		if !proto.Equal(basic, &got) || len(got.GetSkus()) != 2 || len(got.GetSkus()[0].GetLocations()) != 0 {
			t.Errorf("GET availability:batchGet?view=BASIC: got %v, want %v (gRPC), without locations", &got, basic)
		}
	})
	t.Run("JSON uses proto field names and writes zero figures", func(t *testing.T) {
		code, b := gatewayCall(t, http.MethodGet, base+"/v1/channels/web/availability:batchGet?skus=TULIP", "", nil)
		if code != http.StatusOK {
			t.Fatalf("GET TULIP: got HTTP %d %s, want 200", code, b)
		}
		var raw struct {
			Skus []map[string]any `json:"skus"`
		}
		if err := json.Unmarshal(b, &raw); err != nil || len(raw.Skus) != 1 {
			t.Fatalf("GET TULIP: got %s, want one SKU (%v)", b, err)
		}
		sku := raw.Skus[0]
		if got, ok := sku["available_sku_units"]; !ok || got != "0" {
			t.Errorf("GET TULIP: got available_sku_units %v (present %v) in %s, want \"0\"", got, ok, b)
		}
		if _, ok := sku["availableSkuUnits"]; ok {
			t.Errorf("GET TULIP: got lowerCamel key availableSkuUnits in %s, want proto names only", b)
		}
		locs, _ := sku["locations"].([]any)
		if len(locs) != 2 {
			t.Fatalf("GET TULIP: got locations %v, want WH1 and WH2", sku["locations"])
		}
		for _, l := range locs {
			if got := l.(map[string]any)["on_hand_base_units"]; got != "0" {
				t.Errorf("GET TULIP: got on_hand_base_units %v in %v, want \"0\"", got, l)
			}
		}
	})
	t.Run("ListAvailability pages the same figures", func(t *testing.T) {
		var got stockdv1.ListAvailabilityResponse
		gatewayOK(t, http.MethodGet, base+"/v1/channels/web/availability?page_size=10", "", &got)
		if len(got.GetSkus()) != 2 {
			t.Fatalf("GET availability?page_size=10: got %v, want ROSE and TULIP", &got)
		}
		for i, s := range got.GetSkus() {
			if !proto.Equal(want.GetSkus()[i], s) {
				t.Errorf("GET availability: got %v, want %v (GetAvailability over gRPC)", s, want.GetSkus()[i])
			}
		}
	})
}

func TestGatewayReserveIsSeenOverGRPC(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	base := serveGateway(t, h.conn)

	for _, id := range []string{"cart-1", "cart:2 a"} {
		var res stockdv1.ReserveResponse
		body := `{"reservation_id":"` + id + `","lines":[{"sku":"ROSE","quantity":"3"}],"ttl":"600s"}`
		gatewayOK(t, http.MethodPost, base+"/v1/channels/web/reservations", body, &res)
		if res.GetReservation().GetState() != stockdv1.ReservationState_RESERVATION_STATE_HELD {
			t.Fatalf("POST reservations %s: got %v, want a HELD reservation", body, &res)
		}

		got, err := h.inv.GetReservation(testContext(t), &stockdv1.GetReservationRequest{Channel: "web", ReservationId: id})
		if err != nil {
			t.Fatalf("GetReservation(web, %q) over gRPC after an HTTP reserve: %v", id, err)
		}
		if !proto.Equal(res.GetReservation(), got.GetReservation()) {
			t.Errorf("GetReservation(web, %q) over gRPC: got %v, want %v (the HTTP answer)", id, got.GetReservation(), res.GetReservation())
		}
		if q := got.GetReservation().GetLines()[0].GetQuantitySkuUnits(); q != 3 {
			t.Errorf("GetReservation(web, %q) over gRPC: got quantity %d, want 3", id, q)
		}

		// The id goes in the path percent-encoded.
		var viaHTTP stockdv1.GetReservationResponse
		gatewayOK(t, http.MethodGet, base+"/v1/channels/web/reservations/"+strings.ReplaceAll(url.PathEscape(id), ":", "%3A"), "", &viaHTTP)
		if !proto.Equal(got.GetReservation(), viaHTTP.GetReservation()) {
			t.Errorf("GET reservations/%s: got %v, want %v (gRPC)", id, viaHTTP.GetReservation(), got.GetReservation())
		}
	}
	if got, _ := h.available(t, "web", "ROSE"); got != 9 {
		t.Errorf("GetAvailability(web, ROSE) over gRPC after two HTTP holds of 3: got %d, want 9", got)
	}

	var conf stockdv1.ConfirmResponse
	gatewayOK(t, http.MethodPost, base+"/v1/channels/web/reservations/cart-1:confirm", `{"order_ref":"SO-1"}`, &conf)
	got, err := h.inv.GetReservation(testContext(t), &stockdv1.GetReservationRequest{Channel: "web", ReservationId: "cart-1"})
	if err != nil {
		t.Fatalf("GetReservation(web, cart-1) over gRPC after an HTTP confirm: %v", err)
	}
	if got.GetReservation().GetState() != stockdv1.ReservationState_RESERVATION_STATE_CONFIRMED || got.GetReservation().GetOrderRef() != "SO-1" {
		t.Errorf("GetReservation(web, cart-1) after POST :confirm SO-1: got %v, want CONFIRMED with order_ref SO-1", got.GetReservation())
	}
	var order stockdv1.GetOrderResponse
	gatewayOK(t, http.MethodGet, base+"/v1/channels/web/orders/SO-1", "", &order)
	if order.GetOrder().GetSeq() != got.GetReservation().GetOrderSeq() {
		t.Errorf("GET orders/SO-1: got %v, want seq %d", order.GetOrder(), got.GetReservation().GetOrderSeq())
	}
}

func TestGatewayRefusalsCarryCodeAndField(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	if _, err := h.adm.PutChannel(testContext(t), &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: "strict", Locations: []string{"WH1"}, RequireSkuMapping: true}}); err != nil {
		t.Fatalf("PutChannel(strict): %v", err)
	}
	base := serveGateway(t, h.conn)
	before := h.digest(t)

	t.Run("a zero quantity is 400 naming the field", func(t *testing.T) {
		body := `{"reservation_id":"r1","lines":[{"sku":"ROSE","quantity":"0"}]}`
		code, b := gatewayCall(t, http.MethodPost, base+"/v1/channels/web/reservations", body, nil)
		e := checkGatewayError(t, "POST reservations "+body, code, b, http.StatusBadRequest, codes.InvalidArgument, "lines[0].quantity")
		var fields []string
		for _, d := range e.Details {
			for _, v := range d.FieldViolations {
				fields = append(fields, v.Field)
			}
		}
		if len(fields) != 1 || fields[0] != "lines[0].quantity" {
			t.Errorf("POST reservations %s: got BadRequest fields %q in %s, want [lines[0].quantity]", body, fields, b)
		}
	})
	t.Run("an unknown JSON field is 400", func(t *testing.T) {
		body := `{"reservation_id":"r1","lines":[{"sku":"ROSE","qty":"1"}]}`
		code, b := gatewayCall(t, http.MethodPost, base+"/v1/channels/web/reservations", body, nil)
		e := checkGatewayError(t, "POST reservations "+body, code, b, http.StatusBadRequest, codes.InvalidArgument, "")
		if !strings.Contains(e.Message, "qty") {
			t.Errorf("POST reservations %s: got message %q, want it to name qty", body, e.Message)
		}
	})
	t.Run("an unmapped SKU on a channel that requires mappings is 404", func(t *testing.T) {
		u := base + "/v1/channels/strict/availability:batchGet?skus=NOPE"
		code, b := gatewayCall(t, http.MethodGet, u, "", nil)
		checkGatewayError(t, "GET "+u, code, b, http.StatusNotFound, codes.NotFound, "skus[0]")
	})
	t.Run("an unknown reservation is 404", func(t *testing.T) {
		u := base + "/v1/channels/web/reservations/nope"
		code, b := gatewayCall(t, http.MethodGet, u, "", nil)
		checkGatewayError(t, "GET "+u, code, b, http.StatusNotFound, codes.NotFound, "")
	})
	if after := h.digest(t); after != before {
		t.Errorf("state digest after refused HTTP input: got %x, want %x (unchanged: bad input never reaches the log)", after, before)
	}
	// A business refusal is decided in the log (and remembered for retries).
	t.Run("short stock is 400 with FAILED_PRECONDITION", func(t *testing.T) {
		body := `{"reservation_id":"big","lines":[{"sku":"ROSE","quantity":"16"}]}`
		code, b := gatewayCall(t, http.MethodPost, base+"/v1/channels/web/reservations", body, nil)
		checkGatewayError(t, "POST reservations "+body, code, b, http.StatusBadRequest, codes.FailedPrecondition, "")
	})
	t.Run("a reservation id reused with another payload is 409", func(t *testing.T) {
		for i, q := range []string{"1", "2"} {
			body := `{"reservation_id":"dup","lines":[{"sku":"ROSE","quantity":"` + q + `"}]}`
			code, b := gatewayCall(t, http.MethodPost, base+"/v1/channels/web/reservations", body, nil)
			if i == 0 && code != http.StatusOK {
				t.Fatalf("POST reservations %s: got HTTP %d %s, want 200", body, code, b)
			}
			if i == 1 {
				checkGatewayError(t, "POST reservations "+body, code, b, http.StatusConflict, codes.AlreadyExists, "")
			}
		}
	})
}

// echoInventory answers GetAvailability with one SKU per value of the
// incoming metadata key named by the request's channel.
type echoInventory struct {
	stockdv1.UnimplementedInventoryServer
}

func (echoInventory) GetAvailability(ctx context.Context, req *stockdv1.GetAvailabilityRequest) (*stockdv1.GetAvailabilityResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	resp := &stockdv1.GetAvailabilityResponse{}
	for _, v := range md.Get(req.GetChannel()) {
		resp.Skus = append(resp.Skus, &stockdv1.SkuAvailability{Sku: v})
	}
	return resp, nil
}

func TestGatewayForwardsAuthorizationAsMetadata(t *testing.T) {
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	stockdv1.RegisterInventoryServer(gs, echoInventory{})
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("close client: %v", err)
		}
		gs.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	base := serveGateway(t, conn)

	echo := func(t *testing.T, key string, header http.Header) []string {
		t.Helper()
		u := base + "/v1/channels/" + key + "/availability:batchGet"
		code, b := gatewayCall(t, http.MethodGet, u, "", header)
		if code != http.StatusOK {
			t.Fatalf("GET %s with %v: got HTTP %d %s, want 200", u, header, code, b)
		}
		var resp stockdv1.GetAvailabilityResponse
		if err := protojson.Unmarshal(b, &resp); err != nil {
			t.Fatalf("GET %s: decode %s: %v", u, b, err)
		}
		var vals []string
		for _, s := range resp.GetSkus() {
			vals = append(vals, s.GetSku())
		}
		return vals
	}

	t.Run("the bearer token arrives as authorization", func(t *testing.T) {
		got := echo(t, "authorization", http.Header{"Authorization": {"Bearer tok-123"}})
		if len(got) != 1 || got[0] != "Bearer tok-123" {
			t.Errorf("Authorization: Bearer tok-123: got metadata authorization %q, want [\"Bearer tok-123\"]", got)
		}
	})
	t.Run("no header, no metadata", func(t *testing.T) {
		if got := echo(t, "authorization", nil); len(got) != 0 {
			t.Errorf("no Authorization header: got metadata authorization %q, want none", got)
		}
	})
	t.Run("a client cannot add an authorization value through Grpc-Metadata-", func(t *testing.T) {
		h := http.Header{"Authorization": {"Bearer tok-123"}, "Grpc-Metadata-Authorization": {"Bearer forged"}}
		if got := echo(t, "authorization", h); len(got) != 1 || got[0] != "Bearer tok-123" {
			t.Errorf("Authorization plus Grpc-Metadata-Authorization: got metadata authorization %q, want [\"Bearer tok-123\"]", got)
		}
	})
}
