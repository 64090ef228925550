package server

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

func withWatchBuffer(n int) harnessOption {
	return func(c *harnessConfig) { c.server.WatchBufferSKUs = n }
}

func withWatchProgress(d time.Duration) harnessOption {
	return func(c *harnessConfig) { c.server.WatchProgressInterval = d }
}

// watchClient reads one Watch stream on its own goroutine and keeps what a
// client would: every message, the last figure per SKU and the last mark.
type watchClient struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every message
	msgs    []*stockdv1.WatchResponse
	events  []*stockdv1.WatchEvent               // outside state transfers
	last    map[string]*stockdv1.SkuAvailability // a removed event deletes its SKU
	mark    uint64
	inState bool
	err     error
}

func (h *harness) watch(t testing.TB, req *stockdv1.WatchRequest) *watchClient {
	t.Helper()
	// Not bounded by testContext's 30 s: the stream lives until stop.
	ctx, cancel := context.WithCancel(context.Background())
	st, err := h.inv.Watch(ctx, req)
	if err != nil {
		cancel()
		t.Fatalf("Watch(%v): %v", req, err)
	}
	c := &watchClient{cancel: cancel, done: make(chan struct{}), changed: make(chan struct{}),
		last: make(map[string]*stockdv1.SkuAvailability)}
	go func() {
		defer close(c.done)
		for {
			m, err := st.Recv()
			c.mu.Lock()
			if err != nil {
				c.err = err
				close(c.changed)
				c.mu.Unlock()
				return
			}
			c.msgs = append(c.msgs, m)
			if m.GetResync() {
				c.inState = true
				clear(c.last)
			}
			for _, e := range m.GetEvents() {
				if e.GetRemoved() {
					delete(c.last, e.GetAvailability().GetSku())
				} else {
					c.last[e.GetAvailability().GetSku()] = e.GetAvailability()
				}
				if !c.inState {
					c.events = append(c.events, e)
				}
			}
			if m.GetRevision() != 0 {
				c.inState = false
				c.mark = max(c.mark, m.GetRevision())
			}
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
		}
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *watchClient) stop() {
	c.cancel()
	<-c.done
}

// waitFor waits (up to 10 s) until cond holds, under the client's lock.
func (c *watchClient) waitFor(t testing.TB, what string, cond func(c *watchClient) bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok, ch, err := cond(c), c.changed, c.err
		c.mu.Unlock()
		if ok {
			return
		}
		if err != nil {
			t.Fatalf("waiting for %s: the stream ended: %v", what, err)
		}
		select {
		case <-ch:
		case <-deadline.C:
			c.mu.Lock()
			defer c.mu.Unlock()
			t.Fatalf("waiting for %s: got mark %d and %d messages after 10 s", what, c.mark, len(c.msgs))
		}
	}
}

func (c *watchClient) waitMark(t testing.TB, rev uint64) {
	t.Helper()
	c.waitFor(t, fmt.Sprintf("mark %d", rev), func(c *watchClient) bool { return c.mark >= rev })
}

// takeEvents returns the events seen since the last call.
func (c *watchClient) takeEvents() []*stockdv1.WatchEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.events
	c.events = nil
	return out
}

func (c *watchClient) lastMark() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mark
}

type eventWant struct {
	sku       string
	available int64
	rev       uint64
}

func checkEvents(t testing.TB, input string, got []*stockdv1.WatchEvent, want []eventWant) {
	t.Helper()
	var gotW []eventWant
	for _, e := range got {
		gotW = append(gotW, eventWant{e.GetAvailability().GetSku(), e.GetAvailability().GetAvailableSkuUnits(), e.GetRevision()})
	}
	if fmt.Sprint(gotW) != fmt.Sprint(want) {
		t.Fatalf("%s: got events %v, want %v", input, gotW, want)
	}
}

// rev is the harness machine's applied index.
func (h *harness) rev() uint64 { return uint64(h.m.AppliedIndex()) }

func (h *harness) putChannel(t testing.TB, id string, locs ...string) {
	t.Helper()
	if _, err := h.adm.PutChannel(testContext(t), &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: id, Locations: locs}}); err != nil {
		t.Fatalf("PutChannel(%s): %v", id, err)
	}
}

