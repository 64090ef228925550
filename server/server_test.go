package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

func TestHappyPath(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	ctx := testContext(t)

	locs, err := h.adm.ListLocations(ctx, &stockdv1.ListLocationsRequest{})
	if err != nil {
		t.Fatalf("ListLocations: %v", err)
	}
	if got := len(locs.GetLocations()); got != 2 || locs.GetLocations()[0].GetId() != "WH1" {
		t.Fatalf("ListLocations: got %v, want WH1 and WH2", locs.GetLocations())
	}
	chs, err := h.adm.ListChannels(ctx, &stockdv1.ListChannelsRequest{})
	if err != nil {
		t.Fatalf("ListChannels: %v", err)
	}
	if got := chs.GetChannels(); len(got) != 1 || got[0].GetId() != "web" || strings.Join(got[0].GetLocations(), ",") != "WH1,WH2" {
		t.Fatalf("ListChannels: got %v, want web seeing WH1,WH2", got)
	}
	if chs.GetRevision() != uint64(h.m.AppliedIndex()) {
		t.Errorf("ListChannels revision: got %d, want %d", chs.GetRevision(), h.m.AppliedIndex())
	}

	if total, per := h.available(t, "web", "ROSE"); total != 15 || fmt.Sprint(per) != "[10 5]" {
		t.Fatalf("ROSE on web before reserve: got %d %v, want 15 [10 5]", total, per)
	}

	res, err := h.inv.Reserve(ctx, &stockdv1.ReserveRequest{
		Channel: "web", ReservationId: "cart-1",
		Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 4}},
		Ttl:   durationpb.New(10 * time.Minute),
	})
	if err != nil {
		t.Fatalf("Reserve(cart-1, 4 ROSE): %v", err)
	}
	r := res.GetReservation()
	if r.GetState() != stockdv1.ReservationState_RESERVATION_STATE_HELD || res.GetRevision() == 0 {
		t.Fatalf("Reserve(cart-1): got state %s revision %d, want HELD and a revision", r.GetState(), res.GetRevision())
	}
	if got := r.GetExpiresAt().AsTime().Sub(r.GetCreatedAt().AsTime()); got != 10*time.Minute {
		t.Errorf("Reserve(cart-1, ttl 10m): expires - created = %v, want 10m", got)
	}
	if got := r.GetCreatedAt().AsTime().UnixNano(); got != int64(t0) {
		t.Errorf("Reserve(cart-1): created_at %d, want the leader stamp %d", got, t0)
	}
	allocs := r.GetLines()[0].GetAllocations()
	if len(allocs) != 1 || allocs[0].GetLocation() != "WH1" || allocs[0].GetQuantitySkuUnits() != 4 || allocs[0].GetQuantityBaseUnits() != 4 {
		t.Fatalf("Reserve(cart-1): allocations %v, want 4 at WH1", allocs)
	}
	if total, per := h.available(t, "web", "ROSE"); total != 11 || fmt.Sprint(per) != "[6 5]" {
		t.Fatalf("ROSE on web after reserving 4: got %d %v, want 11 [6 5]", total, per)
	}

	// Read-your-writes: a read at the reserve's revision sees the hold.
	got, err := h.inv.GetReservation(ctx, &stockdv1.GetReservationRequest{Channel: "web", ReservationId: "cart-1", MinRevision: res.GetRevision()})
	if err != nil {
		t.Fatalf("GetReservation(cart-1): %v", err)
	}
	if got.GetRevision() < res.GetRevision() || got.GetReservation().GetState() != stockdv1.ReservationState_RESERVATION_STATE_HELD {
		t.Fatalf("GetReservation(cart-1, min %d): got revision %d state %s, want >= %d HELD",
			res.GetRevision(), got.GetRevision(), got.GetReservation().GetState(), res.GetRevision())
	}

	conf, err := h.inv.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: "web", ReservationId: "cart-1", OrderRef: "SO-1"})
	if err != nil {
		t.Fatalf("Confirm(cart-1): %v", err)
	}
	if c := conf.GetReservation(); c.GetState() != stockdv1.ReservationState_RESERVATION_STATE_CONFIRMED || c.GetOrderRef() != "SO-1" || c.GetOrderSeq() == 0 {
		t.Fatalf("Confirm(cart-1): got %v, want CONFIRMED SO-1 with an order seq", c)
	}
	avail, err := h.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE"}})
	if err != nil {
		t.Fatalf("GetAvailability: %v", err)
	}
	if wh1 := avail.GetSkus()[0].GetLocations()[0]; wh1.GetCommittedBaseUnits() != 4 || wh1.GetReservedBaseUnits() != 0 || wh1.GetAvailableSkuUnits() != 6 {
		t.Fatalf("ROSE at WH1 after confirm: got %v, want committed 4 reserved 0 available 6", wh1)
	}

	if _, err := h.inv.Reserve(ctx, reserveReq("cart-2", 3)); err != nil {
		t.Fatalf("Reserve(cart-2, 3 ROSE): %v", err)
	}
	if total, _ := h.available(t, "web", "ROSE"); total != 8 {
		t.Fatalf("ROSE on web after reserving 3 more: got %d, want 8", total)
	}
	rel, err := h.inv.Release(ctx, &stockdv1.ReleaseRequest{Channel: "web", ReservationId: "cart-2"})
	if err != nil {
		t.Fatalf("Release(cart-2): %v", err)
	}
	if rel.GetReservation().GetState() != stockdv1.ReservationState_RESERVATION_STATE_RELEASED {
		t.Fatalf("Release(cart-2): got state %s, want RELEASED", rel.GetReservation().GetState())
	}
	if total, _ := h.available(t, "web", "ROSE"); total != 11 {
		t.Fatalf("ROSE on web after release: got %d, want 11", total)
	}

	if _, err := h.adm.SetBuffer(ctx, &stockdv1.SetBufferRequest{Item: "ROSE", Channel: "web", Location: "WH2", BufferBaseUnits: 2}); err != nil {
		t.Fatalf("SetBuffer(ROSE, web, WH2, 2): %v", err)
	}
	if total, per := h.available(t, "web", "ROSE"); total != 9 || fmt.Sprint(per) != "[6 3]" {
		t.Fatalf("ROSE on web after buffer 2 at WH2: got %d %v, want 9 [6 3]", total, per)
	}
}

