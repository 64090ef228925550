package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

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
	// metrics are set at New when Config.Registerer is (metrics.go).
	metrics nodeMetrics
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
	trans raft.Transport
	bolt  *raftboltdb.BoltStore
	prop  *proposer
	// observer feeds raft's state and leader changes to the registrar.
	observer *raft.Observer
	// peers are the gRPC connections to other nodes' Peer service.
	peers *peerPool
	// readyTerm is the term in which this node, as leader, last saw a
	// barrier of its own applied: from then on its machine holds every entry
	// earlier leaders committed, and reads need no log entry (readIndexLocal).
	readyTerm atomic.Uint64
}

// New checks cfg and returns a Node. It starts nothing and touches no disk.
func New(cfg Config) (*Node, error) {
	switch {
	case cfg.NodeID == "":
		return nil, errors.New("new node: node id is required")
	case cfg.DataDir == "":
		return nil, errors.New("new node: data dir is required")
	case cfg.RaftAddr == "" && cfg.Transport == nil:
		return nil, errors.New("new node: raft addr is required")
	case cfg.GRPCAddr == "":
		return nil, errors.New("new node: grpc addr is required")
	case cfg.Machine == nil:
		return nil, errors.New("new node: machine is required")
	}
	cfg.setDefaults()
	n := &Node{
		cfg:      cfg,
		machine:  cfg.Machine,
		logger:   cfg.Logger,
		clock:    cfg.Clock,
		fsm:      newFSM(cfg.Machine, cfg.Logger, cfg.DataDir),
		stopped:  make(chan struct{}),
		replayed: make(chan struct{}),
	}
	if cfg.Registerer != nil {
		if err := n.registerMetrics(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("new node: %w", err)
		}
	}
	return n, nil
}

// Start opens the log, stable and snapshot stores under DataDir, binds the
// raft transport, restores the newest snapshot, bootstraps a one-voter
// cluster if DataDir holds no raft state, and starts the proposer and the
// expiry ticker. It fails closed: a snapshot that cannot be restored (a CRC
// or digest mismatch), or a raft log file that is cut short, fails bbolt's
// checks or holds an entry failing its checksum (raftdb.go), is an error,
// never an empty, partial or altered state. On error everything opened is
// closed again.
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

	dbPath := filepath.Join(n.cfg.DataDir, raftDBFile)
	bolt, err := openRaftDB(dbPath)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	rn := &running{bolt: bolt, peers: newPeerPool(n.cfg.DialMap, n.cfg.PeerDialOptions)}
	ok := false
	defer func() {
		if !ok {
			n.teardown(rn)
		}
	}()
	checked := checkedLogs{bolt}
	files, err := raft.NewFileSnapshotStoreWithLogger(n.cfg.DataDir, retainSnapshots, hl.Named("snapshot"))
	if err != nil {
		return fmt.Errorf("start: open snapshot store: %w", err)
	}
	snapIndex, err := newestSnapshotIndex(files)
	if err != nil {
		return fmt.Errorf("start: list snapshots: %w", err)
	}
	if err := verifyLog(checked, snapIndex); err != nil {
		return fmt.Errorf("start: raft log %s: %w", dbPath, err)
	}
	logs, err := raft.NewLogCache(logCacheEntries, checked)
	if err != nil {
		return fmt.Errorf("start: log cache: %w", err)
	}
	snaps := &openRecorder{SnapshotStore: files}
	if rn.trans, err = n.transport(hl); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	existing, err := raft.HasExistingState(logs, bolt, snaps)
	if err != nil {
		return fmt.Errorf("start: inspect raft state: %w", err)
	}

	rn.raft, err = newRaft(n.raftConfig(hl), n.fsm, logs, bolt, snaps, rn.trans)
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
	joining := !existing && len(n.cfg.Join) > 0
	switch {
	case joining:
		n.logger.Info("joining cluster", "node", n.cfg.NodeID, "join", n.cfg.Join)
	case existing && len(n.cfg.Join) > 0:
		n.logger.Info("raft state exists; ignoring join addresses", "join", n.cfg.Join)
	}
	if !existing && !joining {
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
	rn.prop.metrics = &n.metrics
	n.prop.Store(rn.prop)
	n.run.Store(rn)
	ok = true
	observations := make(chan raft.Observation, 8)
	rn.observer = raft.NewObserver(observations, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.RaftState, raft.LeaderObservation:
			return true
		}
		return false
	})
	rn.raft.RegisterObserver(rn.observer)
	n.wg.Add(5)
	go func() { defer n.wg.Done(); rn.prop.runBatcher(ctx) }()
	go func() { defer n.wg.Done(); rn.prop.runWaiter() }()
	go func() { defer n.wg.Done(); n.runTicker(ctx) }()
	go func() { defer n.wg.Done(); n.watchReplay(ctx, rec) }()
	go func() { defer n.wg.Done(); n.runRegistrar(ctx, rn, observations) }()
	if joining {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.runJoin(ctx, rn) }()
	}
	return nil
}

