package cluster

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

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
	// DefaultTrailingLogs is how many log entries, by default, raft keeps
	// behind a snapshot, so a follower that lags a little catches up from the
	// log rather than with a whole snapshot.
	DefaultTrailingLogs = 10240
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
	// picks a free port. Unless RaftAdvertise is set it is also the address
	// peers dial, so it must then name an IP they can reach. Required unless
	// Transport is set.
	RaftAddr string
	// RaftAdvertise is the address peers dial for raft (host:port, resolved
	// at Start); empty means the bound RaftAddr. Needed when binding 0.0.0.0.
	RaftAdvertise string
	// GRPCAddr is the advertised gRPC address of this node, where peers call
	// the Peer service (forwarded writes, read index, status); required.
	GRPCAddr string
	// Join lists gRPC addresses of existing members. A node with no raft
	// state and a non-empty Join never bootstraps: it asks each address in
	// turn (Peer.Join) until admitted. Ignored when raft state exists.
	Join []string
	// FeatureVersion is the highest log feature version this build applies,
	// advertised in this node's record; default store.FeatureVersion.
	FeatureVersion uint32
	// CommandFeature gives the feature version a command needs; default
	// store.CommandFeature. Tests override it to simulate a newer command.
	CommandFeature func(*logv1.Command) uint32
	// Transport replaces the TCP transport (tests pass a raft.InmemTransport);
	// nil means TCP on RaftAddr. The Node closes it at Close.
	Transport raft.Transport
	// TrailingLogs is how many entries raft keeps behind a snapshot.
	TrailingLogs uint64
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
	// DialMap redirects this node's dials to peers (raft and peer gRPC) to
	// other addresses; for fault tests only (a proxy per link). Nil: none.
	DialMap DialMap
	// PeerDialOptions are added to this node's gRPC connections to peers
	// (forwarding, joins, status): credentials (TLS, a node token), client
	// interceptors. Without transport credentials among them the
	// connections are plaintext.
	PeerDialOptions []grpc.DialOption
	// RaftTLS, when set, runs the raft transport over TLS with it: the
	// listener serves its certificate and (with ClientAuth set) verifies the
	// peer's; dials present the certificate and verify the peer's against
	// RootCAs. A peer whose certificate fails cannot append, vote or
	// install a snapshot. Nil: plaintext TCP.
	RaftTLS *tls.Config
	// Clock is the leader clock entries are stamped with; nil means time.Now.
	Clock func() time.Time
	// Registerer, when set, gets the node's metrics at New (metrics.go):
	// stockd_raft_apply_batch_commands and raft's state, term, indexes and
	// last contact. Nil: no metrics.
	Registerer prometheus.Registerer
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
	if c.FeatureVersion == 0 {
		c.FeatureVersion = store.FeatureVersion
	}
	if c.CommandFeature == nil {
		c.CommandFeature = store.CommandFeature
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
}