func TestGetAvailabilityAnswersInRequestOrder(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	h.setStock(t, "TULIP", "WH2", 7, 1)
	resp, err := h.inv.GetAvailability(testContext(t), &stockdv1.GetAvailabilityRequest{
		Channel: "web", Skus: []string{"TULIP", "NEVER-COUNTED", "ROSE"},
	})
	if err != nil {
		t.Fatalf("GetAvailability: %v", err)
	}
	var got []string
	for _, a := range resp.GetSkus() {
		got = append(got, fmt.Sprintf("%s=%d/%v/%d", a.GetSku(), a.GetAvailableSkuUnits(), a.GetKnown(), len(a.GetLocations())))
	}
	if want := "[TULIP=7/true/2 NEVER-COUNTED=0/false/2 ROSE=15/true/2]"; fmt.Sprint(got) != want {
		t.Fatalf("GetAvailability(TULIP, NEVER-COUNTED, ROSE): got %v, want %s", got, want)
	}
	if resp.GetRevision() != uint64(h.m.AppliedIndex()) {
		t.Errorf("revision: got %d, want %d", resp.GetRevision(), h.m.AppliedIndex())
	}
}

// The BASIC view answers the same figures as FULL without the item, the
// per-location breakdown or incoming supply; unset is FULL.
func TestGetAvailabilityViews(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	h.setStock(t, "TULIP", "WH2", 7, 1)
	ctx := testContext(t)
	skus := []string{"TULIP", "NEVER-COUNTED", "ROSE"}
	answers := map[stockdv1.AvailabilityView]*stockdv1.GetAvailabilityResponse{}
	for _, view := range []stockdv1.AvailabilityView{
		stockdv1.AvailabilityView_AVAILABILITY_VIEW_UNSPECIFIED,
		stockdv1.AvailabilityView_AVAILABILITY_VIEW_BASIC,
		stockdv1.AvailabilityView_AVAILABILITY_VIEW_FULL,
	} {
		resp, err := h.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: skus, View: view})
		if err != nil {
			t.Fatalf("GetAvailability(view %s): %v", view, err)
		}
		answers[view] = resp
	}
	full := answers[stockdv1.AvailabilityView_AVAILABILITY_VIEW_FULL]
	if !proto.Equal(answers[stockdv1.AvailabilityView_AVAILABILITY_VIEW_UNSPECIFIED], full) {
		t.Errorf("view unset: got %v, want the FULL answer %v", answers[stockdv1.AvailabilityView_AVAILABILITY_VIEW_UNSPECIFIED], full)
	}
	basic := answers[stockdv1.AvailabilityView_AVAILABILITY_VIEW_BASIC]
	for i, f := range full.GetSkus() {
		if len(f.GetLocations()) == 0 || f.GetItem() == "" {
			t.Fatalf("FULL %s: got %v, want its item and locations", f.GetSku(), f)
		}
		want := &stockdv1.SkuAvailability{Sku: f.GetSku(), AvailableSkuUnits: f.GetAvailableSkuUnits(), Known: f.GetKnown(),
			ModRevision: f.GetModRevision(), Factor: f.GetFactor()}
		if got := basic.GetSkus()[i]; !proto.Equal(got, want) {
			t.Errorf("BASIC %s: got %v, want %v", f.GetSku(), got, want)
		}
	}
}