// newRaft is raft.NewRaft with its panic turned into an error. It panics
// (before starting any goroutine) when the log lacks an entry after the
// snapshot it restored: the newest snapshot could not be opened, raft fell
// back to an older one, and the log was already compacted past it.
func newRaft(conf *raft.Config, f raft.FSM, logs raft.LogStore, stable raft.StableStore,
	snaps raft.SnapshotStore, trans raft.Transport) (r *raft.Raft, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("log entries after the restored snapshot are missing (%v): a newer snapshot that held them could not be restored", p)
		}
	}()
	return raft.NewRaft(conf, f, logs, stable, snaps, trans)
}

func (n *Node) raftConfig(hl hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.NodeID)
	rc.Logger = hl
	// Tuned for a LAN with failover under 2 s (see doc.go).
	rc.HeartbeatTimeout = 500 * time.Millisecond
	rc.ElectionTimeout = 500 * time.Millisecond
	// 500 ms, not 250: on two cores shared by three nodes and a load client,
	// a busy leader went 250-350 ms without its followers' answers and
	// stepped down, 1-3 times per `make bench`, each an election's worth of
	// UNAVAILABLE (no stop-the-world pause there; the collector was marking
	// with heavy assists).
	rc.LeaderLeaseTimeout = 500 * time.Millisecond
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.TrailingLogs = n.cfg.TrailingLogs
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
	if rn := n.run.Load(); rn != nil && n.state == stateStarted {
		n.handOff(rn)
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
	if rn.raft != nil && rn.observer != nil {
		rn.raft.DeregisterObserver(rn.observer)
	}
	if rn.raft != nil {
		if err := rn.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("shut down raft: %w", err))
		}
		// Shutdown closes the listener but not the pooled outgoing
		// connections, whose handlers on the peers would otherwise outlive us.
		if nt, ok := rn.trans.(*raft.NetworkTransport); ok {
			nt.CloseStreams()
		}
	} else if c, ok := rn.trans.(raft.WithClose); ok {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close transport: %w", err))
		}
	}
	n.wg.Wait()
	if err := rn.peers.close(); err != nil {
		errs = append(errs, fmt.Errorf("close peer connections: %w", err))
	}
	if err := rn.bolt.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close raft log: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// Propose replicates cmd through the log and returns its result once the
