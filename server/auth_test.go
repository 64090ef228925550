package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/peerv1"
	"github.com/stockd/stockd/api/stockdv1"
)

// The principals of the auth tests: one per role, the sellers on channel
// "web", plus a second storefront on channel "b2b".
var testPrincipals = []AuthPrincipal{
	{Name: "shop", Role: RoleStorefront, Channel: "web", TokenSHA256: HashToken("t-shop")},
	{Name: "rep", Role: RoleRep, Channel: "web", TokenSHA256: HashToken("t-rep")},
	{Name: "market", Role: RoleMarketplace, Channel: "web", TokenSHA256: HashToken("t-market")},
	{Name: "erp", Role: RoleERP, TokenSHA256: HashToken("t-erp")},
	{Name: "ops", Role: RoleAdmin, TokenSHA256: HashToken("t-ops")},
	{Name: "node-2", Role: RoleNode, TokenSHA256: HashToken("t-node")},
	{Name: "b2b-shop", Role: RoleStorefront, Channel: "b2b", TokenSHA256: HashToken("t-b2b")},
}

func newAuthHarness(t *testing.T, principals []AuthPrincipal, opts ...harnessOption) *harness {
	t.Helper()
	a, err := NewAuthenticator(AuthFile{Principals: principals})
	if err != nil {
		t.Fatalf("NewAuthenticator: %v", err)
	}
	opts = append(opts, withAuth(a, "t-erp", "t-ops"), withCluster(&fakeCluster{rev: 42}), func(c *harnessConfig) {
		c.register = func(gs *grpc.Server) { peerv1.RegisterPeerServer(gs, peerv1.UnimplementedPeerServer{}) }
	})
	h := newHarness(t, opts...)
	h.seed(t)
	ctx := testContext(t)
	if _, err := h.adm.PutChannel(ctx, &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: "b2b", Locations: []string{"WH1"}}}); err != nil {
		t.Fatalf("PutChannel(b2b): %v", err)
	}
	return h
}

func as(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// allowedRoles is, written out by hand, which roles may call each method;
// a method not listed is denied to every role. (The table in
// permissions.go is what is tested, so it is not consulted here.)
var allowedRoles = func() map[string][]Role {
	sellers := []Role{RoleStorefront, RoleRep, RoleMarketplace}
	sellersAndAdmin := []Role{RoleStorefront, RoleRep, RoleMarketplace, RoleAdmin}
	m := map[string][]Role{}
	for _, name := range []string{"GetAvailability", "GetReservation", "ListReservations", "GetOrder", "ListChanges", "ListAvailability", "Watch"} {
		m["/stockd.v1.Inventory/"+name] = sellersAndAdmin
	}
	for _, name := range []string{"Reserve", "Confirm", "Release", "Extend", "CancelOrder", "ReleaseAll", "ReserveStream"} {
		m["/stockd.v1.Inventory/"+name] = sellers
	}
	for _, name := range []string{"SetStock", "AdjustStock", "SetIncoming", "ListIncoming", "PullOrders", "AckOrders", "GetOutbox", "ListRejected", "PushStock", "Backfill", "ExportStock"} {
		m["/stockd.v1.Erp/"+name] = []Role{RoleERP}
	}
	for _, name := range []string{"ListLocations", "ListChannels", "ListBuffers", "ListLocationGroups", "ListSkus"} {
		m["/stockd.v1.Admin/"+name] = []Role{RoleAdmin, RoleERP}
	}
	for _, name := range []string{"PutLocation", "PutChannel", "SetBuffer", "DeleteLocation", "DeleteChannel", "PutLocationGroup", "DeleteLocationGroup", "PutSku", "DeleteSku"} {
		m["/stockd.v1.Admin/"+name] = []Role{RoleAdmin}
	}
	for _, name := range []string{"Join", "Leave", "Status", "SaveSnapshot"} {
		m["/stockd.v1.Cluster/"+name] = []Role{RoleAdmin}
	}
	for _, name := range []string{"Propose", "ReadIndex", "Join", "Leave", "NodeStatus"} {
		m["/stockd.peer.v1.Peer/"+name] = []Role{RoleNode}
	}
	return m
}()

// authServices are the services under the role matrix.
var authServices = []grpc.ServiceDesc{
	stockdv1.Inventory_ServiceDesc, stockdv1.Erp_ServiceDesc, stockdv1.Admin_ServiceDesc,
	stockdv1.Cluster_ServiceDesc, peerv1.Peer_ServiceDesc,
}

// requestFor is a request for method whose channel, where it has one, is ch:
// empty otherwise, so an allowed call ends in the handler (often with
// INVALID_ARGUMENT or NOT_FOUND) and a denied one in the auth interceptor.
func requestFor(t *testing.T, method string, ch string) proto.Message {
	t.Helper()
	svc, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		t.Fatalf("descriptor of %s: %v", svc, err)
	}
	md := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(name))
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		t.Fatalf("type of %s: %v", md.Input().FullName(), err)
	}
	msg := mt.New().Interface()
	if r, ok := msg.(*stockdv1.ReserveStreamRequest); ok {
		r.RequestId = "r1"
		r.Op = &stockdv1.ReserveStreamRequest_Reserve{Reserve: &stockdv1.ReserveRequest{Channel: ch}}
		return msg
	}
	if f := msg.ProtoReflect().Descriptor().Fields().ByName("channel"); f != nil && f.Kind() == protoreflect.StringKind {
		msg.ProtoReflect().Set(f, protoreflect.ValueOfString(ch))
	}
	return msg
}