func (h *harness) setBuffer(t testing.TB, item, ch, loc string, units int64) {
	t.Helper()
	if _, err := h.adm.SetBuffer(testContext(t), &stockdv1.SetBufferRequest{Item: item, Channel: ch, Location: loc, BufferBaseUnits: units}); err != nil {
		t.Fatalf("SetBuffer(%s, %s, %s, %d): %v", item, ch, loc, units, err)
	}
}

func TestWatchSendsTheStateThenEveryVisibleChangeOnly(t *testing.T) {
	h := newHarness(t)
	h.seed(t) // web sees WH1 (ROSE 10) and WH2 (ROSE 5)
	h.putChannel(t, "b2b", "WH1")
	h.putLocation(t, "WH3")
	h.setStock(t, "TULIP", "WH2", 7, 1)
	w := h.watch(t, &stockdv1.WatchRequest{Channel: "web"})
	w.waitMark(t, h.rev())
	w.mu.Lock()
	first := w.msgs[0]
	if !first.GetResync() || first.GetResyncReason() != stockdv1.ResyncReason_RESYNC_REASON_INITIAL || len(w.last) != 2 ||
		w.last["ROSE"].GetAvailableSkuUnits() != 15 || w.last["TULIP"].GetAvailableSkuUnits() != 7 {
		t.Fatalf("Watch(web): got first message %v and state %v, want a resync (INITIAL) with ROSE 15 and TULIP 7", first, w.last)
	}
	w.mu.Unlock()

	h.setStock(t, "ROSE", "WH1", 12, 2)
	r1 := h.rev()
	w.waitFor(t, "the count's event", func(c *watchClient) bool { return len(c.events) == 1 }) // else the two coalesce
	if _, err := h.inv.Reserve(testContext(t), reserveReq("cart-1", 3)); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	r2 := h.rev()
	w.waitMark(t, r2)
	checkEvents(t, "count ROSE@WH1 = 12, then reserve 3", w.takeEvents(), []eventWant{{"ROSE", 17, r1}, {"ROSE", 14, r2}})

	// Invisible to web: b2b's own buffer, a count at a location web does not
	// see, and a wildcard rule that web's own rule overrides.
	h.setBuffer(t, "ROSE", "web", "WH1", 1)
	r3 := h.rev()
	h.setBuffer(t, "ROSE", "b2b", "", 4)
	h.setStock(t, "ROSE", "WH3", 50, 1)
	h.setBuffer(t, "ROSE", "", "WH1", 1)
	h.setStock(t, "TULIP", "WH2", 8, 2)
	r4 := h.rev()
	w.waitMark(t, r4)
	checkEvents(t, "web's buffer, then b2b's buffer, a count at WH3, an overridden wildcard rule, a TULIP count",
		w.takeEvents(), []eventWant{{"ROSE", 13, r3}, {"TULIP", 8, r4}})
}

func TestWatchFiltersBySKUAndPrefix(t *testing.T) {
	h := newHarness(t, withWatchProgress(10*time.Millisecond))
	h.seed(t)
	h.setStock(t, "ROSE-RED", "WH1", 1, 1)
	h.setStock(t, "TULIP", "WH1", 1, 1)
	byPrefix := h.watch(t, &stockdv1.WatchRequest{Channel: "web", SkuPrefix: "ROSE"})
	bySKU := h.watch(t, &stockdv1.WatchRequest{Channel: "web", Skus: []string{"TULIP", "NEW"}})
	byPrefix.waitMark(t, h.rev())
	bySKU.waitMark(t, h.rev())
	for _, sku := range []string{"ROSE", "ROSE-RED", "TULIP", "NEW", "ROSE-NEW"} {
		h.setStock(t, sku, "WH2", 9, 9)
	}
	end := h.rev()
	byPrefix.waitMark(t, end)
	bySKU.waitMark(t, end)
	checkEvents(t, "prefix ROSE", byPrefix.takeEvents(), []eventWant{{"ROSE", 19, end - 4}, {"ROSE-RED", 10, end - 3}, {"ROSE-NEW", 9, end}})
	checkEvents(t, "skus TULIP, NEW", bySKU.takeEvents(), []eventWant{{"TULIP", 10, end - 2}, {"NEW", 9, end - 1}})
}

