package server

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// The bad input suite (issue 8 item 5): every request field of every RPC
// gets its malformed cases over a real gRPC connection on 127.0.0.1, behind
// the interceptor chain cmd/stockd serves with (ServerOptions, gRPC's
// default 4 MiB receive limit). Each refusal is checked for its exact code,
// a message that starts with the field at fault, and a state that did not
// move. The cases live in badinput_*_test.go, one file per service.

// Strings every id field is tried with.
var (
	tooLong = strings.Repeat("x", store.MaxIDBytes+1)
	ctrlID  = "bad\x01id"
	delID   = "bad\x7fid"
)

// decided says where a refusal is decided, and so what it may leave behind.
type decided int

const (
	// beforeLog: refused while checking input; nothing is proposed and the
	// full state digest (applied index included) is unchanged.
	beforeLog decided = iota
	// inLog: refused by the state machine; one command is proposed and
	// applied, and the state is unchanged but for the applied index, the log
	// time and a remembered refusal (DESIGN.md I3).
	inLog
	// notApplied: the call may reach the proposer, but nothing is applied
	// (an expired deadline); the full digest is unchanged.
	notApplied
)

// badCase is one malformed request and how it must be refused.
type badCase struct {
	name  string
	call  func(ctx context.Context, b *badServer) error
	code  codes.Code
	field string // the message starts with "field: "; "" for gRPC's own refusals
	where decided
}

// badServer is a stockd server on a 127.0.0.1 TCP port: handlers over a
// real store.Machine behind the fake synchronous proposer (harness_test.go),
// optionally stalled until a call's context ends.
type badServer struct {
	*harness
	stall *stallProposer
	fc    *fakeCluster
}

// stallProposer blocks a proposal until its context ends while stalled is
// set, as a proposal stuck behind a slow log would, then hands it to the
// inner proposer (which, like cluster.Node, applies nothing for a done
// context). returned gets one value per stalled proposal once it returns.
type stallProposer struct {
	*fakeProposer
	stalled  atomic.Bool
	returned chan struct{}
}

func (p *stallProposer) Propose(ctx context.Context, cmd *logv1.Command) (store.Result, error) {
	if p.stalled.Load() {
		<-ctx.Done()
		defer func() { p.returned <- struct{}{} }()
	}
	return p.fakeProposer.Propose(ctx, cmd)
}

// newBadServer serves a fresh machine on 127.0.0.1:0 with the production
// interceptor chain and a fake Cluster, and connects a client to it over
// TCP. Reads wait at most 100 ms for a min_revision.
func newBadServer(t *testing.T) *badServer {
	t.Helper()
	m := store.New(store.DefaultConfig())
	fp := newFakeProposer(m)
	sp := &stallProposer{fakeProposer: fp, returned: make(chan struct{}, 16)}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fc := &fakeCluster{rev: 1}
	srv := New(Config{
		Proposer: sp, Reader: m, Cluster: fc, Logger: logger,
		Unavailable:     []error{errFakeNotLeader},
		Exhausted:       []error{errFakeQueueFull},
		Precondition:    []error{errFakeNoFeature},
		ReadWaitTimeout: 100 * time.Millisecond,
	})
	addr := serveTCP(t, srv, ServerOptions(logger)...) // as cmd/stockd builds it
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", addr, err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("close client: %v", err)
		}
		if strings.Contains(logs.String(), "level=ERROR") {
			t.Errorf("the server logged errors (an INTERNAL or a panic):\n%s", logs.String())
		}
	})
	return &badServer{
		harness: &harness{
			m: m, p: fp, srv: srv, logs: logs, conn: conn,
			inv:    stockdv1.NewInventoryClient(conn),
			erp:    stockdv1.NewErpClient(conn),
			adm:    stockdv1.NewAdminClient(conn),
			clu:    stockdv1.NewClusterClient(conn),
			health: healthpb.NewHealthClient(conn),
		},
		stall: sp,
		fc:    fc,
	}
}

