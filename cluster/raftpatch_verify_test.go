package cluster

import (
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// holdingTransport lets a heartbeat (an AppendEntries without entries)
// reach its follower and be answered, then, while armed, holds the answer
// until release is closed: the leader reads it late, as a leader
// frozen by SIGSTOP reads the answers waiting in its sockets.
type holdingTransport struct {
	*raft.InmemTransport
	mu      sync.Mutex
	armed   bool
	heldFor map[raft.ServerAddress]int
	release chan struct{}
}

func (h *holdingTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := h.InmemTransport.AppendEntries(id, target, args, resp)
	h.mu.Lock()
	hold := h.armed && err == nil && len(args.Entries) == 0
	if hold {
		h.heldFor[target]++
	}
	release := h.release
	h.mu.Unlock()
	if hold {
		<-release
	}
	return err
}

func (h *holdingTransport) held(target raft.ServerAddress) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.heldFor[target] > 0
}

// TestVerifyLeaderCountsOnlyAnswersSentAfterItBegan pins the verify patch
// (PATCHED.md). The leader's heartbeats reach both followers and are
// answered "still leader", but the answers reach the leader only after a
// VerifyLeader has begun, and by then the leader can reach no one. Those
// answers say nothing about the moment of the read, so VerifyLeader must
// fail (the leader steps down when its lease runs out). Upstream counts
// them and confirms the leadership: a chaos run (seed 1795996773056887323)
// served a stale linearizable read that way from a leader resumed after
// SIGSTOP.
func TestVerifyLeaderCountsOnlyAnswersSentAfterItBegan(t *testing.T) {
	ids := []raft.ServerID{"v1", "v2", "v3"}
	var conf raft.Configuration
	for _, id := range ids {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: id, Address: raft.ServerAddress(id)})
	}
	var (
		trs   []*raft.InmemTransport
		rafts []*raft.Raft
	)
	for _, id := range ids {
		_, tr := raft.NewInmemTransport(raft.ServerAddress(id))
		trs = append(trs, tr)
	}
	for i := range trs {
		for j := range trs {
			if i != j {
				trs[i].Connect(trs[j].LocalAddr(), trs[j])
			}
		}
	}
	leaderTr := &holdingTransport{InmemTransport: trs[0], heldFor: map[raft.ServerAddress]int{}, release: make(chan struct{})}
	for i, id := range ids {
		cfg := raft.DefaultConfig()
		cfg.LocalID = id
		cfg.Logger = hclog.NewNullLogger()
		// v1 campaigns first and leads, with a 1 s lease: long enough to
		// start the verify before it steps down. v2 and v3 stay followers.
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = time.Second, time.Second, time.Second
		if i > 0 {
			cfg.HeartbeatTimeout, cfg.ElectionTimeout = time.Minute, time.Minute
		}
		var tr raft.Transport = trs[i]
		if i == 0 {
			tr = leaderTr
		}
		logs := raft.NewInmemStore()
		snaps := raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(cfg, logs, logs, snaps, tr, conf); err != nil {
			t.Fatal(err)
		}
		r, err := raft.NewRaft(cfg, &recordingFSM{applied: make(chan string, 16)}, logs, logs, snaps, tr)
		if err != nil {
			t.Fatal(err)
		}
		rafts = append(rafts, r)
	}
	t.Cleanup(func() {
		raft.SetVerifyRegisteredHookForTesting(nil)
		leaderTr.mu.Lock()
		leaderTr.armed = false
		leaderTr.mu.Unlock()
		select {
		case <-leaderTr.release:
		default:
			close(leaderTr.release)
		}
		for _, r := range rafts {
			if err := r.Shutdown().Error(); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		}
	})
	leader := rafts[0]
	waitFor(t, "v1 leads with both followers in contact", func() bool {
		return leader.State() == raft.Leader && rafts[1].Leader() == "v1" && rafts[2].Leader() == "v1"
	})
	if err := leader.VerifyLeader().Error(); err != nil {
		t.Fatalf("VerifyLeader with both followers in reach: %v", err)
	}

	// Heartbeats go out and are answered; the answers wait.
	leaderTr.mu.Lock()
	leaderTr.armed = true
	leaderTr.mu.Unlock()
	waitFor(t, "heartbeats to v2 and v3 held", func() bool { return leaderTr.held("v2") && leaderTr.held("v3") })
	// From now on the leader reaches no one.
	trs[0].DisconnectAll()
	// The answers arrive just after the verify begins.
	raft.SetVerifyRegisteredHookForTesting(func() {
		leaderTr.mu.Lock()
		leaderTr.armed = false
		close(leaderTr.release)
		leaderTr.mu.Unlock()
	})
	if err := leader.VerifyLeader().Error(); err == nil {
		t.Fatal("VerifyLeader succeeded on answers to heartbeats sent before it began, with no follower in reach")
	}
}
