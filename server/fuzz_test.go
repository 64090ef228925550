package server

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// FuzzRequestValidation feeds arbitrary bytes to every request handler that
// checks input: the method byte picks the handler, the bytes are unmarshalled
// as its request (bytes that are no such message are what gRPC itself
// refuses, and are skipped). The handler runs directly, without the
// interceptor chain, so a panic in it fails the target instead of becoming
// INTERNAL. Whatever the handler lets through must be a command store.Validate
// accepts, that Apply neither panics on nor refuses as malformed
// (ErrInvalid): nothing the server passes is refused or crashes deeper down
// (DESIGN.md I3: input errors are found before the log). Every refusal is a
// status naming a field when it is INVALID_ARGUMENT, never INTERNAL, and the
// state the commands leave still restores from its own snapshot.
func FuzzRequestValidation(f *testing.F) {
	for _, s := range fuzzRequestSeeds() {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s.req)
		if err != nil {
			f.Fatalf("input seed %s: got marshal error %v", s.method, err)
		}
		f.Add(fuzzMethodIndex(f, s.method), b)
	}
	f.Fuzz(func(t *testing.T, method uint8, data []byte) {
		call := fuzzCalls[int(method)%len(fuzzCalls)]
		fz := newFuzzServer(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		input, err, ok := call.run(ctx, fz.srv, data)
		if !ok {
			return // not a message of this type: gRPC would refuse it
		}
		fuzzCheckError(t, call.name, input, err)
		back := store.New(store.DefaultConfig())
		if rerr := back.Restore(fuzzSnapshotSource(t, fz.m)); rerr != nil {
			t.Fatalf("input %s %v: got restore error %v for the state it left, want ok", call.name, input, rerr)
		}
	})
}

// fuzzCheckError holds a handler's error to the status rules of STYLE.md.
// Refusals decided in the log are fuzzProposer's to judge.
func fuzzCheckError(t *testing.T, method string, input proto.Message, err error) {
	t.Helper()
	if err == nil {
		return
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("input %s %v: got non-status error %v, want a gRPC status", method, input, err)
	}
	switch st.Code() {
	case codes.Internal, codes.Unknown, codes.OK:
		t.Fatalf("input %s %v: got %s %q, want a classified refusal", method, input, st.Code(), st.Message())
	case codes.InvalidArgument:
		field, _, found := strings.Cut(st.Message(), ": ")
		if !found || field == "" || strings.ContainsAny(field, " \t") {
			t.Fatalf("input %s %v: got INVALID_ARGUMENT %q, want a message naming the field", method, input, st.Message())
		}
	}
}

// fuzzProposer applies what handlers propose at once on a real machine,
// after a marshal round trip as through the log, and fails the fuzz input on
// any proposal store.Validate refuses, a panic in Apply (it propagates), or a
// malformed-input refusal decided in the log.
type fuzzProposer struct {
	t        *testing.T
	m        *store.Machine
	now      store.Timestamp
	proposed int
}

func (p *fuzzProposer) Propose(ctx context.Context, cmd *logv1.Command) (store.Result, error) {
	if err := ctx.Err(); err != nil {
		return store.Result{}, err
	}
	if err := store.Validate(cmd); err != nil {
		p.t.Fatalf("input %v: got a proposal store.Validate refuses (%v), want every handler to validate before proposing", cmd, err)
	}
	b, err := proto.Marshal(cmd)
	if err != nil {
		p.t.Fatalf("input %v: got marshal error %v, want a command the log can carry", cmd, err)
	}
	var logged logv1.Command
	if err := proto.Unmarshal(b, &logged); err != nil {
		p.t.Fatalf("input %v: got unmarshal error %v after a marshal, want the command back", cmd, err)
	}
	p.proposed++
	p.now += store.Timestamp(time.Second)
	res := p.m.Apply(p.m.AppliedIndex()+1, p.now, &logged)
	var rej *store.Rejection
	switch {
	case res.Err == nil:
	case !errors.As(res.Err, &rej):
		p.t.Fatalf("input %v: got Apply error %T %v, want a *store.Rejection", cmd, res.Err, res.Err)
	case errors.Is(res.Err, store.ErrInvalid) && !fuzzStateShaped(&logged):
		p.t.Fatalf("input %v: got %v from Apply after the server and store.Validate passed it, want input errors found before the log", cmd, res.Err)
	}
	return res, nil
}