// The seeded state, named so cases can refer to it.
const (
	soldRef     = "SO-1"     // the order of reservation "sold"
	absorbedRef = "SO-2"     // the order of reservation "absorbed", in the ERP's counts
	poLine      = "PO-1"     // incoming ROSE at WH1
	caseSKU     = "ROSE-C12" // ROSE x 12
	hugeSKU     = "ROSE-1M"  // ROSE x 1,000,000
)

// seedBad builds: locations WH1, WH2 (channel web, in that order), WH3 (no
// channel) and EMPTY (nothing uses it); group "north" (WH1, WH2) followed by
// channel "grp"; channel "strict" (WH1, mappings required); SKU mappings
// ROSE-C12 and ROSE-1M; counts ROSE 100@WH1 50@WH2 10@WH3, TULIP 5@WH1; a
// buffer rule; an incoming line; reservations "held" (2 ROSE, live),
// "cased" (1 ROSE-C12, live),
// "sold" (confirmed, SO-1), "absorbed" (confirmed, SO-2, booked and
// absorbed), "gone" (released) and "late" (expired).
func (b *badServer) seedBad(t *testing.T) {
	t.Helper()
	ctx := testContext(t)
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("seed: %s: %v", what, err)
		}
	}
	for _, id := range []string{"WH1", "WH2", "WH3", "EMPTY"} {
		_, err := b.adm.PutLocation(ctx, &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: id, Name: id}})
		must("PutLocation "+id, err)
	}
	_, err := b.adm.PutLocationGroup(ctx, &stockdv1.PutLocationGroupRequest{Group: &stockdv1.LocationGroup{Id: "north", Locations: []string{"WH1", "WH2"}}})
	must("PutLocationGroup north", err)
	for _, c := range []*stockdv1.Channel{
		{Id: "web", Locations: []string{"WH1", "WH2"}},
		{Id: "grp", LocationGroup: "north"},
		{Id: "strict", Locations: []string{"WH1"}, RequireSkuMapping: true},
	} {
		_, err := b.adm.PutChannel(ctx, &stockdv1.PutChannelRequest{Channel: c})
		must("PutChannel "+c.GetId(), err)
	}
	for _, k := range []*stockdv1.Sku{{Sku: caseSKU, Item: "ROSE", Factor: 12}, {Sku: hugeSKU, Item: "ROSE", Factor: 1_000_000}} {
		_, err := b.adm.PutSku(ctx, &stockdv1.PutSkuRequest{Sku: k})
		must("PutSku "+k.GetSku(), err)
	}
	resp, err := b.erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
		{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 100, Version: 1},
		{Item: "ROSE", Location: "WH2", OnHandBaseUnits: 50, Version: 1},
		{Item: "ROSE", Location: "WH3", OnHandBaseUnits: 10, Version: 1},
		{Item: "TULIP", Location: "WH1", OnHandBaseUnits: 5, Version: 1},
	}})
	must("SetStock", err)
	if resp.GetApplied() != 4 {
		t.Fatalf("seed: SetStock: got %v, want 4 rows applied", resp.GetRows())
	}
	_, err = b.adm.SetBuffer(ctx, &stockdv1.SetBufferRequest{Item: "TULIP", Channel: "web", Location: "WH1", BufferBaseUnits: 1})
	must("SetBuffer", err)
	in, err := b.erp.SetIncoming(ctx, &stockdv1.SetIncomingRequest{Lines: []*stockdv1.IncomingLine{{
		PoLineId: poLine, Item: "ROSE", Location: "WH1", QuantityBaseUnits: 20,
		Eta: timestamppb.New(time.Unix(0, int64(t0)).Add(48 * time.Hour)), Version: 1,
	}}})
	must("SetIncoming", err)
	if in.GetApplied() != 1 {
		t.Fatalf("seed: SetIncoming: got %v, want applied", in.GetRows())
	}
	reserve := func(id string, qty int64, ttl time.Duration) {
		t.Helper()
		req := reserveReq(id, qty)
		if ttl > 0 {
			req.Ttl = durationpb.New(ttl)
		}
		_, err := b.inv.Reserve(ctx, req)
		must("Reserve "+id, err)
	}
	confirm := func(id, ref string) uint64 {
		t.Helper()
		resp, err := b.inv.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: "web", ReservationId: id, OrderRef: ref})
		must("Confirm "+id, err)
		return resp.GetReservation().GetOrderSeq()
	}
	reserve("late", 1, time.Second)
	b.p.advance(2 * time.Second) // "late" is expired by the next entry
	reserve("held", 2, 0)
	_, err = b.inv.Reserve(ctx, &stockdv1.ReserveRequest{Channel: "web", ReservationId: "cased",
		Lines: []*stockdv1.ReserveLine{{Sku: caseSKU, Quantity: 1}}})
	must("Reserve cased", err)
	reserve("sold", 3, 0)
	confirm("sold", soldRef)
	reserve("absorbed", 1, 0)
	seq := confirm("absorbed", absorbedRef)
	reserve("gone", 1, 0)
	_, err = b.inv.Release(ctx, &stockdv1.ReleaseRequest{Channel: "web", ReservationId: "gone"})
	must("Release gone", err)
	ack, err := b.erp.AckOrders(ctx, &stockdv1.AckOrdersRequest{Acks: []*stockdv1.OrderAck{{Seq: seq, Outcome: stockdv1.OrderOutcome_ORDER_OUTCOME_BOOKED}}})
	must("AckOrders", err)
	if ack.GetRows()[0].GetStatus() != stockdv1.RowStatus_ROW_STATUS_APPLIED {
		t.Fatalf("seed: AckOrders(%d BOOKED): got %v, want applied", seq, ack.GetRows())
	}
	// The ERP's count of ROSE@WH1 now includes the absorbed order.
	mark, err := b.erp.SetStock(ctx, &stockdv1.SetStockRequest{AbsorbedMark: seq, Rows: []*stockdv1.StockCount{
		{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 99, Version: 2},
	}})
	must("SetStock with the absorbed mark", err)
	if mark.GetApplied() != 1 {
		t.Fatalf("seed: SetStock(absorbed_mark %d): got %v, want applied", seq, mark.GetRows())
	}
	r, err := b.inv.GetReservation(ctx, &stockdv1.GetReservationRequest{Channel: "web", ReservationId: "late"})
	must("GetReservation late", err)
	if r.GetReservation().GetState() != stockdv1.ReservationState_RESERVATION_STATE_EXPIRED {
		t.Fatalf("seed: reservation late: got %s, want EXPIRED", r.GetReservation().GetState())
	}
}

