package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
)

// marketplaceChannel is the channel the marketplace scenario reserves for.
const marketplaceChannel = "bench-marketplace"

// opStreamReserve is the operation marketplace records: one reserve over
// Inventory.ReserveStream, from its send to its tagged answer.
const opStreamReserve = "stream-reserve"

// Marketplace defaults and bounds.
const (
	// marketplaceWindow is the default requests in flight per stream.
	marketplaceWindow = 64
	// marketplaceMaxWindow is what stockd keeps in flight per stream before
	// it stops reading one.
	marketplaceMaxWindow = 1024
	// marketplaceMaxSKUs caps the default catalog: one GetAvailability call
	// reads it back.
	marketplaceMaxSKUs = 1000
	// marketplaceOnHand is the default stock of every counter: enough that
	// a run is not refused for lack of stock.
	marketplaceOnHand = 1_000_000_000
	// marketplaceDrain bounds Verify's wait for answers still in flight.
	marketplaceDrain = 30 * time.Second
)

// Outcomes of one marketplace reserve, as the client learnt them.
const (
	mpPending   uint8 = iota // sent, not answered yet
	mpAcked                  // answered with the reservation: it must be held
	mpRefused                // answered FAILED_PRECONDITION: decided, nothing held
	mpUnknown                // another error, or the stream broke first: may or may not be held
	mpNeverSent              // a slot that Do gave up before sending
)

// Marketplace is the `marketplace` scenario: what a marketplace connector
// does in a sale, pipelining reserves over Inventory.ReserveStream. Each
// worker keeps one stream open with up to Window requests in flight, each a
// one-line reserve of one unit of a uniformly drawn SKU (op
// "stream-reserve", latency from its send to its tagged answer). Verify
// closes the streams, waits for every answer, then checks that every
// acknowledged reservation is held with the line it asked for (every one
// through ListReservations, a sample through GetReservation), that no
// refused one is, and that no counter is oversold nor reserves fewer units
// than were acknowledged on it. A Marketplace is used for one run.
type Marketplace struct {
	// Window is the requests each worker keeps in flight on its stream;
	// 0 means 64; at most 1,024 (stockd stops reading a stream beyond that).
	Window int
	// SKUs is the catalog size; 0 means Options.SKUs, at most 1,000.
	SKUs int
	// OnHand is every counter's stock in units; 0 means 1,000,000,000
	// (nothing is refused). A small figure makes the run sell out, which
	// Verify then checks for oversell.
	OnHand int64

	run  string
	ttl  time.Duration
	skus []string
	locs []string
	// ackedUnits[i] is the units acknowledged on skus[i].
	ackedUnits []atomic.Int64

	mu      sync.Mutex
	workers map[int]*mpWorker
	// anomalies are answers that contradict the protocol (an unknown
	// request id, a reservation other than asked); Verify reports them.
	anomalies []error
}

// NewMarketplace returns the marketplace scenario with its defaults.
func NewMarketplace() *Marketplace { return &Marketplace{} }

// Name implements Scenario.
func (*Marketplace) Name() string { return "marketplace" }

// mpWorker is one worker's history (kept across stream restarts) and its
// current stream.
type mpWorker struct {
	mu sync.Mutex
	// sku and state are indexed by the request's sequence number; the
	// reservation id is derived from the run, the worker and it.
	sku   []uint32
	state []uint8
	cur   *mpStream
}

// mpStream is one open ReserveStream and its requests in flight.
type mpStream struct {
	stream grpc.BidiStreamingClient[stockdv1.ReserveStreamRequest, stockdv1.ReserveStreamResponse]
	cancel context.CancelFunc
	// slots holds a token per request in flight (Window of them).
	slots chan struct{}
	// done is closed when the receiver has exited.
	done chan struct{}
	// sendMu serialises Send and CloseSend.
	sendMu     sync.Mutex
	sendClosed bool

	mu      sync.Mutex
	broken  bool // the receiver has exited: nothing more may be added
	pending map[uint64]mpInFlight
	// stopping: Verify cancelled the stream; what is pending is unknown,
	// not an error to record.
	stopping atomic.Bool
}