// TestMinRevision covers read-your-writes (I5): a read waits for its
// min_revision, bounded by ReadWaitTimeout.
func TestMinRevision(t *testing.T) {
	t.Run("a revision not reached in time is unavailable", func(t *testing.T) {
		h := newHarness(t, withReadWait(20*time.Millisecond))
		h.seed(t)
		ahead := uint64(h.m.AppliedIndex()) + 1
		_, err := h.inv.GetAvailability(testContext(t), &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE"}, MinRevision: ahead})
		checkStatus(t, fmt.Sprintf("GetAvailability(min_revision %d)", ahead), err, codes.Unavailable, "min_revision")
		_, err = h.inv.GetReservation(testContext(t), &stockdv1.GetReservationRequest{Channel: "web", ReservationId: "x", MinRevision: ahead})
		checkStatus(t, fmt.Sprintf("GetReservation(min_revision %d)", ahead), err, codes.Unavailable, "min_revision")
	})
	t.Run("the caller's deadline keeps its own code", func(t *testing.T) {
		h := newHarness(t)
		h.seed(t)
		ctx, cancel := context.WithTimeout(testContext(t), 20*time.Millisecond)
		defer cancel()
		_, err := h.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE"}, MinRevision: 1 << 40})
		checkStatus(t, "GetAvailability(min_revision 2^40, 20ms deadline)", err, codes.DeadlineExceeded, "")
	})
	t.Run("a read waits for a revision applied meanwhile", func(t *testing.T) {
		h := newHarness(t, withReadWait(time.Minute))
		h.seed(t)
		want := uint64(h.m.AppliedIndex()) + 1
		type answer struct {
			rev   uint64
			total int64
			err   error
		}
		done := make(chan answer, 1)
		go func() {
			resp, err := h.inv.GetAvailability(testContext(t), &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE"}, MinRevision: want})
			a := answer{rev: resp.GetRevision(), err: err}
			if err == nil {
				a.total = resp.GetSkus()[0].GetAvailableSkuUnits()
			}
			done <- a
		}()
		h.setStock(t, "ROSE", "WH1", 100, 2)
		a := <-done
		if a.err != nil || a.rev < want || a.total != 105 {
			t.Fatalf("GetAvailability(min_revision %d): got revision %d total %d err %v, want >= %d, 105, nil", want, a.rev, a.total, a.err, want)
		}
	})
}

func TestProposerErrors(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want codes.Code
		msg  string
	}{
		{"no leader is unavailable", fmt.Errorf("forward reserve to 10.0.0.3:7401: %w", errFakeNotLeader), codes.Unavailable, "not leader"},
		{"a full queue is resource exhausted", fmt.Errorf("propose: %w", errFakeQueueFull), codes.ResourceExhausted, "proposal queue full"},
		{"a cancelled wait is cancelled", fmt.Errorf("wait for commit: %w", context.Canceled), codes.Canceled, ""},
		{"a timed out wait is deadline exceeded", fmt.Errorf("wait for commit: %w", context.DeadlineExceeded), codes.DeadlineExceeded, ""},
		{"anything else is internal and says nothing", errors.New("raft: secret detail 10.0.0.3"), codes.Internal, internalMessage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.seed(t)
			h.p.setFail(tc.err)
			_, err := h.inv.Reserve(testContext(t), reserveReq("cart-1", 1))
			checkStatus(t, fmt.Sprintf("Reserve with proposer error %q", tc.err), err, tc.want, "")
			msg := err.Error()
			if tc.msg != "" && !strings.HasSuffix(msg, "desc = "+tc.msg) {
				t.Errorf("Reserve with proposer error %q: got message %q, want %q", tc.err, msg, tc.msg)
			}
			if strings.Contains(msg, "10.0.0.3") {
				t.Errorf("Reserve with proposer error %q: got message %q, which leaks the detail", tc.err, msg)
			}
			if tc.want == codes.Internal && !strings.Contains(h.logs.String(), "secret detail") {
				t.Errorf("Reserve with proposer error %q: the detail is missing from the log", tc.err)
			}
		})
	}
}

