package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stockd/stockd/api/stockdv1"
)

// fakeState is a minimal in-memory stand-in for a stockd node: enough to
// record what stockctl sends and to answer with plausible figures.
type fakeState struct {
	mu        sync.Mutex
	revision  uint64
	locations map[string]string // id -> name
	locOrder  []string
	channels  map[string]*stockdv1.Channel
	counters  map[counterKey]*fakeCounter
	// setStockBatches holds the row count of every SetStock call, in order.
	setStockBatches []int
	adjustments     []*stockdv1.StockAdjustment
	reserves        []*stockdv1.ReserveRequest
	availRequests   []*stockdv1.GetAvailabilityRequest
	resRequests     []*stockdv1.GetReservationRequest
	cluster         fakeClusterState

	// calls holds every request of the issue 4 surface, and of Reserve,
	// GetAvailability, PutChannel and the lists, in order, for tests to
	// compare.
	calls []proto.Message
	// reservations are the holds made through Reserve or seeded by a test.
	reservations []*stockdv1.Reservation
	groups       map[string][]string
	skus         map[string]*stockdv1.Sku
	buffers      map[bufferKey]int64
	incoming     map[string]*stockdv1.IncomingLine
	// backordered is what backorders took from each incoming line.
	backordered map[string]int64
	// modRevisions is each SKU's mod_revision as availability reports it.
	modRevisions map[string]uint64
	// releasedAll answers a repeated release_all_id with its first count.
	releasedAll map[string]uint32
	// outbox is the fake order outbox and dead-letter list.
	outbox fakeOutbox
}

type bufferKey struct{ item, channel, location string }

// fakeClusterState is what the fake Cluster service records and answers.
type fakeClusterState struct {
	joins  []*stockdv1.JoinRequest
	leaves []*stockdv1.LeaveRequest
	status *stockdv1.StatusResponse
	// snapshot is streamed in chunks of chunkBytes, each with snapshotIndex.
	snapshot      []byte
	snapshotIndex uint64
	chunkBytes    int
	// failAfter, when >= 0, ends the stream with failErr after that many chunks.
	failAfter int
	failErr   error
	// indexDrift, when set, gives every chunk after the first another index.
	indexDrift bool
}

type counterKey struct{ item, location string }

type fakeCounter struct {
	onHand, reserved int64
	version          uint64
}

func newFakeState() *fakeState {
	return &fakeState{
		locations:    map[string]string{},
		channels:     map[string]*stockdv1.Channel{},
		counters:     map[counterKey]*fakeCounter{},
		groups:       map[string][]string{},
		skus:         map[string]*stockdv1.Sku{},
		buffers:      map[bufferKey]int64{},
		incoming:     map[string]*stockdv1.IncomingLine{},
		backordered:  map[string]int64{},
		modRevisions: map[string]uint64{},
		releasedAll:  map[string]uint32{},
		cluster:      fakeClusterState{status: &stockdv1.StatusResponse{}, chunkBytes: 256 << 10, failAfter: -1},
	}
}

// startFake serves the three stockd services on 127.0.0.1 with an OS-picked
// port and returns the state behind them and the address.
func startFake(t *testing.T) (*fakeState, string) {
	t.Helper()
	st := newFakeState()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := grpc.NewServer()
	stockdv1.RegisterInventoryServer(srv, &fakeInventory{st: st})
	stockdv1.RegisterErpServer(srv, &fakeErp{st: st})
	stockdv1.RegisterAdminServer(srv, &fakeAdmin{st: st})
	stockdv1.RegisterClusterServer(srv, &fakeCluster{st: st})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("serve: %v", err)
		}
	})
	return st, lis.Addr().String()
}

