package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// streamTagKey is the metadata key a test client names its stream by, so the
// tap can count that stream's messages.
const streamTagKey = "x-test-stream"

// streamTap is a stream interceptor (innermost) that counts, per tagged
// stream, the requests the handler received and the answers it sent, and the
// stream handlers running. Received minus sent is what the server holds for
// the stream.
type streamTap struct {
	running atomic.Int64

	mu    sync.Mutex
	byTag map[string]*tapCounts
}

type tapCounts struct {
	recv, sent, maxInflight atomic.Int64
}

func (c *tapCounts) inflight() int64 { return c.recv.Load() - c.sent.Load() }

func (tp *streamTap) counts(tag string) *tapCounts {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.byTag == nil {
		tp.byTag = make(map[string]*tapCounts)
	}
	c := tp.byTag[tag]
	if c == nil {
		c = &tapCounts{}
		tp.byTag[tag] = c
	}
	return c
}

func (tp *streamTap) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	tp.running.Add(1)
	defer tp.running.Add(-1)
	var tag string
	if v := metadata.ValueFromIncomingContext(ss.Context(), streamTagKey); len(v) > 0 {
		tag = v[0]
	}
	return handler(srv, &tappedStream{ServerStream: ss, c: tp.counts(tag)})
}

// tappedStream counts a stream's messages. A request is counted once the
// handler has it and an answer once gRPC has taken it, so received minus sent
// never undercounts what the handler holds.
type tappedStream struct {
	grpc.ServerStream
	c *tapCounts
}

func (s *tappedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		in := s.c.recv.Add(1) - s.c.sent.Load()
		for {
			old := s.c.maxInflight.Load()
			if in <= old || s.c.maxInflight.CompareAndSwap(old, in) {
				break
			}
		}
	}
	return err
}

func (s *tappedStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if err == nil {
		s.c.sent.Add(1)
	}
	return err
}

// batchingProposer groups concurrent proposals into log entries the way the
// cluster's proposer does: the first queued command opens an entry, what else
// is queued joins it, and while more callers are in flight than the entry
// holds it lingers for them, up to maxBatch commands. Each entry goes through
// a marshal round trip and store.Machine.ApplyEntry at the next index. There
// is no raft and no fsync: it shows how commands group, not what a commit
// costs.
type batchingProposer struct {
	m        *store.Machine
	maxBatch int
	linger   time.Duration
	queue    chan *batchedProposal
	// callers counts goroutines inside Propose.
	callers  atomic.Int64
	entries  atomic.Uint64
	commands atomic.Uint64
	stop     chan struct{}
	done     chan struct{}

	mu      sync.Mutex
	applied chan struct{} // closed and replaced after every entry
}

type batchedProposal struct {
	ctx  context.Context
	cmd  *logv1.Command
	done chan batchOutcome // buffered 1: delivery never blocks
}

type batchOutcome struct {
	res store.Result
	err error
}

// startBatchingProposer starts a batcher over m with the cluster's defaults
// (512 commands per entry, 1 ms linger, 8,192 queued) and stops it at
// cleanup; register it before the server so it stops after the server.
func startBatchingProposer(t testing.TB, m *store.Machine) *batchingProposer {
	p := &batchingProposer{
		m: m, maxBatch: 512, linger: time.Millisecond,
		queue: make(chan *batchedProposal, 8192),
		stop:  make(chan struct{}), done: make(chan struct{}),
		applied: make(chan struct{}),
	}
	go p.run()
	t.Cleanup(func() {
		close(p.stop)
		<-p.done
	})
	return p
}

func (p *batchingProposer) Propose(ctx context.Context, cmd *logv1.Command) (store.Result, error) {
	if err := ctx.Err(); err != nil {
		return store.Result{}, err
	}
	p.callers.Add(1)
	defer p.callers.Add(-1)
	pr := &batchedProposal{ctx: ctx, cmd: cmd, done: make(chan batchOutcome, 1)}
	select {
	case p.queue <- pr:
	default:
		return store.Result{}, errFakeQueueFull
	}
	select {
	case o := <-pr.done:
		return o.res, o.err
	case <-ctx.Done():
		return store.Result{}, ctx.Err()
	case <-p.stop:
		return store.Result{}, errFakeNotLeader
	}
}