// fuzzStateShaped reports a command whose input only the state can judge: a
// partial release names lines of the reservation it targets, and a
// reservation takes a bounded number of extends and partial releases
// (store's fuzz tests allow the same).
func fuzzStateShaped(c *logv1.Command) bool {
	return len(c.GetRelease().GetLines()) > 0 || c.GetExtend() != nil
}

// WaitApplied waits for what is never coming: a fuzzed min_revision past the
// applied index ends with the read bound (fuzzServer sets it short).
func (p *fuzzProposer) WaitApplied(ctx context.Context, rev store.Revision) error {
	if p.m.AppliedIndex() >= rev {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

type fuzzServer struct {
	m   *store.Machine
	p   *fuzzProposer
	srv *Server
}

// newFuzzServer serves a machine with something to find for every id the
// seeds use: locations WH1 and WH2; channel web (both, buffer 1) and b2b
// (WH2, mapped SKUs only); ROSE and TULIP in stock, ROSE-CASE12 a case of 12
// ROSE; a PO line on its way; cart-held a live hold, cart-done confirmed as
// order-1 (outbox seq 1).
func newFuzzServer(t *testing.T) *fuzzServer {
	m := store.New(store.DefaultConfig())
	p := &fuzzProposer{t: t, m: m, now: t0}
	setup := []*logv1.Command{
		{Kind: &logv1.Command_PutLocation{PutLocation: &logv1.PutLocation{Id: "WH1", Name: "one"}}},
		{Kind: &logv1.Command_PutLocation{PutLocation: &logv1.PutLocation{Id: "WH2", Name: "two"}}},
		{Kind: &logv1.Command_PutChannel{PutChannel: &logv1.PutChannel{Id: "web", Locations: []string{"WH1", "WH2"}, DefaultBufferBaseUnits: 1}}},
		{Kind: &logv1.Command_PutChannel{PutChannel: &logv1.PutChannel{Id: "b2b", Locations: []string{"WH2"}, RequireSkuMapping: true}}},
		{Kind: &logv1.Command_PutSku{PutSku: &logv1.PutSku{Sku: "ROSE-CASE12", Item: "ROSE", Factor: 12}}},
		{Kind: &logv1.Command_SetStock{SetStock: &logv1.SetStock{Rows: []*logv1.StockCount{
			{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 100, Version: 1},
			{Item: "ROSE", Location: "WH2", OnHandBaseUnits: 30, Version: 1},
			{Item: "TULIP", Location: "WH1", OnHandBaseUnits: 5, Version: 1},
		}}}},
		{Kind: &logv1.Command_SetIncoming{SetIncoming: &logv1.SetIncoming{Lines: []*logv1.IncomingLine{
			{PoLineId: "PO-1/1", Item: "TULIP", Location: "WH2", QuantityBaseUnits: 20, EtaUnixNanos: int64(t0) + int64(24*time.Hour), Version: 1},
		}}}},
		{Kind: &logv1.Command_Reserve{Reserve: &logv1.Reserve{Channel: "web", ReservationId: "cart-held",
			Lines: []*logv1.ReserveLine{{Sku: "ROSE", QuantitySkuUnits: 2}, {Sku: "TULIP", QuantitySkuUnits: 1}}}}},
		{Kind: &logv1.Command_Reserve{Reserve: &logv1.Reserve{Channel: "web", ReservationId: "cart-done",
			Lines: []*logv1.ReserveLine{{Sku: "ROSE", QuantitySkuUnits: 3}}}}},
		{Kind: &logv1.Command_Confirm{Confirm: &logv1.Confirm{Channel: "web", ReservationId: "cart-done", OrderRef: "order-1"}}},
	}
	for _, c := range setup {
		if res, err := p.Propose(context.Background(), c); err != nil || res.Err != nil {
			t.Fatalf("setup %v: got %v, %v, want ok", c, err, res.Err)
		}
	}
	p.proposed = 0
	srv := New(Config{Proposer: p, Reader: m, ReadWaitTimeout: time.Millisecond})
	return &fuzzServer{m: m, p: p, srv: srv}
}

func fuzzSnapshotSource(t *testing.T, m *store.Machine) func() ([]byte, error) {
	var recs [][]byte
	if err := m.Snapshot().WriteRecords(func(rec []byte) error {
		recs = append(recs, append([]byte(nil), rec...))
		return nil
	}); err != nil {
		t.Fatalf("snapshot: got %v, want ok", err)
	}
	return func() ([]byte, error) {
		if len(recs) == 0 {
			return nil, io.EOF
		}
		r := recs[0]
		recs = recs[1:]
		return r, nil
	}
}

// fuzzCall runs one handler on bytes; ok is false when the bytes are no
// message of its request type.
type fuzzCall struct {
	name string
	run  func(ctx context.Context, s *Server, data []byte) (req proto.Message, err error, ok bool)
}

// fuzzUnary adapts a handler taking request type R.
func fuzzUnary[R any, P interface {
	*R
	proto.Message
}](name string, h func(ctx context.Context, s *Server, req P) error) fuzzCall {
	return fuzzCall{name: name, run: func(ctx context.Context, s *Server, data []byte) (proto.Message, error, bool) {
		req := P(new(R))
		if err := proto.Unmarshal(data, req); err != nil {
			return nil, nil, false
		}
		return req, h(ctx, s, req), true
	}}
}

// fuzzCalls is every handler that checks request input, with the request
// checks of the streaming RPCs run the way their streams run them. Append
// only: the committed corpus names handlers by index.
var fuzzCalls = []fuzzCall{
	fuzzUnary("Reserve", func(ctx context.Context, s *Server, r *stockdv1.ReserveRequest) error {
		_, err := (&inventory{s: s}).Reserve(ctx, r)
		return err
	}),
	fuzzUnary("Confirm", func(ctx context.Context, s *Server, r *stockdv1.ConfirmRequest) error {
		_, err := (&inventory{s: s}).Confirm(ctx, r)
		return err
	}),
	fuzzUnary("Release", func(ctx context.Context, s *Server, r *stockdv1.ReleaseRequest) error {
		_, err := (&inventory{s: s}).Release(ctx, r)
		return err
	}),
	fuzzUnary("Extend", func(ctx context.Context, s *Server, r *stockdv1.ExtendRequest) error {
		_, err := (&inventory{s: s}).Extend(ctx, r)
		return err
	}),
	fuzzUnary("CancelOrder", func(ctx context.Context, s *Server, r *stockdv1.CancelOrderRequest) error {
		_, err := (&inventory{s: s}).CancelOrder(ctx, r)
		return err
	}),
	fuzzUnary("ReleaseAll", func(ctx context.Context, s *Server, r *stockdv1.ReleaseAllRequest) error {
		_, err := (&inventory{s: s}).ReleaseAll(ctx, r)
		return err
	}),
	fuzzUnary("GetAvailability", func(ctx context.Context, s *Server, r *stockdv1.GetAvailabilityRequest) error {
		_, err := (&inventory{s: s}).GetAvailability(ctx, r)
		return err
	}),
	fuzzUnary("GetReservation", func(ctx context.Context, s *Server, r *stockdv1.GetReservationRequest) error {
		_, err := (&inventory{s: s}).GetReservation(ctx, r)
		return err
	}),
	fuzzUnary("ListReservations", func(ctx context.Context, s *Server, r *stockdv1.ListReservationsRequest) error {
		_, err := (&inventory{s: s}).ListReservations(ctx, r)
		return err
	}),
	fuzzUnary("GetOrder", func(ctx context.Context, s *Server, r *stockdv1.GetOrderRequest) error {
		_, err := (&inventory{s: s}).GetOrder(ctx, r)
		return err
	}),
	fuzzUnary("ListChanges", func(ctx context.Context, s *Server, r *stockdv1.ListChangesRequest) error {
		_, err := (&inventory{s: s}).ListChanges(ctx, r)
		return err
	}),
	fuzzUnary("ListAvailability", func(ctx context.Context, s *Server, r *stockdv1.ListAvailabilityRequest) error {
		_, err := (&inventory{s: s}).ListAvailability(ctx, r)
		return err
	}),
	fuzzUnary("ReserveStream", func(ctx context.Context, s *Server, r *stockdv1.ReserveStreamRequest) error {
		// The stream's own check, then the unary handler it hands the op to.
		rs := &reserveStream{v: &inventory{s: s}, ctx: ctx}
		ans := &stockdv1.ReserveStreamResponse{RequestId: r.GetRequestId()}
		if rs.check(r, ans) {
			rs.answer(r, ans)
		}
		if e := ans.GetError(); e != nil {
			return status.Error(codes.Code(e.GetCode()), e.GetMessage())
		}
		return nil
	}),
	fuzzUnary("SetStock", func(ctx context.Context, s *Server, r *stockdv1.SetStockRequest) error {
		_, err := (&erp{s: s}).SetStock(ctx, r)
		return err
	}),
	fuzzUnary("PushStock", func(ctx context.Context, s *Server, r *stockdv1.PushStockRequest) error {
		// The stream's own check, then the proposal its apply loop makes.
		cmd, err := (&pushStream{s: s, ctx: ctx}).check(r)
		if err == nil {
			_, err = s.propose(ctx, cmd)
		}
		return s.status(ctx, err)
	}),
	fuzzUnary("AdjustStock", func(ctx context.Context, s *Server, r *stockdv1.AdjustStockRequest) error {
		_, err := (&erp{s: s}).AdjustStock(ctx, r)
		return err
	}),
	fuzzUnary("SetIncoming", func(ctx context.Context, s *Server, r *stockdv1.SetIncomingRequest) error {
		_, err := (&erp{s: s}).SetIncoming(ctx, r)
		return err
	}),
	fuzzUnary("ListIncoming", func(ctx context.Context, s *Server, r *stockdv1.ListIncomingRequest) error {
		_, err := (&erp{s: s}).ListIncoming(ctx, r)
		return err
	}),
	fuzzUnary("AckOrders", func(ctx context.Context, s *Server, r *stockdv1.AckOrdersRequest) error {
		_, err := (&erp{s: s}).AckOrders(ctx, r)
		return err
	}),
	fuzzUnary("ListRejected", func(ctx context.Context, s *Server, r *stockdv1.ListRejectedRequest) error {
		_, err := (&erp{s: s}).ListRejected(ctx, r)
		return err
	}),
	fuzzUnary("ExportStock", func(ctx context.Context, s *Server, r *stockdv1.ExportStockRequest) error {
		_, err := checkExportRequest(r)
		return s.status(ctx, err)
	}),
	fuzzUnary("Watch", func(ctx context.Context, s *Server, r *stockdv1.WatchRequest) error {
		return s.status(ctx, checkWatchRequest(r))
	}),
	fuzzUnary("PutLocation", func(ctx context.Context, s *Server, r *stockdv1.PutLocationRequest) error {
		_, err := (&admin{s: s}).PutLocation(ctx, r)
		return err
	}),
	fuzzUnary("PutChannel", func(ctx context.Context, s *Server, r *stockdv1.PutChannelRequest) error {
		_, err := (&admin{s: s}).PutChannel(ctx, r)
		return err
	}),
	fuzzUnary("SetBuffer", func(ctx context.Context, s *Server, r *stockdv1.SetBufferRequest) error {
		_, err := (&admin{s: s}).SetBuffer(ctx, r)
		return err
	}),
	fuzzUnary("ListBuffers", func(ctx context.Context, s *Server, r *stockdv1.ListBuffersRequest) error {
		_, err := (&admin{s: s}).ListBuffers(ctx, r)
		return err
	}),
	fuzzUnary("DeleteLocation", func(ctx context.Context, s *Server, r *stockdv1.DeleteLocationRequest) error {
		_, err := (&admin{s: s}).DeleteLocation(ctx, r)
		return err
	}),
	fuzzUnary("DeleteChannel", func(ctx context.Context, s *Server, r *stockdv1.DeleteChannelRequest) error {
		_, err := (&admin{s: s}).DeleteChannel(ctx, r)
		return err
	}),
	fuzzUnary("PutLocationGroup", func(ctx context.Context, s *Server, r *stockdv1.PutLocationGroupRequest) error {
		_, err := (&admin{s: s}).PutLocationGroup(ctx, r)
		return err
	}),
	fuzzUnary("DeleteLocationGroup", func(ctx context.Context, s *Server, r *stockdv1.DeleteLocationGroupRequest) error {
		_, err := (&admin{s: s}).DeleteLocationGroup(ctx, r)
		return err
	}),
	fuzzUnary("PutSku", func(ctx context.Context, s *Server, r *stockdv1.PutSkuRequest) error {
		_, err := (&admin{s: s}).PutSku(ctx, r)
		return err
	}),
	fuzzUnary("ListSkus", func(ctx context.Context, s *Server, r *stockdv1.ListSkusRequest) error {
		_, err := (&admin{s: s}).ListSkus(ctx, r)
		return err
	}),
	fuzzUnary("DeleteSku", func(ctx context.Context, s *Server, r *stockdv1.DeleteSkuRequest) error {
		_, err := (&admin{s: s}).DeleteSku(ctx, r)
		return err
	}),
	fuzzUnary("Join", func(ctx context.Context, s *Server, r *stockdv1.JoinRequest) error {
		return s.status(ctx, checkJoinRequest(r))
	}),
}

func fuzzMethodIndex(t testing.TB, name string) uint8 {
	for i, c := range fuzzCalls {
		if c.name == name {
			return uint8(i)
		}
	}
	t.Fatalf("input %s: got no such fuzz call, want one of fuzzCalls", name)
	return 0
}

type fuzzRequestSeed struct {
	method string
	req    proto.Message
}

// fuzzRequestSeeds is a well-formed request for each handler, aimed at what
// newFuzzServer prepared, and a few malformed ones.
func fuzzRequestSeeds() []fuzzRequestSeed {
	ttl := durationpb.New(time.Minute)
	return []fuzzRequestSeed{
		{"Reserve", &stockdv1.ReserveRequest{Channel: "web", ReservationId: "cart-2", Ttl: ttl, Lines: []*stockdv1.ReserveLine{
			{Sku: "ROSE", Quantity: 3}, {Sku: "ROSE-CASE12", Quantity: 1, Location: "WH1"}, {Sku: "TULIP", Quantity: 4, AllowBackorder: true}}}},
		{"Reserve", &stockdv1.ReserveRequest{Channel: "web", ReservationId: "cart-held", Lines: []*stockdv1.ReserveLine{
			{Sku: "ROSE", Quantity: 2}, {Sku: "TULIP", Quantity: 1}}}},
		{"Reserve", &stockdv1.ReserveRequest{Channel: "b2b", ReservationId: "cart-3", Ttl: &durationpb.Duration{Seconds: -1}, Lines: []*stockdv1.ReserveLine{
			{Sku: "ROSE-CASE12", Quantity: 1 << 60, ExpectedModRevision: 3}}}},
		{"Confirm", &stockdv1.ConfirmRequest{Channel: "web", ReservationId: "cart-held", OrderRef: "order-2"}},
		{"Release", &stockdv1.ReleaseRequest{Channel: "web", ReservationId: "cart-held", ReleaseId: "rel-1",
			Lines: []*stockdv1.ReleaseLine{{Line: 0, Quantity: 1}, {Line: 7, Quantity: 1}}}},
		{"Release", &stockdv1.ReleaseRequest{Channel: "web", ReservationId: "cart-held"}},
		{"Extend", &stockdv1.ExtendRequest{Channel: "web", ReservationId: "cart-held", ExtendId: "ext-1", Ttl: durationpb.New(time.Hour)}},
		{"CancelOrder", &stockdv1.CancelOrderRequest{Channel: "web", ReservationId: "cart-done"}},
		{"ReleaseAll", &stockdv1.ReleaseAllRequest{Channel: "web", ReleaseAllId: "all-1"}},
		{"GetAvailability", &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE", "ROSE-CASE12", "NONE"}, MinRevision: 3}},
		{"GetReservation", &stockdv1.GetReservationRequest{Channel: "web", ReservationId: "cart-held", Linearizable: true}},
		{"ListReservations", &stockdv1.ListReservationsRequest{Channel: "web", PageSize: 1, ExpiringWithin: ttl}},
		{"GetOrder", &stockdv1.GetOrderRequest{Channel: "web", OrderRef: "order-1"}},
		{"ListChanges", &stockdv1.ListChangesRequest{Channel: "web", SinceRevision: 2, PageSize: 2}},
		{"ListAvailability", &stockdv1.ListAvailabilityRequest{Channel: "web"}},
		{"ReserveStream", &stockdv1.ReserveStreamRequest{RequestId: "req-1", Op: &stockdv1.ReserveStreamRequest_Reserve{
			Reserve: &stockdv1.ReserveRequest{Channel: "web", ReservationId: "cart-4", Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 1}}}}}},
		{"ReserveStream", &stockdv1.ReserveStreamRequest{RequestId: "req-2"}},
		{"SetStock", &stockdv1.SetStockRequest{AbsorbedMark: 1, Rows: []*stockdv1.StockCount{
			{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 1, Version: 2}, {Item: "ROSE", Location: "WH9", OnHandBaseUnits: -4, Version: 1}}}},
		{"PushStock", &stockdv1.PushStockRequest{BatchId: "b-1", Batch: &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
			{Item: "TULIP", Location: "WH2", OnHandBaseUnits: 9, Version: 3}}}}},
		{"AdjustStock", &stockdv1.AdjustStockRequest{Rows: []*stockdv1.StockAdjustment{
			{DeltaId: "d-1", Item: "ROSE", Location: "WH2", DeltaBaseUnits: -40}, {DeltaId: "d-1", Item: "ROSE", Location: "WH2", DeltaBaseUnits: 0}}}},
		{"SetIncoming", &stockdv1.SetIncomingRequest{Lines: []*stockdv1.IncomingLine{
			{PoLineId: "PO-1/1", Item: "TULIP", Location: "WH2", QuantityBaseUnits: 20, ReceivedBaseUnits: 5, Version: 2, Eta: timestamppb.New(time.Unix(0, int64(t0)))}}}},
		{"ListIncoming", &stockdv1.ListIncomingRequest{Item: "TULIP"}},
		{"AckOrders", &stockdv1.AckOrdersRequest{Acks: []*stockdv1.OrderAck{
			{Seq: 1, Outcome: stockdv1.OrderOutcome_ORDER_OUTCOME_BOOKED}, {Seq: 1, Outcome: -1}, {Seq: 9, Outcome: stockdv1.OrderOutcome_ORDER_OUTCOME_DONE}}}},
		{"ListRejected", &stockdv1.ListRejectedRequest{}},
		{"ExportStock", &stockdv1.ExportStockRequest{}},
		{"Watch", &stockdv1.WatchRequest{Channel: "web", Skus: []string{"ROSE"}}},
		{"PutLocation", &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: "WH3", Name: "three"}}},
		{"PutChannel", &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: "rep", Locations: []string{"WH2", "WH1"}, DefaultBufferBaseUnits: 2}}},
		{"PutChannel", &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: "web", Locations: []string{"WH1", "WH1"}}}},
		{"SetBuffer", &stockdv1.SetBufferRequest{Item: "ROSE", Channel: "web", Location: "WH1", BufferBaseUnits: 3}},
		{"ListBuffers", &stockdv1.ListBuffersRequest{Item: "ROSE"}},
		{"DeleteLocation", &stockdv1.DeleteLocationRequest{Id: "WH1"}},
		{"DeleteChannel", &stockdv1.DeleteChannelRequest{Id: "b2b"}},
		{"PutLocationGroup", &stockdv1.PutLocationGroupRequest{Group: &stockdv1.LocationGroup{Id: "north", Locations: []string{"WH1", "WH2"}}}},
		{"DeleteLocationGroup", &stockdv1.DeleteLocationGroupRequest{Id: "north"}},
		{"PutSku", &stockdv1.PutSkuRequest{Sku: &stockdv1.Sku{Sku: "TULIP-6", Item: "TULIP", Factor: 6}}},
		{"ListSkus", &stockdv1.ListSkusRequest{Item: "ROSE"}},
		{"DeleteSku", &stockdv1.DeleteSkuRequest{Sku: "ROSE-CASE12"}},
		{"Join", &stockdv1.JoinRequest{NodeId: "n2", RaftAddr: "127.0.0.1:7000", GrpcAddr: "127.0.0.1:7001", FeatureVersion: 2}},
	}
}