// runCLI runs stockctl against addr and returns its exit status and output.
func runCLI(t *testing.T, addr string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), append([]string{"--addr", addr}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func (st *fakeState) nextRevision() uint64 {
	st.revision++
	return st.revision
}

// channelLocations are the locations ch sees: its own or its group's.
func (st *fakeState) channelLocations(ch *stockdv1.Channel) []string {
	if ch.GetLocationGroup() != "" {
		return st.groups[ch.GetLocationGroup()]
	}
	return ch.GetLocations()
}

// mapping is the item and pack factor of sku: its own item, factor 1, unless
// a PutSku says otherwise.
func (st *fakeState) mapping(sku string) (item string, factor int64) {
	if m, ok := st.skus[sku]; ok {
		return m.GetItem(), m.GetFactor()
	}
	return sku, 1
}

// incomingLeft is what a backorder may still take from an incoming line, in
// base units.
func (st *fakeState) incomingLeft(l *stockdv1.IncomingLine) int64 {
	return l.GetQuantityBaseUnits() - l.GetReceivedBaseUnits() - st.backordered[l.GetPoLineId()]
}

// incomingFor is the incoming lines of item at locs, by PO line id.
func (st *fakeState) incomingFor(item string, locs []string) []*stockdv1.IncomingLine {
	var out []*stockdv1.IncomingLine
	for _, id := range sortedKeys(st.incoming) {
		if l := st.incoming[id]; l.GetItem() == item && slices.Contains(locs, l.GetLocation()) {
			out = append(out, l)
		}
	}
	return out
}

func (st *fakeState) availability(ch *stockdv1.Channel, sku string) *stockdv1.SkuAvailability {
	item, factor := st.mapping(sku)
	a := &stockdv1.SkuAvailability{Sku: sku, Item: item, Factor: factor, ModRevision: st.modRevisions[sku]}
	locs := st.channelLocations(ch)
	for _, loc := range locs {
		c, ok := st.counters[counterKey{item, loc}]
		if !ok {
			c = &fakeCounter{}
		} else {
			a.Known = true
		}
		buffer := ch.GetDefaultBufferBaseUnits()
		avail := max(0, c.onHand-c.reserved-buffer) / factor
		a.AvailableSkuUnits += avail
		a.Locations = append(a.Locations, &stockdv1.LocationAvailability{
			Location:           loc,
			AvailableSkuUnits:  avail,
			OnHandBaseUnits:    c.onHand,
			ReservedBaseUnits:  c.reserved,
			BufferBaseUnits:    buffer,
			OversoldBaseUnits:  max(0, c.reserved-c.onHand),
			CommittedBaseUnits: 0,
		})
	}
	for _, l := range st.incomingFor(item, locs) {
		a.Incoming = append(a.Incoming, &stockdv1.IncomingAvailability{
			PoLineId:          l.GetPoLineId(),
			Location:          l.GetLocation(),
			Eta:               l.GetEta(),
			AvailableSkuUnits: st.incomingLeft(l) / factor,
		})
	}
	return a
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

type fakeInventory struct {
	stockdv1.UnimplementedInventoryServer
	st *fakeState
}

func (f *fakeInventory) GetAvailability(_ context.Context, req *stockdv1.GetAvailabilityRequest) (*stockdv1.GetAvailabilityResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.availRequests = append(st.availRequests, req)
	st.calls = append(st.calls, req)
	ch, ok := st.channels[req.GetChannel()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "channel: unknown channel %q", req.GetChannel())
	}
	if len(req.GetSkus()) > 1000 {
		return nil, status.Error(codes.InvalidArgument, "skus: at most 1000")
	}
	resp := &stockdv1.GetAvailabilityResponse{Revision: st.revision}
	for _, sku := range req.GetSkus() {
		resp.Skus = append(resp.Skus, st.availability(ch, sku))
	}
	return resp, nil
}

// Reserve holds each line at the first location with enough units (the one
// it names, if any); a line with allow_backorder that fits nowhere takes the
// first incoming line with enough left. A line whose expected_mod_revision is
// not the SKU's is ABORTED with the current figure, as stockd answers.
func (f *fakeInventory) Reserve(_ context.Context, req *stockdv1.ReserveRequest) (*stockdv1.ReserveResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	ch, ok := st.channels[req.GetChannel()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "channel: unknown channel %q", req.GetChannel())
	}
	st.reserves = append(st.reserves, req)
	res := &stockdv1.Reservation{
		Channel:       req.GetChannel(),
		ReservationId: req.GetReservationId(),
		State:         stockdv1.ReservationState_RESERVATION_STATE_HELD,
		CreatedAt:     timestamppb.Now(),
	}
	res.ExpiresAt = timestamppb.New(res.GetCreatedAt().AsTime().Add(req.GetTtl().AsDuration()))
	for i, l := range req.GetLines() {
		if want := l.GetExpectedModRevision(); want != 0 && want != st.modRevisions[l.GetSku()] {
			a := st.availability(ch, l.GetSku())
			aborted, err := status.New(codes.Aborted, fmt.Sprintf("lines[%d].expected_mod_revision: revision changed", i)).WithDetails(&errdetails.ErrorInfo{
				Reason: "REVISION_CHANGED",
				Domain: "stockd",
				Metadata: map[string]string{
					"field":               fmt.Sprintf("lines[%d].expected_mod_revision", i),
					"mod_revision":        fmt.Sprint(a.GetModRevision()),
					"available_sku_units": fmt.Sprint(a.GetAvailableSkuUnits()),
				},
			})
			if err != nil {
				return nil, status.Errorf(codes.Internal, "attach detail: %v", err)
			}
			return nil, aborted.Err()
		}
		item, factor := st.mapping(l.GetSku())
		units := l.GetQuantity() * factor
		candidates := st.channelLocations(ch)
		if l.GetLocation() != "" {
			candidates = []string{l.GetLocation()}
		}
		line := &stockdv1.ReservationLine{Sku: l.GetSku(), Item: item, QuantitySkuUnits: l.GetQuantity(), Factor: factor}
		for _, loc := range candidates {
			c, ok := st.counters[counterKey{item, loc}]
			if ok && c.onHand-c.reserved-ch.GetDefaultBufferBaseUnits() >= units {
				c.reserved += units
				line.Allocations = []*stockdv1.Allocation{{Location: loc, QuantitySkuUnits: l.GetQuantity(), QuantityBaseUnits: units}}
				break
			}
		}
		if line.Allocations == nil && l.GetAllowBackorder() {
			for _, in := range st.incomingFor(item, candidates) {
				if st.incomingLeft(in) >= units {
					st.backordered[in.GetPoLineId()] += units
					line.PromisedAt = in.GetEta()
					line.Allocations = []*stockdv1.Allocation{{Location: in.GetLocation(), QuantitySkuUnits: l.GetQuantity(),
						QuantityBaseUnits: units, PoLineId: in.GetPoLineId(), PromisedAt: in.GetEta()}}
					break
				}
			}
		}
		if line.Allocations == nil {
			return nil, status.Errorf(codes.FailedPrecondition, "lines[%d]: insufficient stock for %s", i, l.GetSku())
		}
		res.Lines = append(res.Lines, line)
	}
	st.reservations = append(st.reservations, res)
	return &stockdv1.ReserveResponse{Reservation: res, Revision: st.nextRevision()}, nil
}

