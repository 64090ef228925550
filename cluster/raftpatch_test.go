package cluster

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// recordingFSM passes every applied command's data to applied.
type recordingFSM struct{ applied chan string }

func (f *recordingFSM) Apply(l *raft.Log) any {
	f.applied <- string(l.Data)
	return nil
}
func (f *recordingFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, io.ErrUnexpectedEOF }
func (f *recordingFSM) Restore(io.ReadCloser) error         { return io.ErrUnexpectedEOF }

// TestDeposedLeaderNeverAppliesItsUncommittedEntry pins the patch to
// hashicorp/raft in cluster/internal/hraft (PATCHED.md). A follower, once a
// leader of term 1, holds an entry of its own that was never committed
// ("lost", index 2). The leader of term 2 first sends an append that matches
// index 1 and carries no entries but a commit index of 2, then its own entry
// 2. The follower must apply the leader's entry 2, never its own: upstream
// v1.8.0 commits up to its own last index and applies "lost" (I2: a node
// would hold a reservation the cluster refused).
func TestDeposedLeaderNeverAppliesItsUncommittedEntry(t *testing.T) {
	logs, stable := raft.NewInmemStore(), raft.NewInmemStore()
	conf := raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "f", Address: "f"},
		{Suffrage: raft.Voter, ID: "L", Address: "L"},
	}}
	if err := logs.StoreLogs([]*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: raft.EncodeConfiguration(conf)},
		{Index: 2, Term: 1, Type: raft.LogCommand, Data: []byte("lost")},
	}); err != nil {
		t.Fatal(err)
	}
	if err := stable.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}

	cfg := raft.DefaultConfig()
	cfg.LocalID = "f"
	// No election of its own while the test plays the leader.
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = time.Hour, time.Hour, time.Second
	cfg.Logger = hclog.NewNullLogger()
	_, ft := raft.NewInmemTransport("f")
	_, lt := raft.NewInmemTransport("L")
	lt.Connect("f", ft)
	ft.Connect("L", lt)
	fsm := &recordingFSM{applied: make(chan string, 4)}
	r, err := raft.NewRaft(cfg, fsm, logs, stable, raft.NewInmemSnapshotStore(), ft)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Shutdown().Error(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		lt.Close()
	})

	header := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("L"), Addr: []byte("L")}
	appendEntries := func(what string, req *raft.AppendEntriesRequest) {
		t.Helper()
		var resp raft.AppendEntriesResponse
		if err := lt.AppendEntries("f", "f", req, &resp); err != nil || !resp.Success {
			t.Fatalf("%s: %+v, %v; want success", what, resp, err)
		}
	}
	appendEntries("append without entries", &raft.AppendEntriesRequest{
		RPCHeader: header, Term: 2, PrevLogEntry: 1, PrevLogTerm: 1, LeaderCommitIndex: 2,
	})
	appendEntries("append of the leader's entry 2", &raft.AppendEntriesRequest{
		RPCHeader: header, Term: 2, PrevLogEntry: 1, PrevLogTerm: 1, LeaderCommitIndex: 2,
		Entries: []*raft.Log{{Index: 2, Term: 2, Type: raft.LogCommand, Data: []byte("leader's")}},
	})
	select {
	case got := <-fsm.applied:
		if got != "leader's" {
			t.Fatalf("first entry applied at index 2: got %q, want %q (the deposed leader applied its uncommitted entry)", got, "leader's")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no entry applied within 10s after the leader committed index 2")
	}
}

// gateFSM's Apply of "block" says so on entered and waits for release.
type gateFSM struct{ entered, release chan struct{} }

func (f *gateFSM) Apply(l *raft.Log) any {
	if string(l.Data) == "block" {
		f.entered <- struct{}{}
		<-f.release
	}
	return nil
}
func (f *gateFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, io.ErrUnexpectedEOF }
func (f *gateFSM) Restore(io.ReadCloser) error         { return io.ErrUnexpectedEOF }

// TestApplyFutureAnswersOnShutdown pins the second patch (PATCHED.md,
// upstream issue hashicorp/raft#498). An entry is committed and queued for
// the FSM while the FSM is busy; raft shuts down; the FSM goroutine then
// picks shutdown over the queued entry about half the time, and upstream
// never answers that entry's future: a proposer waiting on it, and so
// Node.Close, waited forever. Twenty rounds: upstream hangs in one with
// odds of 1 - 2^-20.
func TestApplyFutureAnswersOnShutdown(t *testing.T) {
	for round := range 20 {
		logs := raft.NewInmemStore()
		snaps := raft.NewInmemSnapshotStore()
		addr, tr := raft.NewInmemTransport("")
		cfg := raft.DefaultConfig()
		cfg.LocalID = "n"
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
		cfg.Logger = hclog.NewNullLogger()
		conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: "n", Address: addr}}}
		if err := raft.BootstrapCluster(cfg, logs, logs, snaps, tr, conf); err != nil {
			t.Fatal(err)
		}
		fsm := &gateFSM{entered: make(chan struct{}), release: make(chan struct{})}
		r, err := raft.NewRaft(cfg, fsm, logs, logs, snaps, tr)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the single node leads", func() bool { return r.State() == raft.Leader })
		busy := r.Apply([]byte("block"), time.Second)
		select {
		case <-fsm.entered:
		case <-time.After(testDeadline):
			t.Fatalf("round %d: the FSM never started applying the first entry", round)
		}
		queued := r.Apply([]byte("queued"), time.Second)
		waitFor(t, "the second entry queued for the FSM", func() bool { return r.Stats()["fsm_pending"] == "1" })
		shut := r.Shutdown()
		close(fsm.release)

		answered := make(chan error, 1)
		go func() { answered <- queued.Error() }()
		select {
		case err := <-answered:
			if err != nil && err != raft.ErrRaftShutdown {
				t.Fatalf("round %d: queued entry: %v, want nil or %v", round, err, raft.ErrRaftShutdown)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: the future of an entry queued for the FSM at shutdown is unanswered after 5s", round)
		}
		if err := busy.Error(); err != nil && err != raft.ErrRaftShutdown {
			t.Fatalf("round %d: first entry: %v", round, err)
		}
		if err := shut.Error(); err != nil {
			t.Fatalf("round %d: Shutdown: %v", round, err)
		}
	}
}