func (p *batchingProposer) WaitApplied(ctx context.Context, rev store.Revision) error {
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

// stats is the number of entries applied and the commands they carried.
func (p *batchingProposer) stats() (entries, commands uint64) {
	return p.entries.Load(), p.commands.Load()
}

// run exits when stop is closed, answering what is queued.
func (p *batchingProposer) run() {
	defer close(p.done)
	next := p.m.AppliedIndex()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var batch []*batchedProposal
		select {
		case pr := <-p.queue:
			batch = append(batch, pr)
		case <-p.stop:
			for {
				select {
				case pr := <-p.queue:
					pr.done <- batchOutcome{err: errFakeNotLeader}
				default:
					return
				}
			}
		}
		batch = p.fill(batch, timer)
		if p.apply(next+1, batch) {
			next++
		}
	}
}

func (p *batchingProposer) fill(batch []*batchedProposal, timer *time.Timer) []*batchedProposal {
drain:
	for len(batch) < p.maxBatch {
		select {
		case pr := <-p.queue:
			batch = append(batch, pr)
		default:
			break drain
		}
	}
	if len(batch) >= p.maxBatch || p.callers.Load() <= int64(len(batch)) {
		return batch
	}
	timer.Reset(p.linger)
	defer timer.Stop()
	for len(batch) < p.maxBatch && p.callers.Load() > int64(len(batch)) {
		select {
		case pr := <-p.queue:
			batch = append(batch, pr)
		case <-timer.C:
			return batch
		case <-p.stop:
			return batch
		}
	}
	return batch
}

// apply applies the live proposals of batch as one entry at index; false
// when none was left to apply.
func (p *batchingProposer) apply(index store.Revision, batch []*batchedProposal) bool {
	live := batch[:0]
	for _, pr := range batch {
		if err := pr.ctx.Err(); err != nil {
			pr.done <- batchOutcome{err: err}
			continue
		}
		live = append(live, pr)
	}
	if len(live) == 0 {
		return false
	}
	e := &logv1.Entry{TimeUnixNanos: int64(t0), FeatureVersion: store.FeatureVersion}
	for _, pr := range live {
		e.Commands = append(e.Commands, pr.cmd)
	}
	var logged logv1.Entry
	b, err := proto.Marshal(e)
	if err == nil {
		err = proto.Unmarshal(b, &logged)
	}
	if err != nil {
		for _, pr := range live {
			pr.done <- batchOutcome{err: err}
		}
		return false
	}
	results := p.m.ApplyEntry(index, &logged)
	p.entries.Add(1)
	p.commands.Add(uint64(len(live)))
	for i, pr := range live {
		pr.done <- batchOutcome{res: results[i]}
	}
	p.mu.Lock()
	close(p.applied)
	p.applied = make(chan struct{})
	p.mu.Unlock()
	return true
}

// streamHarness is a harness whose server has the stream tap, and whose
// proposer may be the batching one (then p is nil and batch is set).
type streamHarness struct {
	*harness
	tap   *streamTap
	batch *batchingProposer
}

type streamConfig struct {
	batching    bool
	wrap        func(Proposer) Proposer
	noLeakCheck bool
}

type streamOption func(*streamConfig)

func withBatching() streamOption { return func(c *streamConfig) { c.batching = true } }

// withoutLeakCheck is for a test's second harness: the first one's check,
// which runs after both have stopped, covers it.
func withoutLeakCheck() streamOption { return func(c *streamConfig) { c.noLeakCheck = true } }

func withProposerWrap(f func(Proposer) Proposer) streamOption {
	return func(c *streamConfig) { c.wrap = f }
}

