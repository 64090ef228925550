package cluster

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

func TestMain(m *testing.M) {
	flag.Parse()
	startWatchdog()
	goleak.VerifyTestMain(m)
}

// testDeadline bounds every wait in these tests.
const testDeadline = 10 * time.Second

// logBuffer is a slog destination tests can read while the node writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fakeClock is a leader clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testConfig is a single node on a fresh folder and an OS-picked port.
func testConfig(t *testing.T) Config {
	t.Helper()
	return Config{
		NodeID:   "n1",
		DataDir:  t.TempDir(),
		RaftAddr: "127.0.0.1:0",
		// Nothing listens here: a single node never dials its own gRPC address.
		GRPCAddr: "127.0.0.1:1",
		Machine:  store.New(store.DefaultConfig()),
	}
}

// startNode starts a node from cfg, closes it at cleanup, and waits until it leads.
func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	if err := n.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	waitFor(t, "node leads", n.IsLeader)
	return n
}

// waitFor checks cond every few milliseconds until it holds or testDeadline
// passes. It is for conditions nothing signals (raft's leadership).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(testDeadline)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("waiting for %s: still false after %v", what, testDeadline)
		}
	}
}

// waitApplied waits, on apply notifications, until cond holds.
func waitApplied(t *testing.T, n *Node, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	defer cancel()
	for {
		ch := n.fsm.appliedCh()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("waiting for %s: still false after %v", what, testDeadline)
		}
	}
}

// testCtx is t.Context() bounded by testDeadline, so a call that never
// answers fails its test instead of stalling the package until go test's
// timeout.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	t.Cleanup(cancel)
	return ctx
}

func propose(t *testing.T, n *Node, cmd *logv1.Command) store.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	defer cancel()
	res, err := n.Propose(ctx, cmd)
	if err != nil {
		t.Fatalf("Propose(%v): %v", cmd, err)
	}
	return res
}

func putLocation(id string) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_PutLocation{PutLocation: &logv1.PutLocation{Id: id, Name: "loc " + id}}}
}

func putChannel(id string, locs ...string) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_PutChannel{PutChannel: &logv1.PutChannel{Id: id, Locations: locs}}}
}

func setStock(item, loc string, onHand int64, version uint64) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_SetStock{SetStock: &logv1.SetStock{Rows: []*logv1.StockCount{
		{Item: item, Location: loc, OnHandBaseUnits: onHand, Version: version},
	}}}}
}

func reserve(ch, id, sku string, qty int64, ttl time.Duration) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_Reserve{Reserve: &logv1.Reserve{
		Channel: ch, ReservationId: id, TtlNanos: int64(ttl),
		Lines: []*logv1.ReserveLine{{Sku: sku, QuantitySkuUnits: qty}},
	}}}
}

// seed declares location L1, channel web seeing it, and onHand units of ROSE.
func seed(t *testing.T, n *Node, onHand int64) {
	t.Helper()
	for _, cmd := range []*logv1.Command{putLocation("L1"), putChannel("web", "L1"), setStock("ROSE", "L1", onHand, 1)} {
		if res := propose(t, n, cmd); res.Err != nil {
			t.Fatalf("Propose(%v): refused: %v", cmd, res.Err)
		}
	}
}

// closeNode closes n now (its cleanup Close is then a no-op).
func closeNode(t *testing.T, n *Node) {
	t.Helper()
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func newTextLogger(w *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