// stateRecords is the machine's canonical record stream: the meta record
// with its applied index, log time and prune sequence cleared (they move with
// every applied entry, a refusal's too), and every other record as its
// deterministic encoding, tagged with its kind.
func stateRecords(t *testing.T, m *store.Machine) (meta string, recs []string) {
	t.Helper()
	err := m.Snapshot().WriteRecords(func(b []byte) error {
		var rec logv1.SnapshotRecord
		if err := proto.Unmarshal(b, &rec); err != nil {
			return err
		}
		if mt := rec.GetMeta(); mt != nil {
			mt.AppliedIndex, mt.TimeUnixNanos, mt.NextPruneSeq = 0, 0, 0
			out, err := proto.MarshalOptions{Deterministic: true}.Marshal(mt)
			meta = string(out)
			return err
		}
		kind := string(rec.ProtoReflect().WhichOneof(rec.ProtoReflect().Descriptor().Oneofs().ByName("kind")).Name())
		recs = append(recs, kind+":"+string(b))
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot records: %v", err)
	}
	slices.Sort(recs)
	return meta, recs
}

// recordDiff lists the kinds of the records only in a (removed) and only in
// b (added); a changed record shows in both.
func recordDiff(a, b []string) (removed, added []string) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i] < b[j]):
			removed = append(removed, kindOfRecord(a[i]))
			i++
		case i == len(a) || b[j] < a[i]:
			added = append(added, kindOfRecord(b[j]))
			j++
		default:
			i++
			j++
		}
	}
	return removed, added
}

func kindOfRecord(r string) string { k, _, _ := strings.Cut(r, ":"); return k }

// stateWatch captures the state before a call and checks it after.
type stateWatch struct {
	digest    [32]byte
	proposals int
	meta      string
	recs      []string
}

