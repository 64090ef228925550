package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// Defaults for the zero fields of Config.
const (
	// DefaultMaxBatch is the default cap on commands per log entry.
	DefaultMaxBatch = 512
	// DefaultLinger is the default wait for more commands before proposing an entry.
	DefaultLinger = time.Millisecond
	// DefaultSnapshotThreshold is the default number of log entries between snapshots.
	DefaultSnapshotThreshold = 8192
	// DefaultSnapshotInterval is how often, by default, raft checks whether a snapshot is due.
	DefaultSnapshotInterval = 2 * time.Minute
	// DefaultApplyTimeout is the default bound on raft accepting an entry.
	DefaultApplyTimeout = 5 * time.Second
	// DefaultQueueSize is the default number of commands that may wait to be batched.
	DefaultQueueSize = 8192
)

// Names inside Config.DataDir.
const (
	raftDBFile = "raft.db"
	// retainSnapshots is how many snapshots the file snapshot store keeps;
	// raft falls back to the older one if the newest cannot be opened.
	retainSnapshots = 2
	logCacheEntries = 512
)

// Config configures a Node. Zero fields take the Default* values.
type Config struct {
	// NodeID is this node's stable raft server id; required.
	NodeID string
	// DataDir holds raft.db (log and stable store, bbolt) and snapshots/; required.
	DataDir string
	// RaftAddr is the TCP address raft binds, e.g. 127.0.0.1:7401; port 0
	// picks a free port. It must name an IP peers can reach (it is also
	// advertised); required.
	RaftAddr string
	// Machine is the state machine the log is applied to: fresh (store.New),
	// owned by the Node from Start on; required.
	Machine *store.Machine
	// Logger receives the node's records and raft's at warn and above; nil discards.
	Logger *slog.Logger
	// MaxBatch caps the commands grouped in one log entry; 1 disables grouping.
	MaxBatch int
	// Linger is how long the proposer waits for more commands while more
	// callers are in flight than the batch holds; negative disables it.
	Linger time.Duration
	// SnapshotThreshold is the number of log entries between snapshots.
	SnapshotThreshold uint64
	// SnapshotInterval is how often raft checks whether a snapshot is due.
	SnapshotInterval time.Duration
	// ApplyTimeout bounds the wait for raft to accept an entry; past it the
	// entry's callers get ErrQueueFull. It also bounds each expiry Tick.
	ApplyTimeout time.Duration
	// QueueSize bounds the commands waiting to be batched; beyond it Propose
	// fails at once with ErrQueueFull.
	QueueSize int
	// Clock is the leader clock entries are stamped with; nil means time.Now.
	Clock func() time.Time
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	switch {
	case c.Linger == 0:
		c.Linger = DefaultLinger
	case c.Linger < 0:
		c.Linger = 0
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.SnapshotInterval <= 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.ApplyTimeout <= 0 {
		c.ApplyTimeout = DefaultApplyTimeout
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}

// Node is one stockd replica: raft with its bbolt log and snapshot stores,
// the FSM adapter over the store.Machine, the batching proposer and the
// expiry ticker. A Node starts once: New, Start, then Close. Its methods are
// safe for concurrent use.
type Node struct {
	cfg     Config
	machine *store.Machine
	logger  *slog.Logger
	clock   func() time.Time
	fsm     *fsm

	// stopped is closed by Close; callers waiting in Propose or WaitApplied
	// return ErrStopped.
	stopped chan struct{}
	// replayed is closed once the log tail present at Start is applied.
	replayed chan struct{}

	mu       sync.Mutex // guards the lifecycle fields below
	state    lifecycle
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	recovery recovery

	// run is set while the node runs: Start stores it last, Close clears it first.
	run atomic.Pointer[running]
	// prop outlives run so Stats still answers after Close.
	prop atomic.Pointer[proposer]
}

type lifecycle uint8

const (
	stateNew lifecycle = iota
	stateStarted
	stateClosed
)

// running is what Start built and Close tears down.
type running struct {
	raft  *raft.Raft
	trans *raft.NetworkTransport
	bolt  *raftboltdb.BoltStore
	prop  *proposer
}

// New checks cfg and returns a Node. It starts nothing and touches no disk.
func New(cfg Config) (*Node, error) {
	switch {
	case cfg.NodeID == "":
		return nil, errors.New("new node: node id is required")
	case cfg.DataDir == "":
		return nil, errors.New("new node: data dir is required")
	case cfg.RaftAddr == "":
		return nil, errors.New("new node: raft addr is required")
	case cfg.Machine == nil:
		return nil, errors.New("new node: machine is required")
	}
	cfg.setDefaults()
	return &Node{
		cfg:      cfg,
		machine:  cfg.Machine,
		logger:   cfg.Logger,
		clock:    cfg.Clock,
		fsm:      newFSM(cfg.Machine, cfg.Logger, cfg.DataDir),
		stopped:  make(chan struct{}),
		replayed: make(chan struct{}),
	}, nil
}

// Start opens the log, stable and snapshot stores under DataDir, binds the
// raft transport, restores the newest snapshot, bootstraps a one-voter
// cluster if DataDir holds no raft state, and starts the proposer and the
// expiry ticker. It fails closed: a snapshot that cannot be restored (a CRC
// or digest mismatch) is an error, never an empty or partial state. On error
// everything opened is closed again.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != stateNew {
		return errors.New("start: node already started")
	}
	n.state = stateStarted
	if err := os.MkdirAll(n.cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if err := removeTempFiles(n.cfg.DataDir); err != nil {
		return fmt.Errorf("start: remove temporary snapshot files: %w", err)
	}
	hl := newRaftLogger(n.logger, hclog.Warn)

	bolt, err := raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(n.cfg.DataDir, raftDBFile),
		// Another process holding the file fails this one instead of hanging.
		BoltOptions: &bbolt.Options{Timeout: time.Second},
	})
	if err != nil {
		return fmt.Errorf("start: open raft log: %w", err)
	}
	rn := &running{bolt: bolt}
	ok := false
	defer func() {
		if !ok {
			n.teardown(rn)
		}
	}()
	logs, err := raft.NewLogCache(logCacheEntries, bolt)
	if err != nil {
		return fmt.Errorf("start: log cache: %w", err)
	}
	files, err := raft.NewFileSnapshotStoreWithLogger(n.cfg.DataDir, retainSnapshots, hl.Named("snapshot"))
	if err != nil {
		return fmt.Errorf("start: open snapshot store: %w", err)
	}
	snaps := &openRecorder{SnapshotStore: files}
	// A nil advertise address makes raft advertise the listener's own
	// address, so port 0 works.
	rn.trans, err = raft.NewTCPTransportWithLogger(n.cfg.RaftAddr, nil, 3, 10*time.Second, hl.Named("transport"))
	if err != nil {
		return fmt.Errorf("start: raft transport on %s: %w", n.cfg.RaftAddr, err)
	}
	existing, err := raft.HasExistingState(logs, bolt, snaps)
	if err != nil {
		return fmt.Errorf("start: inspect raft state: %w", err)
	}

	rn.raft, err = raft.NewRaft(n.raftConfig(hl), n.fsm, logs, bolt, snaps, rn.trans)
	if err != nil {
		// Why each snapshot was refused (raft itself only logs it).
		causes := snaps.openErrs()
		if rerr := n.fsm.lastRestoreErr(); rerr != nil {
			causes = append(causes, rerr)
		}
		if len(causes) > 0 {
			return fmt.Errorf("start raft: %w: %w", err, errors.Join(causes...))
		}
		return fmt.Errorf("start raft: %w", err)
	}
	for _, err := range snaps.openErrs() {
		n.logger.Warn("skipped a snapshot that could not be opened; restored an older one", "error", err)
	}
	// raft restored the snapshot inside NewRaft; nothing is applied until a
	// leader commits, so these are the figures as found on disk.
	rec, err := planRecovery(rn.raft, logs)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if !existing {
		boot := raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter,
			ID:       raft.ServerID(n.cfg.NodeID),
			Address:  rn.trans.LocalAddr(),
		}}}
		if err := rn.raft.BootstrapCluster(boot).Error(); err != nil {
			return fmt.Errorf("start: bootstrap: %w", err)
		}
		n.logger.Info("bootstrapped cluster", "node", n.cfg.NodeID, "raft_addr", string(rn.trans.LocalAddr()))
	}
	if rec.snapshotIndex > 0 {
		n.logger.Info("restored snapshot", "index", rec.snapshotIndex)
	} else {
		n.logger.Info("no snapshot to restore")
	}
	n.recovery = rec

	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	rn.prop = newProposer(rn.raft, n.machine, n.cfg)
	n.prop.Store(rn.prop)
	n.run.Store(rn)
	ok = true
	n.wg.Add(4)
	go func() { defer n.wg.Done(); rn.prop.runBatcher(ctx) }()
	go func() { defer n.wg.Done(); rn.prop.runWaiter() }()
	go func() { defer n.wg.Done(); n.runTicker(ctx) }()
	go func() { defer n.wg.Done(); n.watchReplay(ctx, rec) }()
	return nil
}

