package main

import (
	"errors"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/stockdv1"
)

// watchFake answers Watch with fixed messages, then ends the stream, and
// records the request.
type watchFake struct {
	stockdv1.UnimplementedInventoryServer
	got  chan *stockdv1.WatchRequest
	msgs []*stockdv1.WatchResponse
}

func (f *watchFake) Watch(req *stockdv1.WatchRequest, stream stockdv1.Inventory_WatchServer) error {
	f.got <- req
	for _, m := range f.msgs {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	return nil
}

func startWatchFake(t *testing.T, msgs ...*stockdv1.WatchResponse) (*watchFake, string) {
	t.Helper()
	f := &watchFake{got: make(chan *stockdv1.WatchRequest, 1), msgs: msgs}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := grpc.NewServer()
	stockdv1.RegisterInventoryServer(srv, f)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("serve: %v", err)
		}
	})
	return f, lis.Addr().String()
}

func watchEvent(sku string, avail int64, rev uint64) *stockdv1.WatchEvent {
	return &stockdv1.WatchEvent{Revision: rev, Availability: &stockdv1.SkuAvailability{Sku: sku, AvailableSkuUnits: avail,
		ModRevision: rev, Locations: []*stockdv1.LocationAvailability{{Location: "ams", AvailableSkuUnits: avail}}}}
}

func TestWatchPrintsEventsAndTheMarkToResumeFrom(t *testing.T) {
	msgs := []*stockdv1.WatchResponse{
		{Resync: true, ResyncReason: stockdv1.ResyncReason_RESYNC_REASON_INITIAL, Revision: 7, Events: []*stockdv1.WatchEvent{watchEvent("ROSE", 10, 5)}},
		{Revision: 9, Events: []*stockdv1.WatchEvent{watchEvent("ROSE", 8, 8), watchEvent("ROSE-RED", 2, 9)}},
		{Revision: 10, Events: []*stockdv1.WatchEvent{{Revision: 10, Removed: true, Availability: &stockdv1.SkuAvailability{Sku: "ROSE-RED"}}}},
	}
	f, addr := startWatchFake(t, msgs...)
	code, out, errOut := runCLI(t, addr, "watch", "--channel", "web", "--prefix", "ROSE", "--from-revision", "3")
	if code != 0 {
		t.Fatalf("watch: exit %d, stderr %q", code, errOut)
	}
	if req := <-f.got; !proto.Equal(req, &stockdv1.WatchRequest{Channel: "web", SkuPrefix: "ROSE", FromRevision: 3}) {
		t.Fatalf("watch --channel web --prefix ROSE --from-revision 3: sent %v", req)
	}
	var rows [][]string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		rows = append(rows, strings.Fields(l))
	}
	want := [][]string{
		{"REVISION", "SKU", "AVAILABLE", "MOD_REVISION", "LOCATIONS"},
		{"5", "ROSE", "10", "5", "ams=10"},
		{"8", "ROSE", "8", "8", "ams=8"},
		{"9", "ROSE-RED", "2", "9", "ams=2"},
		{"10", "ROSE-RED", "removed", "-", "-"},
	}
	if len(rows) != len(want) {
		t.Fatalf("watch: got rows %q, want %q", rows, want)
	}
	for i := range want {
		if strings.Join(rows[i], " ") != strings.Join(want[i], " ") {
			t.Fatalf("watch row %d: got %q, want %q", i, rows[i], want[i])
		}
	}
	if !strings.Contains(errOut, "resync (initial)") || !strings.Contains(errOut, "--from-revision 10") {
		t.Fatalf("watch: got stderr %q, want the resync note and the mark 10 to resume from", errOut)
	}
}

func TestWatchPrintsJSONLinesAndRefusesBadUsage(t *testing.T) {
	msgs := []*stockdv1.WatchResponse{{Revision: 4, Events: []*stockdv1.WatchEvent{watchEvent("ROSE", 1, 4)}}}
	f, addr := startWatchFake(t, msgs...)
	code, out, errOut := runCLI(t, addr, "--json", "watch", "--channel", "web", "ROSE", "TULIP")
	if code != 0 {
		t.Fatalf("watch --json: exit %d, stderr %q", code, errOut)
	}
	if req := <-f.got; !proto.Equal(req, &stockdv1.WatchRequest{Channel: "web", Skus: []string{"ROSE", "TULIP"}}) {
		t.Fatalf("watch --channel web ROSE TULIP: sent %v", req)
	}
	var got stockdv1.WatchResponse
	if err := protojson.Unmarshal([]byte(strings.TrimSpace(out)), &got); err != nil || !proto.Equal(&got, msgs[0]) {
		t.Fatalf("watch --json: got %q (%v), want one line with %v", out, err, msgs[0])
	}
	for _, args := range [][]string{{"watch"}, {"watch", "--channel", "web", "--prefix", "R", "ROSE"}} {
		if code, _, _ := runCLI(t, addr, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)", args, code)
		}
	}
}