func TestHealthThroughTheChain(t *testing.T) {
	h := newHarness(t)
	ctx := testContext(t)
	for _, svc := range append([]string{""}, h.srv.serviceNames()...) {
		resp, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("Check(%q): %v", svc, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q): got %s, want SERVING", svc, resp.GetStatus())
		}
	}
	// The logging interceptor saw the call, so health runs behind the chain.
	if logs := h.logs.String(); !strings.Contains(logs, "grpc.service=grpc.health.v1.Health grpc.method=Check") {
		t.Fatalf("health Check is not in the log:\n%s", logs)
	}
	h.srv.Drain()
	resp, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{Service: h.srv.serviceNames()[0]})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Check(%q) after Drain: got %s %v, want NOT_SERVING", h.srv.serviceNames()[0], resp.GetStatus(), err)
	}
}

// panickyReader panics on the SKU "boom".
type panickyReader struct{ *store.Machine }

func (r panickyReader) Availability(ch store.ChannelID, sku store.SKU, dst *store.SKUAvailability) error {
	if sku == "boom" {
		panic("reader exploded with secret detail")
	}
	return r.Machine.Availability(ch, sku, dst)
}

func TestHandlerPanicIsInternal(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		t.Run("logging at "+level.String(), func(t *testing.T) {
			h := newHarness(t, withLogLevel(level), withReader(func(m *store.Machine) Reader { return panickyReader{m} }))
			h.seed(t)
			ctx := testContext(t)
			_, err := h.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"boom"}})
			checkStatus(t, "GetAvailability(boom)", err, codes.Internal, "")
			if strings.Contains(err.Error(), "secret") || !strings.HasSuffix(err.Error(), "desc = "+internalMessage) {
				t.Errorf("GetAvailability(boom): got %q, want only %q", err, internalMessage)
			}
			logs := h.logs.String()
			if !strings.Contains(logs, "reader exploded") || !strings.Contains(logs, "panickyReader.Availability") {
				t.Errorf("GetAvailability(boom): the panic and its stack are missing from the log:\n%s", logs)
			}
			if total, _ := h.available(t, "web", "ROSE"); total != 15 {
				t.Fatalf("GetAvailability(ROSE) after a panic: got %d, want 15", total)
			}
		})
	}
}

// TestLoggingGate checks the hot path without debug logging: successes leave
// no line, an INTERNAL answer is logged at warn with the method and duration.
func TestLoggingGate(t *testing.T) {
	h := newHarness(t, withLogLevel(slog.LevelInfo))
	h.seed(t)
	h.available(t, "web", "ROSE")
	if logs := h.logs.String(); logs != "" {
		t.Fatalf("successful calls at info level: got log lines\n%s\nwant none", logs)
	}
	h.p.setFail(errors.New("disk on fire"))
	_, err := h.inv.Reserve(testContext(t), reserveReq("cart-1", 1))
	checkStatus(t, "Reserve with a failing proposer", err, codes.Internal, "")
	logs := h.logs.String()
	for _, want := range []string{"level=WARN msg=\"finished call\"", "grpc.method=Reserve", "grpc.code=Internal", "grpc.duration=", "disk on fire"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log after an INTERNAL answer: missing %q in\n%s", want, logs)
		}
	}
}

// TestNoClusterDependency keeps server free of cluster, raft and bbolt (STYLE.md).
func TestNoClusterDependency(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go binary not found:", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "-test", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps -test .: %v\n%s", err, out)
	}
	forbidden := []string{"github.com/stockd/stockd/cluster", "github.com/hashicorp/raft", "github.com/hashicorp/raft-boltdb", "go.etcd.io/bbolt", "github.com/boltdb/bolt"}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps -test .: got %d packages, want the full list:\n%s", len(deps), out)
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("server depends on %s; it must not depend on %s", dep, f)
			}
		}
	}
}
