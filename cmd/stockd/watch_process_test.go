package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stockd/stockd/api/stockdv1"
)

// watchLog collects the events of one Watch stream, each with the time it
// arrived, and its last progress mark.
type watchLog struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every message
	events  []string      // "sku=available@revision", outside state transfers
	arrived map[uint64]time.Time
	mark    uint64
	err     error
}

func followWatch(t *testing.T, ctx context.Context, c *clients, req *stockdv1.WatchRequest) *watchLog {
	t.Helper()
	st, err := c.inv.Watch(ctx, req)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	w := &watchLog{changed: make(chan struct{}), arrived: make(map[uint64]time.Time)}
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		inState := false
		for {
			m, err := st.Recv()
			now := time.Now()
			w.mu.Lock()
			if err != nil {
				w.err = err
				close(w.changed)
				w.mu.Unlock()
				return
			}
			inState = inState || m.GetResync()
			for _, e := range m.GetEvents() {
				if !inState {
					w.events = append(w.events, fmt.Sprintf("%s=%d@%d", e.GetAvailability().GetSku(),
						e.GetAvailability().GetAvailableSkuUnits(), e.GetRevision()))
					w.arrived[e.GetRevision()] = now
				}
			}
			if m.GetRevision() != 0 {
				inState = false
				w.mark = max(w.mark, m.GetRevision())
			}
			close(w.changed)
			w.changed = make(chan struct{})
			w.mu.Unlock()
		}
	}()
	return w
}

// waitMark waits, up to 10 s, for a message marking rev complete.
func (w *watchLog) waitMark(t *testing.T, rev uint64) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		mark, ch, err := w.mark, w.changed, w.err
		w.mu.Unlock()
		if mark >= rev {
			return
		}
		if err != nil {
			t.Fatalf("waiting for revision %d: the stream ended: %v", rev, err)
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("waiting for revision %d: got mark %d after 10 s", rev, mark)
		}
	}
}

// TestWatchOnAFollowerSeesTheLeadersSequence runs three stockd processes,
// counts stock through the leader one change at a time, and compares what a
// Watch on the leader and one on a follower receive: the same events, in the
// same order. It logs the leader-write to follower-event delay.
func TestWatchOnAFollowerSeesTheLeadersSequence(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: starts three stockd processes")
	}
	tc := startCluster(t, 3)
	leader := tc.waitLeader(10*time.Second, nil)
	setupCatalog(t, leader.c)
	var follower *clusterNode
	for _, nd := range tc.nodes {
		if nd != leader {
			follower = nd
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first, err := leader.c.erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
		{Item: "W-0", Location: "ams", OnHandBaseUnits: 1, Version: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	// Read-your-writes on the follower before it watches, so both start
	// from the same state.
	if _, err := follower.c.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"W-0"},
		MinRevision: first.GetRevision()}); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	onLeader := followWatch(t, wctx, leader.c, &stockdv1.WatchRequest{Channel: "web", SkuPrefix: "W-"})
	onFollower := followWatch(t, wctx, follower.c, &stockdv1.WatchRequest{Channel: "web", SkuPrefix: "W-"})
	onLeader.waitMark(t, first.GetRevision())
	onFollower.waitMark(t, first.GetRevision())

	const changes = 40
	sent := make(map[uint64]time.Time)
	for i := range changes {
		start := time.Now()
		resp, err := leader.c.erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
			{Item: fmt.Sprintf("W-%d", i%5), Location: []string{"ams", "fra"}[i%2], OnHandBaseUnits: int64(10 + i), Version: uint64(2 + i)}}})
		if err != nil {
			t.Fatalf("SetStock %d: %v", i, err)
		}
		sent[resp.GetRevision()] = start
		onLeader.waitMark(t, resp.GetRevision())
		onFollower.waitMark(t, resp.GetRevision())
	}
	stop()
	onLeader.mu.Lock()
	onFollower.mu.Lock()
	defer onLeader.mu.Unlock()
	defer onFollower.mu.Unlock()
	if len(onLeader.events) != changes || !slices.Equal(onLeader.events, onFollower.events) {
		t.Fatalf("%d counts through the leader: got events %v on the leader, %v on the follower, want the same %d",
			changes, onLeader.events, onFollower.events, changes)
	}
	var delays []time.Duration
	for rev, at := range sent {
		delays = append(delays, onFollower.arrived[rev].Sub(at))
	}
	slices.Sort(delays)
	t.Logf("leader SetStock sent -> follower event received, %d changes one at a time: p50 %v, max %v",
		len(delays), delays[len(delays)/2], delays[len(delays)-1])
}