func TestWatchResumeGetsExactlyTheMissedEvents(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	w := h.watch(t, &stockdv1.WatchRequest{Channel: "web", SkuPrefix: "R"})
	w.waitMark(t, h.rev())
	h.setStock(t, "RED", "WH1", 1, 1)
	w.waitMark(t, h.rev())
	w.stop()
	from := w.lastMark()

	h.setStock(t, "RED", "WH1", 2, 2)
	h.setStock(t, "ROSE", "WH1", 3, 2)
	h.setStock(t, "TULIP", "WH1", 3, 2) // not matching
	h.setStock(t, "RED", "WH1", 4, 3)   // RED's last change comes after ROSE's
	end := h.rev()

	r := h.watch(t, &stockdv1.WatchRequest{Channel: "web", SkuPrefix: "R", FromRevision: from})
	r.waitMark(t, end)
	r.mu.Lock()
	resynced := len(r.msgs) > 0 && r.msgs[0].GetResync()
	r.mu.Unlock()
	if resynced {
		t.Fatalf("resume from %d: got a resync, want the missed events", from)
	}
	checkEvents(t, fmt.Sprintf("resume from %d", from), r.takeEvents(), []eventWant{{"ROSE", 8, end - 2}, {"RED", 4, end}})

	h.setStock(t, "ROSE", "WH2", 0, 2)
	r.waitMark(t, h.rev())
	checkEvents(t, "a live change after the resume", r.takeEvents(), []eventWant{{"ROSE", 3, h.rev()}})
}

func TestWatchResumeFromTooOldARevisionResyncs(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	from := h.rev()
	h.setStock(t, "ROSE", "WH1", 20, 2)
	// A restart (or a snapshot install) starts the change log afresh: what
	// came before it is no longer known one by one.
	recs, err := snapshotRecords(h.m)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.m.Restore(recs); err != nil {
		t.Fatal(err)
	}
	h.setStock(t, "TULIP", "WH1", 2, 1)
	w := h.watch(t, &stockdv1.WatchRequest{Channel: "web", FromRevision: from})
	w.waitMark(t, h.rev())
	w.mu.Lock()
	defer w.mu.Unlock()
	first := w.msgs[0]
	if !first.GetResync() || first.GetResyncReason() != stockdv1.ResyncReason_RESYNC_REASON_TOO_OLD {
		t.Fatalf("resume from %d, before the log's start: got first message %v, want a resync (TOO_OLD)", from, first)
	}
	if len(w.last) != 2 || w.last["ROSE"].GetAvailableSkuUnits() != 25 || w.last["TULIP"].GetAvailableSkuUnits() != 2 {
		t.Fatalf("resume from %d: got state %v, want ROSE 25 and TULIP 2", from, w.last)
	}
}

// snapshotRecords returns a reader of m's snapshot records, for Restore.
func snapshotRecords(m *store.Machine) (func() ([]byte, error), error) {
	var recs [][]byte
	if err := m.Snapshot().WriteRecords(func(b []byte) error { recs = append(recs, append([]byte(nil), b...)); return nil }); err != nil {
		return nil, err
	}
	return func() ([]byte, error) {
		if len(recs) == 0 {
			return nil, io.EOF
		}
		b := recs[0]
		recs = recs[1:]
		return b, nil
	}, nil
}

func TestWatcherOverflowBecomesAResyncNotADrop(t *testing.T) {
	w := &watcher{limit: 3, pos: map[store.SKU]int{}, wake: make(chan struct{}, 1)}
	ev := func(sku string, rev uint64) *hubEvent {
		return &hubEvent{sku: store.SKU(sku), moved: true, ev: &stockdv1.WatchEvent{
			Availability: &stockdv1.SkuAvailability{Sku: sku}, Revision: rev}}
	}
	w.deliver([]*hubEvent{ev("A", 1), ev("B", 2), ev("A", 3), ev("C", 4)}, 4)
	got, mark, transfer, _ := w.take(2)
	if transfer != 0 || len(got) != 2 || got[0].GetAvailability().GetSku() != "B" || got[1].GetAvailability().GetSku() != "A" || mark != 3 {
		t.Fatalf("A, B, A, C then take 2: got %v mark %d transfer %v, want B then A (coalesced, in order of last change), mark 3", got, mark, transfer)
	}
	w.deliver([]*hubEvent{ev("D", 5), ev("E", 6), ev("F", 7)}, 7) // C, D, E, F: 4 > 3
	if _, _, transfer, _ := w.take(10); transfer != stockdv1.ResyncReason_RESYNC_REASON_SLOW_CONSUMER {
		t.Fatalf("4 distinct SKUs waiting in a buffer of 3: got transfer %v, want SLOW_CONSUMER", transfer)
	}
}