// newStreamHarness serves a fresh machine over bufconn behind the full
// interceptor chain plus the tap. The client connection has fixed 64 KiB
// stream windows, so a client that stops reading stalls its stream early.
// At cleanup it stops everything, then checks that no goroutine started
// since it was called is left.
func newStreamHarness(t testing.TB, opts ...streamOption) *streamHarness {
	t.Helper()
	var sc streamConfig
	for _, o := range opts {
		o(&sc)
	}
	if !sc.noLeakCheck {
		ignore := goleak.IgnoreCurrent()
		t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs last
	}
	m := store.New(store.DefaultConfig())
	h := &streamHarness{harness: &harness{m: m, logs: &syncBuffer{}}, tap: &streamTap{}}
	var p Proposer
	if sc.batching {
		h.batch = startBatchingProposer(t, m)
		p = h.batch
	} else {
		h.p = newFakeProposer(m)
		p = h.p
	}
	if sc.wrap != nil {
		p = sc.wrap(p)
	}
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h.srv = New(Config{
		Proposer: p, Reader: m, Logger: logger,
		Unavailable: []error{errFakeNotLeader}, Exhausted: []error{errFakeQueueFull},
	})
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(append(ServerOptions(logger), grpc.ChainStreamInterceptor(h.tap.intercept))...)
	h.srv.Register(gs)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<20))
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
	h.conn = conn
	h.inv = stockdv1.NewInventoryClient(conn)
	h.erp = stockdv1.NewErpClient(conn)
	h.adm = stockdv1.NewAdminClient(conn)
	return h
}

// open starts a ReserveStream tagged tag under ctx.
func (h *streamHarness) open(t testing.TB, ctx context.Context, tag string) stockdv1.Inventory_ReserveStreamClient {
	t.Helper()
	st, err := h.inv.ReserveStream(metadata.AppendToOutgoingContext(ctx, streamTagKey, tag))
	if err != nil {
		t.Fatalf("ReserveStream(%s): %v", tag, err)
	}
	return st
}

// waitUntil checks cond every millisecond until it holds or 20 s pass; for
// conditions nothing signals (a stream stalling, a handler exiting).
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("waiting for %s: still false after 20s", what)
		}
	}
}

// exchange sends reqs pipelined, closes the send side and reads answers
// until the server ends the stream; a clean end is nil.
func exchange(st stockdv1.Inventory_ReserveStreamClient, reqs []*stockdv1.ReserveStreamRequest) ([]*stockdv1.ReserveStreamResponse, error) {
	sendErr := make(chan error, 1)
	go func() {
		for _, r := range reqs {
			if err := st.Send(r); err != nil {
				sendErr <- err // io.EOF: the stream ended; Recv has the status
				return
			}
		}
		sendErr <- st.CloseSend()
	}()
	var out []*stockdv1.ReserveStreamResponse
	for {
		a, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			<-sendErr
			return out, err
		}
		out = append(out, a)
	}
	if err := <-sendErr; err != nil {
		return out, fmt.Errorf("send: %w", err)
	}
	return out, nil
}

// byRequest indexes answers by request id, failing on an unknown, missing
// or repeated one.
func byRequest(t testing.TB, reqs []*stockdv1.ReserveStreamRequest, answers []*stockdv1.ReserveStreamResponse) map[string]*stockdv1.ReserveStreamResponse {
	t.Helper()
	want := make(map[string]bool, len(reqs))
	for _, r := range reqs {
		want[r.GetRequestId()] = true
	}
	got := make(map[string]*stockdv1.ReserveStreamResponse, len(answers))
	for _, a := range answers {
		id := a.GetRequestId()
		switch {
		case !want[id]:
			t.Fatalf("%d requests: got an answer for request id %q, which was not sent", len(reqs), id)
		case got[id] != nil:
			t.Fatalf("%d requests: got request id %q answered twice (%v, then %v), want once", len(reqs), id, got[id], a)
		}
		got[id] = a
	}
	if len(got) != len(want) {
		t.Fatalf("%d requests: got %d answered, want every one", len(reqs), len(got))
	}
	return got
}

func streamReserve(requestID, resID, sku string, qty int64) *stockdv1.ReserveStreamRequest {
	return &stockdv1.ReserveStreamRequest{RequestId: requestID, Op: &stockdv1.ReserveStreamRequest_Reserve{
		Reserve: &stockdv1.ReserveRequest{Channel: "web", ReservationId: resID, Lines: []*stockdv1.ReserveLine{{Sku: sku, Quantity: qty}}},
	}}
}

func streamConfirm(requestID, resID string) *stockdv1.ReserveStreamRequest {
	return &stockdv1.ReserveStreamRequest{RequestId: requestID, Op: &stockdv1.ReserveStreamRequest_Confirm{
		Confirm: &stockdv1.ConfirmRequest{Channel: "web", ReservationId: resID, OrderRef: "order-" + resID},
	}}
}