// entry carrying it is applied on the leader. On the leader, commands from
// concurrent callers are grouped into one entry (see Config.MaxBatch,
// Linger); each caller gets its own Result, whose Revision is the entry's
// index. A follower forwards cmd once to the leader's Peer.Propose (ctx's
// deadline travels with it) and returns the leader's answer; the follower
// may not have applied that revision yet (WaitApplied). While no leader is
// known it waits up to 2 s for an election to end. A business refusal is
// Result.Err with a nil error. When ctx ends first the error is ctx.Err()
// and the command may still be applied later. Errors unwrap to
// ErrNotLeader, ErrNoLeader, ErrStopped, ErrQueueFull or
// ErrFeatureNotEnabled. Safe for concurrent use; the Node keeps cmd, which
// the caller must not change.
func (n *Node) Propose(ctx context.Context, cmd *logv1.Command) (store.Result, error) {
	rn := n.run.Load()
	if rn == nil {
		return store.Result{}, fmt.Errorf("propose: %w", ErrStopped)
	}
	if err := ctx.Err(); err != nil {
		return store.Result{}, err
	}
	li, err := n.awaitLeader(ctx, rn, "propose")
	if err != nil {
		return store.Result{}, err
	}
	if li.self {
		return n.proposeLocal(ctx, rn, cmd)
	}
	return n.forwardPropose(ctx, rn, li, cmd)
}

// proposeLocal proposes cmd through this node's raft, which must lead (else
// raft answers ErrNotLeader). It never forwards. A command whose feature
// version some voter lacks is refused before it is proposed.
func (n *Node) proposeLocal(ctx context.Context, rn *running, cmd *logv1.Command) (store.Result, error) {
	if err := n.checkFeature(rn, cmd); err != nil {
		return store.Result{}, err
	}
	return rn.prop.propose(ctx, n.stopped, cmd)
}

// leaderWait bounds how long a proposal waits for an election to end.
const leaderWait = 2 * time.Second

// leaderInfo names the leader a request goes to.
type leaderInfo struct {
	self     bool
	id       string
	grpcAddr string
}

// currentLeader returns the leader if it is this node, or another node whose
// gRPC address is known from its record.
func (n *Node) currentLeader(rn *running) (leaderInfo, bool) {
	if rn.raft.State() == raft.Leader {
		return leaderInfo{self: true, id: n.cfg.NodeID, grpcAddr: n.cfg.GRPCAddr}, true
	}
	_, id := rn.raft.LeaderWithID()
	if id == "" || string(id) == n.cfg.NodeID {
		return leaderInfo{}, false
	}
	if rec, ok := n.machine.Node(string(id)); ok && rec.GRPCAddr != "" {
		return leaderInfo{id: string(id), grpcAddr: rec.GRPCAddr}, true
	}
	return leaderInfo{}, false
}

// awaitLeader returns the leader once one is known (and, if it is another
// node, its gRPC address). While none is (an election is under way, the
// node has just started, or the new leader has not registered yet) it waits,
// at most leaderWait or until ctx ends, checking every few milliseconds; then
// it returns ErrNoLeader or ErrNotLeader.
func (n *Node) awaitLeader(ctx context.Context, rn *running, op string) (leaderInfo, error) {
	if li, ok := n.currentLeader(rn); ok {
		return li, nil
	}
	deadline := time.NewTimer(leaderWait)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-deadline.C:
			return leaderInfo{}, n.notLeader(op, rn)
		case <-ctx.Done():
			return leaderInfo{}, ctx.Err()
		case <-n.stopped:
			return leaderInfo{}, fmt.Errorf("%s: %w", op, ErrStopped)
		}
		if li, ok := n.currentLeader(rn); ok {
			return li, nil
		}
	}
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
// known or the node is not running. A node that leads answers its own
// address at once: raft switches to the leader state a moment before it
// records itself as the leader, and IsLeader must never be true while
// Leader is "".
func (n *Node) Leader() string {
	rn := n.run.Load()
	if rn == nil {
		return ""
	}
	if rn.raft.State() == raft.Leader {
		return string(rn.trans.LocalAddr())
	}
	addr, _ := rn.raft.LeaderWithID()
	return string(addr)
}