func TestWatchSlowConsumerGetsAResyncWithTheCurrentState(t *testing.T) {
	h := newHarness(t, withWatchBuffer(4))
	h.seed(t)
	w := h.watch(t, &stockdv1.WatchRequest{Channel: "web"})
	w.waitMark(t, h.rev())
	// Hold the hub's compute lock: the sender cannot read a state transfer,
	// and the hub waits; then let it hand out a burst of 10 SKUs at once.
	h.srv.watch.computeMu.Lock()
	for i := range 10 {
		h.p.mu.Lock()
		h.p.next++
		if res := h.m.Apply(h.p.next, t0, setStockCmd(fmt.Sprintf("S%02d", i), "WH1", int64(i+1), 1)); res.Err != nil {
			h.p.mu.Unlock()
			t.Fatal(res.Err)
		}
		close(h.p.applied)
		h.p.applied = make(chan struct{})
		h.p.mu.Unlock()
	}
	h.srv.watch.computeMu.Unlock()
	end := h.rev()
	w.waitMark(t, end)
	w.mu.Lock()
	defer w.mu.Unlock()
	var reasons []stockdv1.ResyncReason
	for _, m := range w.msgs {
		if m.GetResync() {
			reasons = append(reasons, m.GetResyncReason())
		}
	}
	if len(reasons) != 2 || reasons[1] != stockdv1.ResyncReason_RESYNC_REASON_SLOW_CONSUMER {
		t.Fatalf("10 SKUs changed at once into a buffer of 4: got resyncs %v, want INITIAL then SLOW_CONSUMER", reasons)
	}
	if len(w.last) != 11 || w.last["S09"].GetAvailableSkuUnits() != 10 {
		t.Fatalf("after the resync: got %d SKUs (S09 %v), want 11 with S09 at 10", len(w.last), w.last["S09"])
	}
}

// TestWatcherThatNeverReadsDoesNotBlockApplyOrOthers: a stream whose
// client never reads fills its HTTP/2 window and its buffer; proposals and
// the other watchers go on.
func TestWatcherThatNeverReadsDoesNotBlockApplyOrOthers(t *testing.T) {
	h := newHarness(t, withWatchBuffer(100), withLogLevel(0))
	h.seed(t)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	if _, err := h.inv.Watch(ctx, &stockdv1.WatchRequest{Channel: "web"}); err != nil {
		t.Fatal(err)
	}
	reader := h.watch(t, &stockdv1.WatchRequest{Channel: "web"})
	const n = 3000
	for i := range n {
		h.setStock(t, fmt.Sprintf("ITEM-WITH-A-LONG-NAME-%05d", i), "WH1", int64(i+1), 1)
	}
	reader.waitMark(t, h.rev())
	reader.mu.Lock()
	defer reader.mu.Unlock()
	if got := reader.last[fmt.Sprintf("ITEM-WITH-A-LONG-NAME-%05d", n-1)].GetAvailableSkuUnits(); got != n {
		t.Fatalf("reading watcher beside a stalled one after %d counts: got last figure %d, want %d", n, got, n)
	}
}

// TestApplyNeverWaitsForTheWatchHub: with the hub stopped dead (its compute
// lock held) and a watcher open, proposals still apply and answer; the hub
// catches up once it runs again.
func TestApplyNeverWaitsForTheWatchHub(t *testing.T) {
	h := newHarness(t, withLogLevel(0), withWatchProgress(10*time.Millisecond))
	h.seed(t)
	w := h.watch(t, &stockdv1.WatchRequest{Channel: "web", Skus: []string{"ROSE"}})
	w.waitMark(t, h.rev())
	h.srv.watch.computeMu.Lock()
	locked := true
	defer func() {
		if locked {
			h.srv.watch.computeMu.Unlock()
		}
	}()
	for i := range 200 {
		h.setStock(t, "ROSE", "WH1", int64(i), uint64(i+2))
	}
	h.srv.watch.computeMu.Unlock()
	locked = false
	w.waitMark(t, h.rev())
	w.mu.Lock()
	defer w.mu.Unlock()
	if got := w.last["ROSE"].GetAvailableSkuUnits(); got != 199+5 {
		t.Fatalf("200 counts applied while the hub was stopped: got ROSE %d, want %d", got, 199+5)
	}
}