// mpInFlight is a request waiting for its answer.
type mpInFlight struct {
	sent time.Time
	sku  uint32
	rec  Recorder
}

// Setup implements Scenario: it declares the scenario's locations and
// channel, loads the catalog through Erp.SetStock, releases holds an earlier
// run left on the channel, and checks that the node serves ReserveStream.
func (m *Marketplace) Setup(ctx context.Context, env *Env) error {
	if m.Window <= 0 {
		m.Window = marketplaceWindow
	}
	m.Window = min(m.Window, marketplaceMaxWindow)
	if m.OnHand <= 0 {
		m.OnHand = marketplaceOnHand
	}
	n := m.SKUs
	if n <= 0 {
		n = env.Opts.SKUs
	}
	n = min(max(n, 1), marketplaceMaxSKUs)
	m.run = runNonce()
	// Acknowledged holds stay HELD until Verify has read them.
	m.ttl = min(max(15*time.Minute, env.Opts.Duration+10*time.Minute), 24*time.Hour)
	m.skus = itemNames("marketplace", n)
	m.locs = scenarioLocations("marketplace", env.Opts.Locations)
	m.ackedUnits = make([]atomic.Int64, n)
	m.workers = map[int]*mpWorker{}

	if err := probeReserveStream(ctx, env.Conn(0)); err != nil {
		return err
	}
	if err := putLocationsAndChannel(ctx, env, marketplaceChannel, m.locs); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	if _, err := stockdv1.NewInventoryClient(env.Conn(0)).ReleaseAll(cctx, &stockdv1.ReleaseAllRequest{
		Channel: marketplaceChannel, ReleaseAllId: "setup-" + m.run}); err != nil {
		return unavailableIf(fmt.Errorf("release earlier holds: %w", err), "Inventory/ReleaseAll")
	}
	return setStock(ctx, env, catalogRows(m.skus, m.locs, m.OnHand, scenarioVersionBase()))
}

// probeReserveStream opens a ReserveStream and closes it at once: Unavailable
// if the node lacks the RPC.
func probeReserveStream(ctx context.Context, conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	st, err := stockdv1.NewInventoryClient(conn).ReserveStream(ctx)
	if err == nil {
		err = st.CloseSend()
	}
	if err == nil {
		_, err = st.Recv()
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return unavailableIf(fmt.Errorf("probe reserve stream: %w", err), "Inventory/ReserveStream")
}

// Do implements Scenario: it sends one reserve on worker w's stream (opening
// one if it has none or its last one broke) once the window has room, and
// returns; the stream's receiver records the answer.
func (m *Marketplace) Do(ctx context.Context, env *Env, w int, rnd *rand.Rand, rec Recorder) {
	wk := m.worker(w)
	st, err := m.stream(ctx, env, w, wk)
	if err != nil {
		rec.Record(opStreamReserve, 0, err)
		return
	}
	select {
	case st.slots <- struct{}{}:
	case <-st.done:
		return // broken: the next call opens a new stream
	case <-ctx.Done():
		return
	}
	sku := uint32(rnd.IntN(len(m.skus)))
	wk.mu.Lock()
	seq := uint64(len(wk.state))
	wk.sku = append(wk.sku, sku)
	wk.state = append(wk.state, mpPending)
	wk.mu.Unlock()

	st.mu.Lock()
	if st.broken {
		st.mu.Unlock()
		wk.setState(seq, mpNeverSent)
		return
	}
	st.pending[seq] = mpInFlight{sent: time.Now(), sku: sku, rec: rec}
	st.mu.Unlock()
	req := &stockdv1.ReserveStreamRequest{
		RequestId: strconv.FormatUint(seq, 10),
		Op: &stockdv1.ReserveStreamRequest_Reserve{Reserve: &stockdv1.ReserveRequest{
			Channel:       marketplaceChannel,
			ReservationId: m.reservationID(w, seq),
			Lines:         []*stockdv1.ReserveLine{{Sku: m.skus[sku], Quantity: 1}},
			Ttl:           durationpb.New(m.ttl),
		}},
	}
	st.sendMu.Lock()
	if !st.sendClosed {
		// A failed Send means the stream broke: its receiver reports every
		// pending request, this one included, with the stream's status.
		_ = st.stream.Send(req)
	}
	st.sendMu.Unlock()
}

// reservationID is the id of worker w's request seq in this run.
func (m *Marketplace) reservationID(w int, seq uint64) string {
	return m.run + "-w" + strconv.Itoa(w) + "-" + strconv.FormatUint(seq, 10)
}

// parseReservationID is reservationID's inverse; ok is false for an id of
// another run.
func (m *Marketplace) parseReservationID(id string) (w int, seq uint64, ok bool) {
	rest, ok := strings.CutPrefix(id, m.run+"-w")
	if !ok {
		return 0, 0, false
	}
	ws, ss, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, 0, false
	}
	w, err1 := strconv.Atoi(ws)
	seq, err2 := strconv.ParseUint(ss, 10, 64)
	return w, seq, err1 == nil && err2 == nil
}