// call makes one call of method (unary or stream) and returns its status
// code; a stream that stays open past the short deadline counts as allowed.
func call(ctx context.Context, t *testing.T, conn *grpc.ClientConn, method string, streams map[string]grpc.StreamDesc, req proto.Message) codes.Code {
	t.Helper()
	raw, err := proto.Marshal(req)
	if err != nil {
		t.Fatalf("marshal %s request: %v", method, err)
	}
	var resp []byte
	sd, isStream := streams[method]
	if !isStream {
		return status.Code(conn.Invoke(ctx, method, &raw, &resp, grpc.ForceCodec(rawCodec{})))
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cs, err := conn.NewStream(ctx, &sd, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return status.Code(err)
	}
	if err := cs.SendMsg(&raw); err != nil && !errors.Is(err, io.EOF) {
		return status.Code(err)
	}
	if err := cs.CloseSend(); err != nil {
		return status.Code(err)
	}
	err = cs.RecvMsg(&resp)
	if errors.Is(err, io.EOF) {
		return codes.OK
	}
	return status.Code(err)
}

// TestRoleMatrix calls every RPC of every service as each role (and without
// a token, and with an unknown one) over real gRPC, and checks it is let
// through exactly when allowedRoles says: a denied call answers exactly
// PERMISSION_DENIED (UNAUTHENTICATED without a valid token), an allowed one
// anything else (the handler's own answer to an empty request).
func TestRoleMatrix(t *testing.T) {
	h := newAuthHarness(t, testPrincipals)
	ctx := testContext(t)
	streams := map[string]grpc.StreamDesc{}
	var methods []string
	for _, sd := range authServices {
		for _, m := range sd.Methods {
			methods = append(methods, "/"+sd.ServiceName+"/"+m.MethodName)
		}
		for _, s := range sd.Streams {
			full := "/" + sd.ServiceName + "/" + s.StreamName
			methods = append(methods, full)
			streams[full] = s
		}
	}
	if len(methods) != len(allowedRoles) {
		t.Fatalf("services have %d methods, the expected table %d: update allowedRoles", len(methods), len(allowedRoles))
	}
	tokens := map[Role]string{RoleStorefront: "t-shop", RoleRep: "t-rep", RoleMarketplace: "t-market", RoleERP: "t-erp", RoleAdmin: "t-ops", RoleNode: "t-node"}
	for _, method := range methods {
		want, ok := allowedRoles[method]
		if !ok {
			t.Errorf("%s: not in allowedRoles", method)
			continue
		}
		for _, role := range Roles {
			got := call(as(ctx, tokens[role]), t, h.conn, method, streams, requestFor(t, method, "web"))
			allowed := slices.Contains(want, role)
			switch {
			case allowed && (got == codes.PermissionDenied || got == codes.Unauthenticated):
				t.Errorf("%s as %s: %v, want allowed", method, role, got)
			case !allowed && got != codes.PermissionDenied:
				t.Errorf("%s as %s: %v, want PermissionDenied", method, role, got)
			}
		}
		if got := call(as(ctx, "nobody"), t, h.conn, method, streams, requestFor(t, method, "web")); got != codes.Unauthenticated {
			t.Errorf("%s with an unknown token: %v, want Unauthenticated", method, got)
		}
		noToken := metadata.AppendToOutgoingContext(ctx, "authorization", "Basic abc")
		if got := call(noToken, t, h.conn, method, streams, requestFor(t, method, "web")); got != codes.Unauthenticated {
			t.Errorf("%s with a Basic header: %v, want Unauthenticated", method, got)
		}
	}
	// Health needs no token: a load balancer probes it.
	if _, err := healthpb.NewHealthClient(h.conn).Check(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer nobody"), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health check with an unknown token: %v, want allowed", err)
	}
}