func TestWatchOnAFollowerSeesTheSameSequenceAsOnTheLeader(t *testing.T) {
	// Two nodes as two machines fed the same log: the leader's harness
	// proposes, the follower's machine applies each entry after it.
	leader, follower := newHarness(t, withWatchProgress(10*time.Millisecond)), newHarness(t, withWatchProgress(10*time.Millisecond))
	both := func(f func(h *harness)) { f(leader); f(follower) }
	both(func(h *harness) { h.seed(t) })
	wl := leader.watch(t, &stockdv1.WatchRequest{Channel: "web"})
	wf := follower.watch(t, &stockdv1.WatchRequest{Channel: "web"})
	wl.waitMark(t, leader.rev())
	wf.waitMark(t, follower.rev())
	steps := []func(h *harness){
		func(h *harness) { h.setStock(t, "ROSE", "WH1", 3, 2) },
		func(h *harness) { h.setStock(t, "TULIP", "WH2", 4, 1) },
		func(h *harness) { h.setBuffer(t, "ROSE", "web", "", 1) },
		func(h *harness) { h.setBuffer(t, "ROSE", "other", "", 1) }, // refused: no such channel
		func(h *harness) {
			if _, err := h.inv.Reserve(testContext(t), reserveReq("c1", 2)); err != nil {
				t.Fatal(err)
			}
		},
		func(h *harness) { h.putChannel(t, "web", "WH2") },
	}
	for i, step := range steps {
		if i == 3 {
			both(func(h *harness) {
				_, err := h.adm.SetBuffer(testContext(t), &stockdv1.SetBufferRequest{Item: "ROSE", Channel: "other", BufferBaseUnits: 1})
				if status.Code(err) != codes.NotFound {
					t.Fatalf("SetBuffer(other): got %v, want NOT_FOUND", err)
				}
			})
		} else {
			both(step)
		}
		if leader.rev() != follower.rev() {
			t.Fatalf("step %d: leader at %d, follower at %d", i, leader.rev(), follower.rev())
		}
		wl.waitMark(t, leader.rev())
		wf.waitMark(t, follower.rev())
	}
	wl.mu.Lock()
	wf.mu.Lock()
	defer wl.mu.Unlock()
	defer wf.mu.Unlock()
	if len(wl.msgs) < len(steps) {
		t.Fatalf("leader: got %d messages, want at least %d", len(wl.msgs), len(steps))
	}
	strip := func(ms []*stockdv1.WatchResponse) []*stockdv1.WatchResponse {
		var out []*stockdv1.WatchResponse
		for _, m := range ms {
			if len(m.GetEvents()) > 0 || m.GetResync() {
				out = append(out, m)
			}
		}
		return out
	}
	gotL, gotF := strip(wl.msgs), strip(wf.msgs)
	if len(gotL) != len(gotF) {
		t.Fatalf("got %d messages with events on the leader, %d on the follower: %v vs %v", len(gotL), len(gotF), gotL, gotF)
	}
	for i := range gotL {
		if !proto.Equal(gotL[i], gotF[i]) {
			t.Fatalf("message %d: leader %v, follower %v", i, gotL[i], gotF[i])
		}
	}
}