func (n *Node) raftConfig(hl hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.NodeID)
	rc.Logger = hl
	// Tuned for a LAN: failover within about a second, and a short commit
	// timeout so an isolated write reaches followers at once (raft's 50 ms
	// default delays it).
	rc.HeartbeatTimeout = 500 * time.Millisecond
	rc.ElectionTimeout = 500 * time.Millisecond
	rc.LeaderLeaseTimeout = 250 * time.Millisecond
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.SnapshotInterval = n.cfg.SnapshotInterval
	return rc
}

// Close stops the ticker and the proposer (queued callers get ErrStopped),
// shuts raft down (closing its transport), waits for every goroutine the
// node started, and closes the log store. It is safe to call more than once.
func (n *Node) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state == stateClosed {
		return nil
	}
	wasStarted := n.state == stateStarted
	n.state = stateClosed
	close(n.stopped)
	rn := n.run.Swap(nil)
	if !wasStarted || rn == nil {
		return nil
	}
	n.cancel()
	return n.teardown(rn)
}

// teardown shuts raft down, waits for the node's goroutines, and closes the
// stores; every step runs even if an earlier one failed.
func (n *Node) teardown(rn *running) error {
	var errs []error
	if rn.raft != nil {
		if err := rn.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("shut down raft: %w", err))
		}
	} else if rn.trans != nil {
		if err := rn.trans.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close transport: %w", err))
		}
	}
	n.wg.Wait()
	if err := rn.bolt.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close raft log: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// Propose replicates cmd through the log and returns its result once the