// TestEveryMethodHasARule: a method the permission table does not name is
// denied to all, so a new RPC without a rule is a bug this test shows.
func TestEveryMethodHasARule(t *testing.T) {
	for _, sd := range authServices {
		for _, m := range sd.Methods {
			if _, ok := ruleFor("/" + sd.ServiceName + "/" + m.MethodName); !ok {
				t.Errorf("/%s/%s: no rule", sd.ServiceName, m.MethodName)
			}
		}
		for _, s := range sd.Streams {
			if _, ok := ruleFor("/" + sd.ServiceName + "/" + s.StreamName); !ok {
				t.Errorf("/%s/%s: no rule", sd.ServiceName, s.StreamName)
			}
		}
	}
}

// TestChannelScope: a storefront of channel b2b may not act for web, in a
// unary call, a Watch, or one ReserveStream request (answered on its own
// while the stream goes on); its own channel works.
func TestChannelScope(t *testing.T) {
	h := newAuthHarness(t, testPrincipals)
	ctx := as(testContext(t), "t-b2b")
	_, err := h.inv.Reserve(ctx, &stockdv1.ReserveRequest{Channel: "web", ReservationId: "r1",
		Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 1}}, Ttl: durationpb.New(time.Minute)})
	checkStatus(t, "b2b token reserving for web", err, codes.PermissionDenied, "channel")
	if got, _ := h.available(t, "web", "ROSE"); got != 15 {
		t.Errorf("web's ROSE after b2b's refused reserve: %d, want 15 (nothing applied)", got)
	}
	if _, err := h.inv.Reserve(ctx, &stockdv1.ReserveRequest{Channel: "b2b", ReservationId: "r1",
		Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 1}}, Ttl: durationpb.New(time.Minute)}); err != nil {
		t.Fatalf("b2b token reserving for b2b: %v, want OK", err)
	}

	w, err := h.inv.Watch(ctx, &stockdv1.WatchRequest{Channel: "web"})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	_, err = w.Recv()
	checkStatus(t, "b2b token watching web", err, codes.PermissionDenied, "channel")

	rs, err := h.inv.ReserveStream(ctx)
	if err != nil {
		t.Fatalf("ReserveStream: %v", err)
	}
	for i, ch := range []string{"web", "b2b"} {
		if err := rs.Send(&stockdv1.ReserveStreamRequest{RequestId: ch, Op: &stockdv1.ReserveStreamRequest_Reserve{
			Reserve: &stockdv1.ReserveRequest{Channel: ch, ReservationId: "s" + ch, Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 1}}, Ttl: durationpb.New(time.Minute)}}}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	answers := closeAndDrain(t, rs)
	if e := answers["web"].GetError(); codes.Code(e.GetCode()) != codes.PermissionDenied || !strings.HasPrefix(e.GetMessage(), "channel:") {
		t.Errorf("stream request for web as b2b: %v, want PermissionDenied naming channel", answers["web"])
	}
	if answers["b2b"].GetReserve() == nil {
		t.Errorf("stream request for b2b as b2b: %v, want a reservation", answers["b2b"])
	}
}

// TestRateLimit: a principal over its rate_limit gets RESOURCE_EXHAUSTED
// with a RetryInfo delay; other principals are not slowed by it.
func TestRateLimit(t *testing.T) {
	ps := append([]AuthPrincipal(nil), testPrincipals...)
	ps[0].RateLimit = RateLimit{PerSecond: 0.001, Burst: 3} // shop: 3 calls, then one per 1,000 s
	h := newAuthHarness(t, ps)
	ctx := testContext(t)
	req := &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE"}}
	for i := range 3 {
		if _, err := h.inv.GetAvailability(as(ctx, "t-shop"), req); err != nil {
			t.Fatalf("call %d within the burst: %v", i+1, err)
		}
	}
	_, err := h.inv.GetAvailability(as(ctx, "t-shop"), req)
	checkStatus(t, "4th call of a burst of 3", err, codes.ResourceExhausted, "rate limit")
	var delay time.Duration
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay = ri.GetRetryDelay().AsDuration()
		}
	}
	if delay < 900*time.Second || delay > 1001*time.Second {
		t.Errorf("RetryInfo delay: %v, want about 1000s", delay)
	}
	if _, err := h.inv.GetAvailability(as(ctx, "t-rep"), req); err != nil {
		t.Errorf("another principal while shop is limited: %v, want OK", err)
	}
}

// closeAndDrain closes rs's send side and returns its answers by request id.
func closeAndDrain(t *testing.T, rs stockdv1.Inventory_ReserveStreamClient) map[string]*stockdv1.ReserveStreamResponse {
	t.Helper()
	if err := rs.CloseSend(); err != nil {
		t.Fatalf("CloseSend: %v", err)
	}
	answers := map[string]*stockdv1.ReserveStreamResponse{}
	for {
		a, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return answers
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		answers[a.GetRequestId()] = a
	}
}

// TestRateLimitCountsEachStreamRequest: on ReserveStream each request takes
// a call from the rate limit, as the unary call would (the stream's opening
// takes one too); a request over it is answered RESOURCE_EXHAUSTED on its
// own and the stream goes on.
func TestRateLimitCountsEachStreamRequest(t *testing.T) {
	ps := append([]AuthPrincipal(nil), testPrincipals...)
	ps[0].RateLimit = RateLimit{PerSecond: 0.001, Burst: 4} // shop: the opening and 3 requests
	h := newAuthHarness(t, ps)
	rs, err := h.inv.ReserveStream(as(testContext(t), "t-shop"))
	if err != nil {
		t.Fatalf("ReserveStream: %v", err)
	}
	for i := 1; i <= 4; i++ {
		id := "q" + strconv.Itoa(i)
		if err := rs.Send(&stockdv1.ReserveStreamRequest{RequestId: id, Op: &stockdv1.ReserveStreamRequest_Reserve{
			Reserve: &stockdv1.ReserveRequest{Channel: "web", ReservationId: id, Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 1}}, Ttl: durationpb.New(time.Minute)}}}); err != nil {
			t.Fatalf("send %s: %v", id, err)
		}
	}
	answers := closeAndDrain(t, rs)
	for _, id := range []string{"q1", "q2", "q3"} {
		if answers[id].GetReserve() == nil {
			t.Errorf("request %s within the burst: got %v, want a reservation", id, answers[id])
		}
	}
	if e := answers["q4"].GetError(); codes.Code(e.GetCode()) != codes.ResourceExhausted || !strings.Contains(e.GetMessage(), "rate limit") {
		t.Errorf("4th request past a burst of 4 (opening included): got %v, want RESOURCE_EXHAUSTED naming the rate limit", answers["q4"])
	}
}

// TestAuthLogsPrincipalNeverToken: the call log names the principal (and,
// on a call a node forwarded, whom for) and never carries a token.
func TestAuthLogsPrincipalNeverToken(t *testing.T) {
	h := newAuthHarness(t, testPrincipals)
	ctx := testContext(t)
	if _, err := h.inv.GetAvailability(as(ctx, "t-shop"), &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE"}}); err != nil {
		t.Fatalf("GetAvailability: %v", err)
	}
	fwd := metadata.AppendToOutgoingContext(as(ctx, "t-node"), OnBehalfOfKey, "shop")
	if _, err := peerv1.NewPeerClient(h.conn).ReadIndex(fwd, &peerv1.ReadIndexRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("ReadIndex as node: %v, want Unimplemented from the stub", err)
	}
	logs := h.logs.String()
	for _, want := range []string{"principal=shop", `principal="node-2 for shop"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	for _, tok := range []string{"t-shop", "t-node", "t-ops", "t-erp"} {
		if strings.Contains(logs, tok) {
			t.Errorf("logs carry token %q:\n%s", tok, logs)
		}
	}
}

// TestForwardPrincipal: the client interceptor a node dials peers with names
// the caller's principal in OnBehalfOfKey.
func TestForwardPrincipal(t *testing.T) {
	a, err := NewAuthenticator(AuthFile{Principals: testPrincipals})
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := a.authenticate(grpc.NewContextWithServerTransportStream(
		metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer t-shop")),
		methodStream(stockdv1.Inventory_Reserve_FullMethodName)))
	if err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	var sent metadata.MD
	invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		sent, _ = metadata.FromOutgoingContext(ctx)
		return nil
	}
	if err := ForwardPrincipal(ctx, peerv1.Peer_Propose_FullMethodName, nil, nil, nil, invoker); err != nil {
		t.Fatal(err)
	}
	if got := sent.Get(OnBehalfOfKey); len(got) != 1 || got[0] != "shop" {
		t.Errorf("forwarded %s: %v, want [shop]", OnBehalfOfKey, got)
	}
}

// TestAuthFileChecks: each mistake in an auth file is refused naming its
// field; a good file loads and its tokens work.
func TestAuthFileChecks(t *testing.T) {
	good := HashToken("x")
	for _, c := range []struct {
		name, json, field string
	}{
		{"no principals", `{"principals":[]}`, "principals"},
		{"unknown field", `{"principals":[], "users":[]}`, "unknown field"},
		{"no name", `{"principals":[{"role":"erp","token_sha256":"` + good + `"}]}`, "principals[0].name"},
		{"unknown role", `{"principals":[{"name":"a","role":"boss","token_sha256":"` + good + `"}]}`, "principals[0].role"},
		{"storefront without channel", `{"principals":[{"name":"a","role":"storefront","token_sha256":"` + good + `"}]}`, "principals[0].channel"},
		{"erp with channel", `{"principals":[{"name":"a","role":"erp","channel":"web","token_sha256":"` + good + `"}]}`, "principals[0].channel"},
		{"short hash", `{"principals":[{"name":"a","role":"erp","token_sha256":"abc"}]}`, "principals[0].token_sha256"},
		{"token twice", `{"principals":[{"name":"a","role":"erp","token_sha256":"` + good + `"},{"name":"b","role":"admin","token_sha256":"` + good + `"}]}`, "principals[1].token_sha256"},
		{"name twice", `{"principals":[{"name":"a","role":"erp","token_sha256":"` + good + `"},{"name":"a","role":"admin","token_sha256":"` + HashToken("y") + `"}]}`, "principals[1].name"},
		{"negative rate", `{"principals":[{"name":"a","role":"erp","token_sha256":"` + good + `","rate_limit":{"per_second":-1}}]}`, "principals[0].rate_limit"},
	} {
		path := filepath.Join(t.TempDir(), "auth.json")
		if err := os.WriteFile(path, []byte(c.json), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadAuthFile(path)
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %s: %v, want an error naming %s", c.name, c.json, err, c.field)
		}
	}
	path := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(path, []byte(`{"principals":[{"name":"a","role":"erp","token_sha256":"`+strings.ToUpper(good)+`"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := LoadAuthFile(path)
	if err != nil {
		t.Fatalf("good file: %v", err)
	}
	if e := a.lookup("x"); e == nil || e.p.Name != "a" || e.p.Role != RoleERP {
		t.Errorf("lookup(x) after loading a's hash: %+v, want principal a, erp", e)
	}
	if e := a.lookup("y"); e != nil {
		t.Errorf("lookup(y): %+v, want none", e)
	}
}

// TestGatewayCarriesAuth: over the HTTP gateway the same principals and
// rules hold: no token is 401, another channel is 403, the own channel
// answers the figures gRPC answers.
func TestGatewayCarriesAuth(t *testing.T) {
	h := newAuthHarness(t, testPrincipals)
	base := serveGateway(t, h.dial(t))
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	if code, body := gatewayCall(t, "GET", base+"/v1/channels/web/availability:batchGet?skus=ROSE", "", nil); code != http.StatusUnauthorized {
		t.Errorf("GET availability without a token: %d %s, want 401", code, body)
	}
	if code, body := gatewayCall(t, "GET", base+"/v1/channels/web/availability:batchGet?skus=ROSE", "", bearer("t-b2b")); code != http.StatusForbidden || !strings.Contains(string(body), "channel:") {
		t.Errorf("GET web's availability as b2b: %d %s, want 403 naming channel", code, body)
	}
	code, body := gatewayCall(t, "GET", base+"/v1/channels/web/availability:batchGet?skus=ROSE", "", bearer("t-shop"))
	if code != http.StatusOK || !strings.Contains(string(body), `"available_sku_units":"15"`) {
		t.Errorf("GET web's availability as shop: %d %s, want 200 with 15 available", code, body)
	}
}