func TestThousandWatchersEachEndWithGetAvailability(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 streams")
	}
	h := newHarness(t, withLogLevel(0))
	h.seed(t)
	const skus = 100
	sku := func(i int) string { return fmt.Sprintf("P%d-%03d", i%4, i) }
	for i := range skus {
		h.setStock(t, sku(i), "WH1", 50, 1)
	}
	watchers := make([]*watchClient, 1000)
	for i := range watchers {
		req := &stockdv1.WatchRequest{Channel: "web"}
		switch i % 3 {
		case 1:
			req.SkuPrefix = fmt.Sprintf("P%d", i%4)
		case 2:
			req.Skus = []string{sku(i % skus), sku((i + 7) % skus), "ROSE"}
		}
		watchers[i] = h.watch(t, req)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 150 {
				i := (g*37 + j*11) % skus
				_, err := h.erp.SetStock(testContext(t), &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
					{Item: sku(i), Location: "WH2", OnHandBaseUnits: int64(j), Version: uint64(g*1000 + j + 1)}}})
				if err == nil && j%10 == 0 {
					_, err = h.inv.Reserve(testContext(t), &stockdv1.ReserveRequest{Channel: "web",
						ReservationId: fmt.Sprintf("g%d-%d", g, j), Lines: []*stockdv1.ReserveLine{{Sku: sku(i), Quantity: 1}}})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	end := h.rev()
	all := []string{"ROSE"}
	for i := range skus {
		all = append(all, sku(i))
	}
	resp, err := h.inv.GetAvailability(testContext(t), &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: all})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetRevision() != end {
		t.Fatalf("GetAvailability at %d, want %d", resp.GetRevision(), end)
	}
	want := make(map[string]*stockdv1.SkuAvailability)
	for _, a := range resp.GetSkus() {
		want[a.GetSku()] = a
	}
	for i, w := range watchers {
		w.waitMark(t, end)
		w.mu.Lock()
		n := 0
		for s, a := range w.last {
			n++
			if !proto.Equal(a, want[s]) {
				w.mu.Unlock()
				t.Fatalf("watcher %d, sku %s at revision %d: got %v, want GetAvailability's %v", i, s, end, a, want[s])
			}
		}
		w.mu.Unlock()
		wantN := map[int]int{0: skus + 1, 1: skus / 4, 2: 3}[i%3]
		if i%3 == 1 && i%4 == 0 {
			wantN = skus / 4
		}
		if n != wantN {
			t.Fatalf("watcher %d: got %d SKUs, want %d", i, n, wantN)
		}
	}
}

func TestWatchEndsOnDrainAndLeavesNoGoroutine(t *testing.T) {
	h := newHarness(t, withWatchProgress(time.Millisecond))
	h.seed(t)
	ignore := goleak.IgnoreCurrent()
	// The hub starts with the first watcher and stops after the last.
	for i := range 10 {
		c := h.watch(t, &stockdv1.WatchRequest{Channel: "web"})
		c.waitMark(t, h.rev())
		h.setStock(t, "ROSE", "WH1", int64(i), uint64(i+2))
		c.stop()
	}
	if err := goleak.Find(ignore); err != nil {
		t.Fatalf("after 10 watchers came and went: %v", err)
	}
	w := h.watch(t, &stockdv1.WatchRequest{Channel: "web"})
	w.waitMark(t, h.rev())
	h.srv.Drain()
	<-w.done
	if status.Code(w.err) != codes.Unavailable {
		t.Fatalf("Watch after Drain: got %v, want UNAVAILABLE", w.err)
	}
	for range 5 {
		c := h.watch(t, &stockdv1.WatchRequest{Channel: "web"})
		<-c.done
	}
	if err := goleak.Find(ignore); err != nil {
		t.Errorf("after the streams ended: %v", err)
	}
}

func TestWatchHeartbeatCarriesProgress(t *testing.T) {
	h := newHarness(t, withWatchProgress(5*time.Millisecond))
	h.seed(t)
	w := h.watch(t, &stockdv1.WatchRequest{Channel: "web", Skus: []string{"ROSE"}})
	w.waitMark(t, h.rev())
	h.setStock(t, "TULIP", "WH1", 1, 1) // not watched: only the mark moves
	w.waitMark(t, h.rev())
	if got := w.takeEvents(); len(got) != 0 {
		t.Fatalf("a count of an unwatched SKU: got events %v, want none", got)
	}
}