func (m *Marketplace) worker(w int) *mpWorker {
	m.mu.Lock()
	defer m.mu.Unlock()
	wk := m.workers[w]
	if wk == nil {
		wk = &mpWorker{}
		m.workers[w] = wk
	}
	return wk
}

func (wk *mpWorker) setState(seq uint64, s uint8) {
	wk.mu.Lock()
	wk.state[seq] = s
	wk.mu.Unlock()
}

// stream returns worker w's live stream, opening one under ctx (the run's
// context: the stream outlives this call) if there is none or the last one
// broke.
func (m *Marketplace) stream(ctx context.Context, env *Env, w int, wk *mpWorker) (*mpStream, error) {
	wk.mu.Lock()
	defer wk.mu.Unlock()
	if st := wk.cur; st != nil {
		select {
		case <-st.done:
		default:
			return st, nil
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	s, err := stockdv1.NewInventoryClient(env.Conn(w)).ReserveStream(sctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open reserve stream: %w", err)
	}
	st := &mpStream{stream: s, cancel: cancel, slots: make(chan struct{}, m.Window),
		done: make(chan struct{}), pending: map[uint64]mpInFlight{}}
	wk.cur = st
	go m.receive(wk, st)
	return st, nil
}

// receive reads st's answers, records each and notes its outcome, until the
// stream ends (EOF after Verify's CloseSend, or an error). Then it records
// every request still pending as failed with the stream's status (unless
// Verify cancelled the stream), marks them unknown and closes st.done.
func (m *Marketplace) receive(wk *mpWorker, st *mpStream) {
	defer close(st.done)
	for {
		resp, err := st.stream.Recv()
		if err != nil {
			st.mu.Lock()
			st.broken = true
			pending := st.pending
			st.pending = nil
			st.mu.Unlock()
			for seq, p := range pending {
				if !errors.Is(err, io.EOF) && !st.stopping.Load() {
					p.rec.Record(opStreamReserve, time.Since(p.sent), err)
				}
				wk.setState(seq, mpUnknown)
			}
			st.cancel()
			return
		}
		seq, perr := strconv.ParseUint(resp.GetRequestId(), 10, 64)
		st.mu.Lock()
		p, ok := st.pending[seq]
		delete(st.pending, seq)
		st.mu.Unlock()
		if perr != nil || !ok {
			m.anomaly(fmt.Errorf("answer to request id %q, which is not in flight", resp.GetRequestId()))
			continue
		}
		d := time.Since(p.sent)
		switch r := resp.GetResult().(type) {
		case *stockdv1.ReserveStreamResponse_Reserve:
			if err := m.checkHeld(r.Reserve.GetReservation(), "", p.sku); err != nil {
				m.anomaly(fmt.Errorf("answer to request %d: %w", seq, err))
			}
			wk.setState(seq, mpAcked)
			m.ackedUnits[p.sku].Add(1)
			p.rec.Record(opStreamReserve, d, nil)
		case *stockdv1.ReserveStreamResponse_Error:
			err := status.Error(codes.Code(r.Error.GetCode()), r.Error.GetMessage())
			if isRefusal(err) {
				wk.setState(seq, mpRefused)
			} else {
				wk.setState(seq, mpUnknown)
			}
			p.rec.Record(opStreamReserve, d, err)
		default:
			wk.setState(seq, mpUnknown)
			m.anomaly(fmt.Errorf("answer to request %d: a %T, want a reserve", seq, r))
		}
		<-st.slots
	}
}

// checkHeld checks that r is a live hold of one unit of skus[sku] (and has
// id, unless id is empty).
func (m *Marketplace) checkHeld(r *stockdv1.Reservation, id string, sku uint32) error {
	switch {
	case id != "" && r.GetReservationId() != id:
		return fmt.Errorf("reservation %q: got id %q", id, r.GetReservationId())
	case r.GetState() != stockdv1.ReservationState_RESERVATION_STATE_HELD:
		return fmt.Errorf("reservation %q: got state %v, want HELD", r.GetReservationId(), r.GetState())
	case len(r.GetLines()) != 1 || r.GetLines()[0].GetSku() != m.skus[sku] || r.GetLines()[0].GetQuantitySkuUnits() != 1:
		return fmt.Errorf("reservation %q: got lines %v, want 1 x %s", r.GetReservationId(), r.GetLines(), m.skus[sku])
	}
	return nil
}

func (m *Marketplace) anomaly(err error) {
	m.mu.Lock()
	m.anomalies = append(m.anomalies, err)
	m.mu.Unlock()
}

// Verify implements Scenario: it closes every stream, waits for the answers
// in flight, and checks the cluster against what was acknowledged.
func (m *Marketplace) Verify(ctx context.Context, env *Env) error {
	m.closeStreams(ctx)
	m.mu.Lock()
	errs := append([]error(nil), m.anomalies...)
	m.mu.Unlock()
	errs = append(errs, m.checkReservations(ctx, env)...)
	errs = append(errs, m.checkCounters(ctx, env)...)
	return joinLimited(errs, 20)
}

// closeStreams half-closes every stream and waits (up to marketplaceDrain)
// for its receiver to take the last answers; a stream that does not finish
// in time is cancelled, its pending requests then unknown.
func (m *Marketplace) closeStreams(ctx context.Context) {
	m.mu.Lock()
	var streams []*mpStream
	for _, wk := range m.workers {
		wk.mu.Lock()
		if wk.cur != nil {
			streams = append(streams, wk.cur)
		}
		wk.mu.Unlock()
	}
	m.mu.Unlock()
	for _, st := range streams {
		st.sendMu.Lock()
		if !st.sendClosed {
			st.sendClosed = true
			_ = st.stream.CloseSend() // a broken stream's receiver has exited or will
		}
		st.sendMu.Unlock()
	}
	dctx, cancel := context.WithTimeout(ctx, marketplaceDrain)
	defer cancel()
	for _, st := range streams {
		select {
		case <-st.done:
		case <-dctx.Done():
			st.stopping.Store(true)
			st.cancel()
			<-st.done
		}
	}
}

// checkReservations lists the channel's live holds and checks that every
// acknowledged reservation is among them with its line and that no refused
// or never-sent one is; then it reads a sample of the acknowledged ones
// through GetReservation.
func (m *Marketplace) checkReservations(ctx context.Context, env *Env) []error {
	m.mu.Lock()
	workers := make(map[int][]uint8, len(m.workers))
	skus := make(map[int][]uint32, len(m.workers))
	for w, wk := range m.workers {
		wk.mu.Lock()
		workers[w] = append([]uint8(nil), wk.state...)
		skus[w] = append([]uint32(nil), wk.sku...)
		wk.mu.Unlock()
	}
	m.mu.Unlock()

	var errs []error
	seen := map[int][]bool{}
	for w, st := range workers {
		seen[w] = make([]bool, len(st))
	}
	inv := stockdv1.NewInventoryClient(env.Conn(0))
	token := ""
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := inv.ListReservations(cctx, &stockdv1.ListReservationsRequest{Channel: marketplaceChannel,
			State: stockdv1.ReservationState_RESERVATION_STATE_HELD, PageSize: 1000, PageToken: token, Linearizable: true})
		cancel()
		if err != nil {
			return append(errs, fmt.Errorf("list reservations of %s: %w", marketplaceChannel, err))
		}
		for _, r := range resp.GetReservations() {
			w, seq, ok := m.parseReservationID(r.GetReservationId())
			if !ok {
				continue // an earlier run's, or another client's
			}
			st := workers[w]
			if seq >= uint64(len(st)) || st[seq] == mpNeverSent || st[seq] == mpRefused {
				errs = append(errs, fmt.Errorf("reservation %q is held, but was refused or never sent", r.GetReservationId()))
				continue
			}
			seen[w][seq] = true
			if st[seq] != mpAcked {
				continue
			}
			if err := m.checkHeld(r, "", skus[w][seq]); err != nil {
				errs = append(errs, err)
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	var acked []string
	var ackedSKU []uint32
	for w, st := range workers {
		for seq, s := range st {
			if s != mpAcked {
				continue
			}
			id := m.reservationID(w, uint64(seq))
			acked = append(acked, id)
			ackedSKU = append(ackedSKU, skus[w][seq])
			if !seen[w][seq] {
				errs = append(errs, fmt.Errorf("reservation %q was acknowledged, but is not held (lost acknowledgement)", id))
			}
		}
	}
	// The same check through the RPC a client would use, on a sample spread
	// over the acknowledged ones, on every node.
	const sample = 100
	step := max(len(acked)/sample, 1)
	for i := 0; i < len(acked); i += step {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := stockdv1.NewInventoryClient(env.Conn(i)).GetReservation(cctx, &stockdv1.GetReservationRequest{
			Channel: marketplaceChannel, ReservationId: acked[i], Linearizable: true})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("get acknowledged reservation %q: %w", acked[i], err))
			continue
		}
		if err := m.checkHeld(resp.GetReservation(), acked[i], ackedSKU[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// checkCounters reads every marketplace counter and checks that none is
// oversold (I1) and that each SKU reserves at least the units acknowledged
// on it, which the stock covers.
func (m *Marketplace) checkCounters(ctx context.Context, env *Env) []error {
	counters, err := readCounters(ctx, env, marketplaceChannel, m.skus)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for i, sku := range m.skus {
		var reserved, onHand int64
		for _, l := range m.locs {
			c, ok := counters[counterKey{sku, l}]
			if !ok {
				errs = append(errs, fmt.Errorf("counter %s@%s: missing from GetAvailability", sku, l))
				continue
			}
			if c.oversold != 0 || c.reserved+c.committed > c.onHand {
				errs = append(errs, fmt.Errorf("counter %s@%s: oversold: on hand %d, reserved %d, committed %d, oversold %d",
					sku, l, c.onHand, c.reserved, c.committed, c.oversold))
			}
			reserved += c.reserved
			onHand += c.onHand
		}
		acked := m.ackedUnits[i].Load()
		if acked > reserved {
			errs = append(errs, fmt.Errorf("sku %s: %d units acknowledged, but %d reserved (lost acknowledgement)", sku, acked, reserved))
		}
		if acked > onHand {
			errs = append(errs, fmt.Errorf("sku %s: %d units acknowledged over %d on hand (oversold)", sku, acked, onHand))
		}
	}
	return errs
}

// Summary implements Summarizer: reserves acknowledged and refused.
func (m *Marketplace) Summary(*ScenarioResult) []Figure {
	var acked, refused, unknown float64
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, wk := range m.workers {
		wk.mu.Lock()
		for _, s := range wk.state {
			switch s {
			case mpAcked:
				acked++
			case mpRefused:
				refused++
			case mpUnknown, mpPending:
				unknown++
			}
		}
		wk.mu.Unlock()
	}
	return []Figure{
		{Name: "reserves acknowledged", Value: acked},
		{Name: "reserves refused (no stock)", Value: refused},
		{Name: "reserves with unknown outcome", Value: unknown},
	}
}