// GetReservation answers for a reservation made through the fake, and for
// any other blocks until the call's deadline, to test --timeout.
func (f *fakeInventory) GetReservation(ctx context.Context, req *stockdv1.GetReservationRequest) (*stockdv1.GetReservationResponse, error) {
	st := f.st
	st.mu.Lock()
	st.resRequests = append(st.resRequests, req)
	for _, r := range st.reserves {
		if r.GetChannel() == req.GetChannel() && r.GetReservationId() == req.GetReservationId() {
			resp := &stockdv1.GetReservationResponse{Revision: st.revision, Reservation: &stockdv1.Reservation{
				Channel: r.GetChannel(), ReservationId: r.GetReservationId(), State: stockdv1.ReservationState_RESERVATION_STATE_HELD,
			}}
			st.mu.Unlock()
			return resp, nil
		}
	}
	st.mu.Unlock()
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

type fakeErp struct {
	stockdv1.UnimplementedErpServer
	st *fakeState
}

func (f *fakeErp) SetStock(_ context.Context, req *stockdv1.SetStockRequest) (*stockdv1.SetStockResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.setStockBatches = append(st.setStockBatches, len(req.GetRows()))
	resp := &stockdv1.SetStockResponse{}
	for i, row := range req.GetRows() {
		if _, ok := st.locations[row.GetLocation()]; !ok {
			resp.Rows = append(resp.Rows, &stockdv1.RowResult{
				Status: stockdv1.RowStatus_ROW_STATUS_REJECTED,
				Reason: fmt.Sprintf("rows[%d].location: unknown location %q", i, row.GetLocation()),
			})
			resp.Rejected++
			continue
		}
		k := counterKey{row.GetItem(), row.GetLocation()}
		c, ok := st.counters[k]
		if !ok {
			c = &fakeCounter{}
			st.counters[k] = c
		}
		if row.GetVersion() <= c.version {
			resp.Rows = append(resp.Rows, &stockdv1.RowResult{Status: stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE, Version: c.version, OnHandBaseUnits: c.onHand})
			resp.IgnoredStale++
			continue
		}
		c.onHand, c.version = row.GetOnHandBaseUnits(), row.GetVersion()
		resp.Rows = append(resp.Rows, &stockdv1.RowResult{Status: stockdv1.RowStatus_ROW_STATUS_APPLIED, Version: c.version, OnHandBaseUnits: c.onHand})
		resp.Applied++
	}
	resp.Revision = st.nextRevision()
	return resp, nil
}

func (f *fakeErp) AdjustStock(_ context.Context, req *stockdv1.AdjustStockRequest) (*stockdv1.AdjustStockResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	resp := &stockdv1.AdjustStockResponse{}
	for _, row := range req.GetRows() {
		st.adjustments = append(st.adjustments, row)
		c, ok := st.counters[counterKey{row.GetItem(), row.GetLocation()}]
		if !ok {
			resp.Rows = append(resp.Rows, &stockdv1.RowResult{Status: stockdv1.RowStatus_ROW_STATUS_REJECTED, Reason: "no such counter"})
			resp.Rejected++
			continue
		}
		c.onHand += row.GetDeltaBaseUnits()
		resp.Rows = append(resp.Rows, &stockdv1.RowResult{Status: stockdv1.RowStatus_ROW_STATUS_APPLIED, Version: c.version, OnHandBaseUnits: c.onHand})
		resp.Applied++
	}
	resp.Revision = st.nextRevision()
	return resp, nil
}

type fakeAdmin struct {
	stockdv1.UnimplementedAdminServer
	st *fakeState
}

func (f *fakeAdmin) PutLocation(_ context.Context, req *stockdv1.PutLocationRequest) (*stockdv1.PutLocationResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	id := req.GetLocation().GetId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "location.id: must not be empty")
	}
	if _, ok := st.locations[id]; !ok {
		st.locOrder = append(st.locOrder, id)
	}
	st.locations[id] = req.GetLocation().GetName()
	return &stockdv1.PutLocationResponse{Revision: st.nextRevision()}, nil
}