func TestWatchAndDeltaPullsRefuseBadInput(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	ctx := testContext(t)
	recvErr := func(req *stockdv1.WatchRequest) error {
		st, err := h.inv.Watch(ctx, req)
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}
	long := string(make([]byte, 300))
	cases := []struct {
		name  string
		call  func() error
		code  codes.Code
		field string
	}{
		{"watch without a channel", func() error { return recvErr(&stockdv1.WatchRequest{}) }, codes.InvalidArgument, "channel"},
		{"watch with skus and a prefix", func() error {
			return recvErr(&stockdv1.WatchRequest{Channel: "web", Skus: []string{"A"}, SkuPrefix: "A"})
		}, codes.InvalidArgument, "sku_prefix"},
		{"watch with an empty sku", func() error { return recvErr(&stockdv1.WatchRequest{Channel: "web", Skus: []string{"A", ""}}) },
			codes.InvalidArgument, "skus[1]"},
		{"watch of an unknown channel", func() error { return recvErr(&stockdv1.WatchRequest{Channel: "nope"}) }, codes.NotFound, ""},
		{"changes with too big a page", func() error {
			_, err := h.inv.ListChanges(ctx, &stockdv1.ListChangesRequest{Channel: "web", PageSize: 10001})
			return err
		}, codes.InvalidArgument, "page_size"},
		{"changes with a bad token", func() error {
			_, err := h.inv.ListChanges(ctx, &stockdv1.ListChangesRequest{Channel: "web", PageToken: "x"})
			return err
		}, codes.InvalidArgument, "page_token"},
		{"availability with a bad token", func() error {
			_, err := h.inv.ListAvailability(ctx, &stockdv1.ListAvailabilityRequest{Channel: "web", PageToken: long})
			return err
		}, codes.InvalidArgument, "page_token"},
		{"availability of an unknown channel", func() error {
			_, err := h.inv.ListAvailability(ctx, &stockdv1.ListAvailabilityRequest{Channel: "nope"})
			return err
		}, codes.NotFound, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { checkStatus(t, tc.name, tc.call(), tc.code, tc.field) })
	}
}