func (b *badServer) watchState(t *testing.T) stateWatch {
	t.Helper()
	meta, recs := stateRecords(t, b.m)
	return stateWatch{digest: b.digest(t), proposals: b.p.count(), meta: meta, recs: recs}
}

// check fails unless the state is as where allows; mayChange lists record
// kinds an inLog refusal may add or change besides a remembered refusal
// (the dead letters of a rejected ERP row, say).
func (w stateWatch) check(t *testing.T, b *badServer, input string, where decided, mayChange ...string) {
	t.Helper()
	proposed := b.p.count() - w.proposals
	switch where {
	case beforeLog:
		if proposed != 0 {
			t.Errorf("%s: %d commands proposed, want none (an input error never reaches the log)", input, proposed)
		}
	case inLog:
		if proposed != 1 {
			t.Errorf("%s: %d commands proposed, want 1 (refused by the state machine)", input, proposed)
		}
	}
	if where != inLog {
		if got := b.digest(t); got != w.digest {
			t.Errorf("%s: state digest moved from %x to %x, want it unchanged", input, w.digest[:6], got[:6])
		}
		return
	}
	meta, recs := stateRecords(t, b.m)
	if meta != w.meta {
		t.Errorf("%s: the snapshot meta changed beyond the applied index and time, want it unchanged", input)
	}
	removed, added := recordDiff(w.recs, recs)
	allowed := append([]string{"refusal"}, mayChange...)
	for _, k := range added {
		if !slices.Contains(allowed, k) {
			t.Errorf("%s: a %s record was added or changed, want only %v", input, k, allowed)
		}
	}
	for _, k := range removed {
		if !slices.Contains(mayChange, k) {
			t.Errorf("%s: a %s record was removed or changed, want none", input, k)
		}
	}
}

// runBadCases runs each case as a subtest against b, in order.
func runBadCases(t *testing.T, b *badServer, cases []badCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := b.watchState(t)
			err := tc.call(testContext(t), b)
			checkStatus(t, tc.name, err, tc.code, tc.field)
			w.check(t, b, tc.name, tc.where)
		})
	}
}

// rowCase is one ERP batch whose row `row` must be answered with status and
// a reason naming field; the batch itself is OK.
type rowCase struct {
	name   string
	call   func(ctx context.Context, b *badServer) ([]*stockdv1.RowResult, error)
	row    int
	status stockdv1.RowStatus
	field  string
	// mayChange: record kinds the batch may add or change (dead letters,
	// a remembered delta).
	mayChange []string
}

var deadLetters = []string{"rejected_row", "rejected_count"}

// runRowCases runs each row case as a subtest: the call succeeds, the row
// is answered as wanted, and no counter, incoming line or order moves.
func runRowCases(t *testing.T, b *badServer, cases []rowCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := b.watchState(t)
			rows, err := tc.call(testContext(t), b)
			if err != nil {
				t.Fatalf("%s: got %v, want OK with row %d %s", tc.name, err, tc.row, tc.status)
			}
			if len(rows) <= tc.row {
				t.Fatalf("%s: got %d rows, want row %d", tc.name, len(rows), tc.row)
			}
			r := rows[tc.row]
			if r.GetStatus() != tc.status || !strings.HasPrefix(r.GetReason(), tc.field+": ") {
				t.Errorf("%s: got row %d %s %q, want %s naming %q", tc.name, tc.row, r.GetStatus(), r.GetReason(), tc.status, tc.field)
			}
			for i, other := range rows {
				if i != tc.row && other.GetStatus() == stockdv1.RowStatus_ROW_STATUS_APPLIED {
					t.Errorf("%s: row %d applied; the cases' other rows must change nothing", tc.name, i)
				}
			}
			w.check(t, b, tc.name, inLog, tc.mayChange...)
		})
	}
}

// staleRose is a row the seeded state ignores as stale (version 1 of
// ROSE@WH1, which holds version 2): a neighbour that changes nothing, so
// the bad row is rows[1].
func staleRose() *stockdv1.StockCount {
	return &stockdv1.StockCount{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 100, Version: 1}
}