func (f *fakeAdmin) ListLocations(_ context.Context, req *stockdv1.ListLocationsRequest) (*stockdv1.ListLocationsResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	resp := &stockdv1.ListLocationsResponse{Revision: st.revision}
	for _, id := range st.locOrder {
		resp.Locations = append(resp.Locations, &stockdv1.Location{Id: id, Name: st.locations[id]})
	}
	return resp, nil
}

func (f *fakeAdmin) PutChannel(_ context.Context, req *stockdv1.PutChannelRequest) (*stockdv1.PutChannelResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	ch := req.GetChannel()
	for i, l := range ch.GetLocations() {
		if _, ok := st.locations[l]; !ok {
			return nil, status.Errorf(codes.NotFound, "channel.locations[%d]: unknown location %q", i, l)
		}
	}
	if g := ch.GetLocationGroup(); g != "" {
		if _, ok := st.groups[g]; !ok {
			return nil, status.Errorf(codes.NotFound, "channel.location_group: unknown location group %q", g)
		}
	}
	st.channels[ch.GetId()] = ch
	return &stockdv1.PutChannelResponse{Revision: st.nextRevision()}, nil
}

func (f *fakeAdmin) ListChannels(_ context.Context, req *stockdv1.ListChannelsRequest) (*stockdv1.ListChannelsResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	resp := &stockdv1.ListChannelsResponse{Revision: st.revision}
	ids := make([]string, 0, len(st.channels))
	for id := range st.channels {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		resp.Channels = append(resp.Channels, st.channels[id])
	}
	return resp, nil
}

type fakeCluster struct {
	stockdv1.UnimplementedClusterServer
	st *fakeState
}

func (f *fakeCluster) Join(_ context.Context, req *stockdv1.JoinRequest) (*stockdv1.JoinResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.cluster.joins = append(st.cluster.joins, req)
	return &stockdv1.JoinResponse{Revision: st.nextRevision()}, nil
}

func (f *fakeCluster) Leave(_ context.Context, req *stockdv1.LeaveRequest) (*stockdv1.LeaveResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.cluster.leaves = append(st.cluster.leaves, req)
	if req.GetNodeId() == "nosuch" {
		return nil, status.Error(codes.NotFound, "node_id: unknown node \"nosuch\"")
	}
	return &stockdv1.LeaveResponse{Revision: st.nextRevision()}, nil
}

func (f *fakeCluster) Status(context.Context, *stockdv1.StatusRequest) (*stockdv1.StatusResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cluster.status, nil
}

func (f *fakeCluster) SaveSnapshot(_ *stockdv1.SaveSnapshotRequest, stream stockdv1.Cluster_SaveSnapshotServer) error {
	st := f.st
	st.mu.Lock()
	c := st.cluster
	st.mu.Unlock()
	index := c.snapshotIndex
	for i, b := 0, c.snapshot; len(b) > 0; i++ {
		if i == c.failAfter {
			return c.failErr
		}
		n := min(len(b), c.chunkBytes)
		if err := stream.Send(&stockdv1.SnapshotChunk{Data: b[:n], Index: index}); err != nil {
			return err
		}
		b = b[n:]
		if c.indexDrift {
			index++
		}
	}
	return nil
}