func TestListChangesPagesTheChangedSKUs(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	h.putChannel(t, "b2b", "WH1")
	since := h.rev()
	h.setStock(t, "C", "WH1", 1, 1)
	h.setStock(t, "A", "WH2", 2, 1) // b2b does not see WH2
	h.setStock(t, "B", "WH1", 3, 1)
	h.setStock(t, "A", "WH1", 4, 1)
	h.setBuffer(t, "ROSE", "b2b", "", 1) // only b2b's figure
	end := h.rev()
	ctx := testContext(t)
	var got []string
	req := &stockdv1.ListChangesRequest{Channel: "web", SinceRevision: since, PageSize: 2}
	for {
		resp, err := h.inv.ListChanges(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetRevision() != end || resp.GetResyncRequired() {
			t.Fatalf("ListChanges: got revision %d resync %v, want %d without resync", resp.GetRevision(), resp.GetResyncRequired(), end)
		}
		for _, a := range resp.GetSkus() {
			got = append(got, fmt.Sprintf("%s=%d", a.GetSku(), a.GetAvailableSkuUnits()))
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if want := "[A=6 B=3 C=1]"; fmt.Sprint(got) != want {
		t.Fatalf("ListChanges(web, since %d) in pages of 2: got %v, want %s", since, got, want)
	}
	resp, err := h.inv.ListChanges(ctx, &stockdv1.ListChangesRequest{Channel: "b2b", SinceRevision: since})
	if err != nil {
		t.Fatal(err)
	}
	var b2b []string
	for _, a := range resp.GetSkus() {
		b2b = append(b2b, a.GetSku())
	}
	if fmt.Sprint(b2b) != "[A B C ROSE]" {
		t.Fatalf("ListChanges(b2b, since %d): got %v, want [A B C ROSE]", since, b2b)
	}
	recs, err := snapshotRecords(h.m)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.m.Restore(recs); err != nil {
		t.Fatal(err)
	}
	resp, err = h.inv.ListChanges(ctx, &stockdv1.ListChangesRequest{Channel: "web", SinceRevision: since})
	if err != nil || !resp.GetResyncRequired() {
		t.Fatalf("ListChanges from before a restore: got %v, %v, want resync_required", resp, err)
	}
}

func TestListAvailabilityPagesTheCatalog(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	h.setStock(t, "B", "WH1", 1, 1)
	h.setStock(t, "A", "WH2", 2, 1)
	h.putLocation(t, "WH9")
	h.setStock(t, "Z", "WH9", 2, 1) // web does not see WH9
	if _, err := h.adm.PutSku(testContext(t), &stockdv1.PutSkuRequest{Sku: &stockdv1.Sku{Sku: "ROSE-6", Item: "ROSE", Factor: 6}}); err != nil {
		t.Fatal(err)
	}
	var got []string
	req := &stockdv1.ListAvailabilityRequest{Channel: "web", PageSize: 3}
	for {
		resp, err := h.inv.ListAvailability(testContext(t), req)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range resp.GetSkus() {
			got = append(got, fmt.Sprintf("%s=%d", a.GetSku(), a.GetAvailableSkuUnits()))
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if want := "[A=2 B=1 ROSE=15 ROSE-6=1]"; fmt.Sprint(got) != want {
		t.Fatalf("ListAvailability(web) in pages of 3: got %v, want %s", got, want)
	}
}

func setStockCmd(item, loc string, onHand int64, version uint64) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_SetStock{SetStock: &logv1.SetStock{Rows: []*logv1.StockCount{
		{Item: item, Location: loc, OnHandBaseUnits: onHand, Version: version}}}}}
}

func (h *harness) putLocation(t testing.TB, id string) {
	t.Helper()
	if _, err := h.adm.PutLocation(testContext(t), &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: id, Name: id}}); err != nil {
		t.Fatalf("PutLocation(%s): %v", id, err)
	}
}

// TestWatchSurvivesALogResetAndAChannelChange: a snapshot install (the
// change log starts afresh under the hub) and a change of the channel's
// locations make the hub compare every figure; only those that moved go out.
func TestWatchSurvivesALogResetAndAChannelChange(t *testing.T) {
	h := newHarness(t, withWatchProgress(10*time.Millisecond))
	h.seed(t)
	h.setStock(t, "TULIP", "WH2", 4, 1)
	h.setStock(t, "LILY", "WH1", 2, 1)
	w := h.watch(t, &stockdv1.WatchRequest{Channel: "web"})
	w.waitMark(t, h.rev())
	h.srv.watch.computeMu.Lock() // the hub sees the reset only after both
	h.setStock(t, "TULIP", "WH2", 6, 2)
	recs, err := snapshotRecords(h.m)
	if err != nil {
		h.srv.watch.computeMu.Unlock()
		t.Fatal(err)
	}
	if err := h.m.Restore(recs); err != nil {
		h.srv.watch.computeMu.Unlock()
		t.Fatal(err)
	}
	h.srv.watch.computeMu.Unlock()
	w.waitMark(t, h.rev())
	checkEvents(t, "TULIP counted, then a snapshot install", w.takeEvents(), []eventWant{{"TULIP", 6, h.rev()}})

	h.setBuffer(t, "TULIP", "web", "WH2", 1)
	w.waitMark(t, h.rev())
	w.takeEvents()
	// WH1 leaves: every figure loses its WH1 line, so all three move (TULIP's
	// total stays 5).
	h.putChannel(t, "web", "WH2")
	w.waitMark(t, h.rev())
	checkEvents(t, "web now sees WH2 only", w.takeEvents(), []eventWant{{"LILY", 0, h.rev()}, {"ROSE", 5, h.rev()}, {"TULIP", 5, h.rev()}})
}

func TestWatcherLeavesWhatATransferHasYetToReadToIt(t *testing.T) {
	w := &watcher{limit: 10, pos: map[store.SKU]int{}, wake: make(chan struct{}, 1), unread: []store.SKU{"B", "D"}}
	ev := func(sku string, rev uint64) *hubEvent {
		return &hubEvent{sku: store.SKU(sku), moved: true, ev: &stockdv1.WatchEvent{
			Availability: &stockdv1.SkuAvailability{Sku: sku}, Revision: rev}}
	}
	w.deliver([]*hubEvent{ev("A", 1), ev("B", 2), ev("C", 3), ev("D", 4), ev("E", 5)}, 5)
	got, _, _, _ := w.take(10)
	var skus []string
	for _, e := range got {
		skus = append(skus, e.GetAvailability().GetSku())
	}
	if fmt.Sprint(skus) != "[A C E]" {
		t.Fatalf("events of A-E while B and D wait to be read by a transfer: got %v, want [A C E]", skus)
	}
}

func TestWatchResumeFromARevisionNotYetAppliedWaitsThenUnavailable(t *testing.T) {
	h := newHarness(t, withReadWait(50*time.Millisecond))
	h.seed(t)
	st, err := h.inv.Watch(testContext(t), &stockdv1.WatchRequest{Channel: "web", FromRevision: h.rev() + 5})
	if err == nil {
		_, err = st.Recv()
	}
	checkStatus(t, "resume from 5 revisions ahead of the node", err, codes.Unavailable, "")
	if !strings.HasPrefix(status.Convert(err).Message(), "from_revision: revision") {
		t.Fatalf("resume ahead of the node: got message %q, want it to name from_revision", status.Convert(err).Message())
	}
}