// LeaderGRPCAddr returns the gRPC address of the leader when another node
// leads and its address is known; "" when this node leads, none is known,
// or the node is not running. A follower's server hands it to clients with
// the writes it forwarded, so they can send their next ones there.
func (n *Node) LeaderGRPCAddr() string {
	rn := n.run.Load()
	if rn == nil {
		return ""
	}
	li, ok := n.currentLeader(rn)
	if !ok || li.self {
		return ""
	}
	return li.grpcAddr
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

// CapturedBytes is about how much memory the snapshot captures being written
// hold (store.Snapshot.Footprint), 0 when none is. Safe for concurrent use.
func (n *Node) CapturedBytes() int64 { return n.fsm.captured.Load() }

// Stats returns the proposer's counters since Start (zero before it; final
// after Close). Safe for concurrent use.
func (n *Node) Stats() Stats {
	p := n.prop.Load()
	if p == nil {
		return Stats{}
	}
	return p.stats()
}

// notLeader returns ErrNotLeader naming the leader, or ErrNoLeader.
func (n *Node) notLeader(op string, rn *running) error {
	addr, _ := rn.raft.LeaderWithID()
	if addr == "" {
		return fmt.Errorf("%s: %w", op, ErrNoLeader)
	}
	return fmt.Errorf("%s: %w (leader %s)", op, ErrNotLeader, addr)
}

// transport returns Config.Transport, or a TCP transport bound to RaftAddr
// that advertises RaftAdvertise as given or, if that is empty, the
// listener's own address, so port 0 works.
func (n *Node) transport(hl hclog.Logger) (raft.Transport, error) {
	if n.cfg.Transport != nil {
		return n.cfg.Transport, nil
	}
	lis, err := net.Listen("tcp", n.cfg.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("raft transport on %s: %w", n.cfg.RaftAddr, err)
	}
	var advertise net.Addr = lis.Addr()
	if n.cfg.RaftAdvertise != "" {
		if _, _, err := net.SplitHostPort(n.cfg.RaftAdvertise); err != nil {
			_ = lis.Close()
			return nil, fmt.Errorf("raft advertise address %s: %w", n.cfg.RaftAdvertise, err)
		}
		advertise = advertiseAddr(n.cfg.RaftAdvertise)
	} else if a, ok := lis.Addr().(*net.TCPAddr); ok && a.IP.IsUnspecified() {
		_ = lis.Close()
		return nil, fmt.Errorf("raft address %s binds every interface: give the address peers dial as the raft advertise address", n.cfg.RaftAddr)
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: lis, advertise: advertise, dialMap: n.cfg.DialMap, tls: n.cfg.RaftTLS},
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hl.Named("transport"),
	}), nil
}

// streamLayer is raft's TCP stream layer, except that the advertised address
// is kept as given: a host name is looked up on every dial, so a peer that
// comes back on another IP (a restarted container) is still reached.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	dialMap   DialMap // fault tests only: dial a proxy instead
	// tls, when set, wraps every accepted and dialled connection
	// (Config.RaftTLS).
	tls *tls.Config
}

// Dial connects to a peer's raft address (or where the dial map sends it),
// over TLS when configured: the handshake, checking the peer's certificate
// against the address's host, finishes within timeout.
func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", l.dialMap.target(string(address)), timeout)
	if err != nil || l.tls == nil {
		return conn, err
	}
	cfg := l.tls.Clone()
	if host, _, err := net.SplitHostPort(string(address)); err == nil && cfg.ServerName == "" {
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("raft tls handshake with %s: %w", address, err)
	}
	return tc, nil
}

// Accept waits for the next peer connection; over TLS its handshake runs on
// the connection's first read, in raft's handler for it, so one slow or
// bad peer does not hold up the others.
func (l *streamLayer) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil || l.tls == nil {
		return conn, err
	}
	return tls.Server(conn, l.tls), nil
}

// Addr is the address peers are told to dial.
func (l *streamLayer) Addr() net.Addr { return l.advertise }

// advertiseAddr is a host:port as the operator wrote it.
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }
