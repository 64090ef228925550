package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// t0 is the fake leader clock's start, Unix nanoseconds.
const t0 = store.Timestamp(1_700_000_000_000_000_000)

// Sentinels a fake cluster would export; the harness passes them in Config.
var (
	errFakeNotLeader = errors.New("not leader")
	errFakeQueueFull = errors.New("proposal queue full")
	errFakeNoFeature = errors.New("feature not enabled on every voter")
)

// fakeProposer applies each command at once on a real store.Machine, at the
// next index and the fake clock's time. Commands go through a marshal round
// trip, as they would through the log.
type fakeProposer struct {
	m   *store.Machine
	now atomic.Int64 // leader clock, Unix ns

	mu        sync.Mutex
	next      store.Revision
	proposals int
	fail      error // returned by Propose instead of applying, if set
	// maxFeature, when set, refuses commands that need a newer feature
	// version with errFakeNoFeature, as a leader does while a voter's build
	// lacks it.
	maxFeature uint32
	applied    chan struct{} // closed and replaced after every apply
}

func newFakeProposer(m *store.Machine) *fakeProposer {
	p := &fakeProposer{m: m, next: m.AppliedIndex(), applied: make(chan struct{})}
	p.now.Store(int64(t0))
	return p
}

func (p *fakeProposer) Propose(ctx context.Context, cmd *logv1.Command) (store.Result, error) {
	if err := ctx.Err(); err != nil {
		return store.Result{}, err
	}
	b, err := proto.Marshal(cmd)
	if err != nil {
		return store.Result{}, err
	}
	var logged logv1.Command
	if err := proto.Unmarshal(b, &logged); err != nil {
		return store.Result{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.proposals++
	if p.fail != nil {
		return store.Result{}, p.fail
	}
	if need := store.CommandFeature(&logged); p.maxFeature != 0 && need > p.maxFeature {
		return store.Result{}, fmt.Errorf("propose: %w: command needs version %d", errFakeNoFeature, need)
	}
	p.next++
	res := p.m.Apply(p.next, store.Timestamp(p.now.Load()), &logged)
	close(p.applied)
	p.applied = make(chan struct{})
	return res, nil
}

func (p *fakeProposer) WaitApplied(ctx context.Context, rev store.Revision) error {
	for {
		p.mu.Lock()
		ch := p.applied
		p.mu.Unlock()
		if p.m.AppliedIndex() >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (p *fakeProposer) setFail(err error) {
	p.mu.Lock()
	p.fail = err
	p.mu.Unlock()
}

func (p *fakeProposer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proposals
}

// advance moves the leader clock forward by d.
func (p *fakeProposer) advance(d time.Duration) { p.now.Add(int64(d)) }

// syncBuffer is a log sink tests can read while handlers write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	m    *store.Machine
	p    *fakeProposer
	srv  *Server
	logs *syncBuffer
	conn *grpc.ClientConn
	// dial opens another connection to the server, without the harness's
	// default tokens; closed at cleanup.
	dial   func(t testing.TB) *grpc.ClientConn
	inv    stockdv1.InventoryClient
	erp    stockdv1.ErpClient
	adm    stockdv1.AdminClient
	clu    stockdv1.ClusterClient
	health healthpb.HealthClient
}

type harnessOption func(*harnessConfig)

type harnessConfig struct {
	level  slog.Level
	reader func(*store.Machine) Reader
	server Config
	// auth turns on authentication; tokens are what the harness's client
	// sends on a call whose context carries no authorization: tokens.erp on
	// the Erp service, tokens.admin on every other.
	auth   *Authenticator
	tokens struct{ erp, admin string }
	// register, when set, registers more services on the grpc.Server.
	register func(*grpc.Server)
	// grpcMetrics, when set, goes into the chain (ChainConfig.GRPCMetrics).
	grpcMetrics *grpcprom.ServerMetrics
}

// withAuth serves behind auth; the harness's own calls (seed, setStock) use
// erpToken on the Erp service and adminToken elsewhere unless the call's
// context names its own token.
func withAuth(a *Authenticator, erpToken, adminToken string) harnessOption {
	return func(c *harnessConfig) {
		c.auth = a
		c.tokens.erp, c.tokens.admin = erpToken, adminToken
	}
}

func withLogLevel(l slog.Level) harnessOption { return func(c *harnessConfig) { c.level = l } }

func withReader(f func(*store.Machine) Reader) harnessOption {
	return func(c *harnessConfig) { c.reader = f }
}

func withReadWait(d time.Duration) harnessOption {
	return func(c *harnessConfig) { c.server.ReadWaitTimeout = d }
}

func withCluster(cl Cluster) harnessOption {
	return func(c *harnessConfig) { c.server.Cluster = cl }
}

func withCatchUpOnStart() harnessOption {
	return func(c *harnessConfig) { c.server.CatchUpOnStart = true }
}

// withGRPCMetrics puts m into the interceptor chain.
func withGRPCMetrics(m *grpcprom.ServerMetrics) harnessOption {
	return func(c *harnessConfig) { c.grpcMetrics = m }
}

func withSnapshotDir(dir string) harnessOption {
	return func(c *harnessConfig) { c.server.SnapshotDir = dir }
}

// newHarness serves a fresh machine over bufconn behind the full interceptor chain.
func newHarness(t testing.TB, opts ...harnessOption) *harness {
	t.Helper()
	hc := harnessConfig{level: slog.LevelDebug}
	for _, o := range opts {
		o(&hc)
	}
	m := store.New(store.DefaultConfig())
	p := newFakeProposer(m)
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: hc.level}))
	var reader Reader = m
	if hc.reader != nil {
		reader = hc.reader(m)
	}
	cfg := hc.server
	cfg.Proposer, cfg.Reader, cfg.Logger = p, reader, logger
	cfg.Unavailable = []error{errFakeNotLeader}
	cfg.Exhausted = []error{errFakeQueueFull}
	cfg.Precondition = []error{errFakeNoFeature}
	srv := New(cfg)

	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(ServerOptionsFor(ChainConfig{Logger: logger, Auth: hc.auth, GRPCMetrics: hc.grpcMetrics})...)
	srv.Register(gs)
	if hc.register != nil {
		hc.register(gs)
	}
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(defaultToken(hc)),
		grpc.WithChainStreamInterceptor(defaultStreamToken(hc)))
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
	return &harness{
		m: m, p: p, srv: srv, logs: logs, conn: conn,
		dial: func(t testing.TB) *grpc.ClientConn {
			c, err := grpc.NewClient("passthrough:///bufconn",
				grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
				grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatalf("grpc.NewClient: %v", err)
			}
			t.Cleanup(func() { _ = c.Close() })
			return c
		},
		inv:    stockdv1.NewInventoryClient(conn),
		erp:    stockdv1.NewErpClient(conn),
		adm:    stockdv1.NewAdminClient(conn),
		clu:    stockdv1.NewClusterClient(conn),
		health: healthpb.NewHealthClient(conn),
	}
}

// withDefaultToken adds hc's token for method to ctx unless ctx has one.
func withDefaultToken(ctx context.Context, hc harnessConfig, method string) context.Context {
	if hc.auth == nil {
		return ctx
	}
	if md, _ := metadata.FromOutgoingContext(ctx); len(md.Get("authorization")) > 0 {
		return ctx
	}
	tok := hc.tokens.admin
	if strings.HasPrefix(method, "/"+stockdv1.Erp_ServiceDesc.ServiceName+"/") {
		tok = hc.tokens.erp
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

func defaultToken(hc harnessConfig) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(withDefaultToken(ctx, hc, method), method, req, reply, cc, opts...)
	}
}

func defaultStreamToken(hc harnessConfig) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(withDefaultToken(ctx, hc, method), desc, cc, method, opts...)
	}
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// seed declares WH1 and WH2, channel "web" seeing both (WH1 first), and
// counts ROSE: 10 at WH1, 5 at WH2.
func (h *harness) seed(t testing.TB) {
	t.Helper()
	ctx := testContext(t)
	for _, id := range []string{"WH1", "WH2"} {
		if _, err := h.adm.PutLocation(ctx, &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: id, Name: id}}); err != nil {
			t.Fatalf("PutLocation(%s): %v", id, err)
		}
	}
	if _, err := h.adm.PutChannel(ctx, &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: "web", Locations: []string{"WH1", "WH2"}}}); err != nil {
		t.Fatalf("PutChannel(web): %v", err)
	}
	h.setStock(t, "ROSE", "WH1", 10, 1)
	h.setStock(t, "ROSE", "WH2", 5, 1)
}

func (h *harness) setStock(t testing.TB, item, loc string, onHand int64, version uint64) {
	t.Helper()
	resp, err := h.erp.SetStock(testContext(t), &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
		{Item: item, Location: loc, OnHandBaseUnits: onHand, Version: version},
	}})
	if err != nil {
		t.Fatalf("SetStock(%s@%s=%d v%d): %v", item, loc, onHand, version, err)
	}
	if resp.GetApplied() != 1 {
		t.Fatalf("SetStock(%s@%s=%d v%d): rows %v, want 1 applied", item, loc, onHand, version, resp.GetRows())
	}
}

// available is the channel's figure for sku, total and per location in
// channel order.
func (h *harness) available(t testing.TB, ch, sku string) (int64, []int64) {
	t.Helper()
	resp, err := h.inv.GetAvailability(testContext(t), &stockdv1.GetAvailabilityRequest{Channel: ch, Skus: []string{sku}})
	if err != nil {
		t.Fatalf("GetAvailability(%s, %s): %v", ch, sku, err)
	}
	a := resp.GetSkus()[0]
	var per []int64
	for _, l := range a.GetLocations() {
		per = append(per, l.GetAvailableSkuUnits())
	}
	return a.GetAvailableSkuUnits(), per
}

// digest is the machine's state digest; call only between RPCs.
func (h *harness) digest(t testing.TB) [32]byte {
	t.Helper()
	d, err := h.m.Digest()
	if err != nil {
		t.Fatalf("Digest: %v", err)
	}
	return d
}

// checkStatus fails unless err is a status with code want whose message names
// field ("field: ..."); for INVALID_ARGUMENT the BadRequest detail must name
// it too. An empty field checks the code only.
func checkStatus(t testing.TB, input string, err error, want codes.Code, field string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%s: got non-status error %v, want %s", input, err, want)
	}
	if st.Code() != want {
		t.Fatalf("%s: got %s %q, want %s", input, st.Code(), st.Message(), want)
	}
	if field == "" {
		return
	}
	if !strings.HasPrefix(st.Message(), field+": ") {
		t.Errorf("%s: got message %q, want it to name field %q", input, st.Message(), field)
	}
	if want != codes.InvalidArgument {
		return
	}
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	if len(fields) != 1 || fields[0] != field {
		t.Errorf("%s: got BadRequest fields %q, want [%q]", input, fields, field)
	}
}

// reserveReq is a one-line reserve of qty ROSE on channel web.
func reserveReq(id string, qty int64) *stockdv1.ReserveRequest {
	return &stockdv1.ReserveRequest{
		Channel: "web", ReservationId: id,
		Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: qty}},
	}
}

// serveTCP serves srv over TCP on 127.0.0.1 with opts until tb's cleanup
// (which fails tb if Serve did) and returns the address. Cleanups tb
// registers later, such as closing a client, run before the server stops.
func serveTCP(tb testing.TB, srv *Server, opts ...grpc.ServerOption) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen on 127.0.0.1:0: %v", err)
	}
	gs := grpc.NewServer(opts...)
	srv.Register(gs)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	tb.Cleanup(func() {
		gs.Stop()
		if err := <-served; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String()
}