// entry carrying it is applied on this node. Commands from concurrent
// callers are grouped into one entry (see Config.MaxBatch, Linger); each
// caller gets its own Result, whose Revision is the entry's index. A
// business refusal is Result.Err with a nil error. When ctx ends first the
// error is ctx.Err() and the command may still be applied later. Errors
// unwrap to ErrNotLeader, ErrNoLeader, ErrStopped or ErrQueueFull. Safe for
// concurrent use; the Node keeps cmd, which the caller must not change.
func (n *Node) Propose(ctx context.Context, cmd *logv1.Command) (store.Result, error) {
	rn := n.run.Load()
	if rn == nil {
		return store.Result{}, fmt.Errorf("propose: %w", ErrStopped)
	}
	if err := n.waitLeader(ctx, rn); err != nil {
		return store.Result{}, err
	}
	return rn.prop.propose(ctx, n.stopped, cmd)
}

// leaderWait bounds how long a proposal waits for an election to end.
const leaderWait = 2 * time.Second

// waitLeader returns nil once this node leads. While no leader is known (an
// election is under way, or the node has just started) it waits, at most
// leaderWait or until ctx ends, checking every few milliseconds; then, or
// when another node leads, it returns ErrNoLeader or ErrNotLeader.
func (n *Node) waitLeader(ctx context.Context, rn *running) error {
	if rn.raft.State() == raft.Leader {
		return nil
	}
	deadline := time.NewTimer(leaderWait)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if addr, _ := rn.raft.LeaderWithID(); addr != "" {
			break
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return n.notLeader("propose", rn)
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stopped:
			return fmt.Errorf("propose: %w", ErrStopped)
		}
		if rn.raft.State() == raft.Leader {
			return nil
		}
	}
	if rn.raft.State() == raft.Leader {
		return nil
	}
	return n.notLeader("propose", rn)
}

// notLeader returns ErrNotLeader naming the leader, or ErrNoLeader.
func (n *Node) notLeader(op string, rn *running) error {
	addr, _ := rn.raft.LeaderWithID()
	if addr == "" {
		return fmt.Errorf("%s: %w", op, ErrNoLeader)
	}
	return fmt.Errorf("%s: %w (leader %s)", op, ErrNotLeader, addr)
}

// WaitApplied returns nil once the machine has applied revision rev (its
// AppliedIndex is at least rev), ctx.Err() if ctx ends first, or ErrStopped
// if the node closes first. It blocks on apply notifications, never polls.
// Safe for concurrent use.
func (n *Node) WaitApplied(ctx context.Context, rev store.Revision) error {
	for {
		ch := n.fsm.appliedCh()
		if n.machine.AppliedIndex() >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stopped:
			return fmt.Errorf("wait applied %d: %w", rev, ErrStopped)
		}
	}
}

// IsLeader reports whether this node is the raft leader right now.
func (n *Node) IsLeader() bool {
	rn := n.run.Load()
	return rn != nil && rn.raft.State() == raft.Leader
}

// Leader returns the raft address of the current leader, or "" if none is
// known or the node is not running.
func (n *Node) Leader() string {
	rn := n.run.Load()
	if rn == nil {
		return ""
	}
	addr, _ := rn.raft.LeaderWithID()
	return string(addr)
}

// RaftAddr returns the address raft listens on and advertises (with port 0
// resolved), or "" if the node is not running.
func (n *Node) RaftAddr() string {
	rn := n.run.Load()
	if rn == nil {
		return ""
	}
	return string(rn.trans.LocalAddr())
}

// Snapshot takes a snapshot now and compacts the log behind it, as raft does
// every SnapshotThreshold entries. It fails if nothing was applied since the
// last snapshot.
func (n *Node) Snapshot() error {
	rn := n.run.Load()
	if rn == nil {
		return fmt.Errorf("snapshot: %w", ErrStopped)
	}
	return translate("snapshot", rn.raft.Snapshot().Error())
}

// Stats returns the proposer's counters since Start (zero before it; final
// after Close). Safe for concurrent use.
func (n *Node) Stats() Stats {
	p := n.prop.Load()
	if p == nil {
		return Stats{}
	}
	return p.stats()
}
