package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/stockd/stockd/api/stockdv1"
)

// GatewayMarshaler is the JSON codec of the HTTP/JSON gateway, for requests,
// responses and error bodies alike. Field names are the proto names
// (reservation_id, available_sku_units), as in the .proto files, the README
// and the OpenAPI file (api/openapi/inventory.swagger.json), not the
// lowerCamel JSON names. Scalars and lists at their zero value are written
// out (available_sku_units: "0", locations: []), so a storefront reads "none
// left" instead of guessing from a missing key; unset messages (a timestamp
// not yet set) are left out rather than written as null. Otherwise it is
// proto3 JSON: 64-bit integers are strings, durations are "900s", enums are
// their names, and a request naming an unknown field is refused with 400.
func GatewayMarshaler() runtime.Marshaler {
	return &runtime.JSONPb{
		MarshalOptions: protojson.MarshalOptions{
			UseProtoNames:     true,
			EmitDefaultValues: true,
		},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}
}

// NewGateway returns an http.Handler that serves the Inventory service's unary
// RPCs as REST/JSON under /v1/ (routes in proto/stockd/v1/gateway.yaml and
// api/openapi/inventory.swagger.json) by calling them over conn, a client
// connection to this node's own gRPC server, so every HTTP call runs through
// the same interceptor chain as a gRPC one (recovery, logging, auth, limits,
// validation). The streaming RPCs (ReserveStream, Watch) have no route.
//
// The HTTP Authorization header reaches the gRPC server as the metadata key
// "authorization" (the runtime forwards it unprefixed); other permanent HTTP
// headers arrive as "grpcgateway-<Header>", and a client cannot set other
// metadata keys (Grpc-Metadata-* headers are not forwarded). A gRPC error
// becomes the runtime's HTTP status for its code (INVALID_ARGUMENT 400,
// NOT_FOUND 404, FAILED_PRECONDITION 400, ABORTED 409, ALREADY_EXISTS 409,
// UNAUTHENTICATED 401, PERMISSION_DENIED 403, RESOURCE_EXHAUSTED 429,
// UNAVAILABLE 503, INTERNAL 500) with the status as the JSON body: code,
// message (naming the request field at fault) and details.
//
// A path variable is one percent-encoded segment ("cart%3A7%20b" is the
// reservation id "cart:7 b"); the runtime splits the path after unescaping
// it, so an id or order_ref holding "/" cannot be named in a path: such a
// reservation is reachable over gRPC only. ctx bounds nothing after
// NewGateway returns; conn stays the caller's to close. The handler is safe
// for concurrent use.
func NewGateway(ctx context.Context, conn *grpc.ClientConn) (http.Handler, error) {
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, GatewayMarshaler()),
	)
	if err := stockdv1.RegisterInventoryHandler(ctx, mux, conn); err != nil {
		return nil, fmt.Errorf("register inventory gateway: %w", err)
	}
	return mux, nil
}