func streamRelease(requestID, resID string) *stockdv1.ReserveStreamRequest {
	return &stockdv1.ReserveStreamRequest{RequestId: requestID, Op: &stockdv1.ReserveStreamRequest_Release{
		Release: &stockdv1.ReleaseRequest{Channel: "web", ReservationId: resID},
	}}
}

// reservedUnits is the machine's reserved base units of sku on web, over
// its locations; safe while handlers apply.
func reservedUnits(t testing.TB, m *store.Machine, sku string) int64 {
	t.Helper()
	var a store.SKUAvailability
	if err := m.Availability("web", store.SKU(sku), &a); err != nil {
		t.Fatalf("Availability(web, %s): %v", sku, err)
	}
	var n int64
	for _, l := range a.Locations {
		n += int64(l.Reserved)
	}
	return n
}

// checkWindow fails once the server has held more than maxStreamInflight
// requests of the stream at some point.
func checkWindow(t testing.TB, tag string, c *tapCounts) {
	t.Helper()
	if peak := c.maxInflight.Load(); peak > maxStreamInflight {
		t.Fatalf("%s: server held %d requests at once (received %d, sent %d), want at most %d",
			tag, peak, c.recv.Load(), c.sent.Load(), maxStreamInflight)
	}
}

// checkStreamError fails unless a is a StreamError with code want whose
// message names field ("field: ..."); an empty field checks the code only.
func checkStreamError(t testing.TB, input string, a *stockdv1.ReserveStreamResponse, want codes.Code, field string) {
	t.Helper()
	e := a.GetError()
	if e == nil {
		t.Fatalf("%s: got %v, want a StreamError %s", input, a, want)
	}
	if codes.Code(e.GetCode()) != want {
		t.Fatalf("%s: got StreamError %s %q, want %s", input, codes.Code(e.GetCode()), e.GetMessage(), want)
	}
	if field != "" && !strings.HasPrefix(e.GetMessage(), field+": ") {
		t.Errorf("%s: got message %q, want it to name field %q", input, e.GetMessage(), field)
	}
}

// stall opens a stream that sends reserves of STALL and never reads an
// answer, and waits until the server holds a full window for it with every
// request applied. unstall breaks it and waits for its handler to exit.
func (h *streamHarness) stall(t testing.TB, ctx context.Context, tag string) (c *tapCounts, unstall func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	st := h.open(t, ctx, tag)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range 8 * maxStreamInflight {
			id := tag + "/" + strconv.Itoa(i)
			if st.Send(streamReserve(id, id, "STALL", 1)) != nil {
				return
			}
		}
	}()
	c = h.tap.counts(tag)
	base := reservedUnits(t, h.m, "STALL")
	// Steady means: a full window held, all of it applied, and no answer
	// handed to the transport for 50 consecutive polls (the client's HTTP/2
	// window, which grows with its bandwidth estimate, has filled up). Until
	// then the stalled stream still costs the server work.
	var lastSent int64 = -1
	stable := 0
	waitUntil(t, tag+" holding a full window, all of it applied, its transport full", func() bool {
		checkWindow(t, tag, c)
		if sent := c.sent.Load(); sent != lastSent {
			lastSent, stable = sent, 0
		} else {
			stable++
		}
		return c.inflight() == maxStreamInflight && reservedUnits(t, h.m, "STALL")-base == c.recv.Load() && stable >= 50
	})
	return c, func() {
		cancel()
		<-sent
		waitUntil(t, tag+" handler exiting", func() bool { return h.tap.running.Load() == 0 })
	}
}

// pump keeps 256 reserves of BULK in flight on one stream until ctx ends,
// counting the answers; each must be a hold.
func pump(ctx context.Context, inv stockdv1.InventoryClient, tag string, answered *atomic.Int64) error {
	st, err := inv.ReserveStream(metadata.AppendToOutgoingContext(ctx, streamTagKey, tag))
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	window := make(chan struct{}, 256)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; ; i++ {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			id := tag + "/" + strconv.Itoa(i)
			if st.Send(streamReserve(id, id, "BULK", 1)) != nil {
				return
			}
		}
	}()
	defer func() { <-sent }()
	for {
		a, err := st.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil // the window closed
			}
			return fmt.Errorf("after %d answers: %w", answered.Load(), err)
		}
		if a.GetReserve() == nil {
			return fmt.Errorf("request %s: got %v, want a hold", a.GetRequestId(), a)
		}
		answered.Add(1)
		<-window
	}
}
