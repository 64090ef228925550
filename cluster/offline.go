package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/stockd/stockd/store"
)

// SaveSnapshot writes the machine's current state to w as a snapshot file in
// the container format raft snapshots use, and returns the revision it
// reflects. It takes no raft snapshot and leaves the log alone. Safe for
// concurrent use; the temporary container lives in DataDir.
func (n *Node) SaveSnapshot(ctx context.Context, w io.Writer) (store.Revision, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	snap := n.machine.Snapshot()
	if err := os.MkdirAll(n.cfg.DataDir, 0o750); err != nil {
		return 0, fmt.Errorf("save snapshot: %w", err)
	}
	path, _, err := writeContainer(n.cfg.DataDir, snap)
	if path != "" {
		defer os.Remove(path)
	}
	if err != nil {
		return 0, fmt.Errorf("save snapshot: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("save snapshot: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return 0, fmt.Errorf("save snapshot: write: %w", err)
	}
	return snap.Index(), nil
}

// keyCurrentTerm is raft's stable-store key for the current term.
var keyCurrentTerm = []byte("CurrentTerm")

// RestoreSnapshot seeds an empty (or missing) dataDir with the snapshot file
// read from r, so a Node started on it with NodeID nodeID holds that state
// and, as the only voter at raftAddr, elects itself. The snapshot's records
// and digest are checked first; a non-empty dataDir is refused. Not safe to
// run against a data dir a Node is using.
func RestoreSnapshot(dataDir, nodeID, raftAddr string, r io.Reader) error {
	if dataDir == "" || nodeID == "" || raftAddr == "" {
		return errors.New("restore snapshot: data dir, node id and raft addr are required")
	}
	entries, err := os.ReadDir(dataDir)
	switch {
	case err == nil && len(entries) > 0:
		return fmt.Errorf("restore snapshot: data dir %s is not empty", dataDir)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	// Keep the bytes for the raft snapshot, and check them by restoring them
	// into a scratch machine, which also yields the applied index.
	tmp, err := os.CreateTemp(dataDir, restoreTempPattern)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	tmpPath := tmp.Name()
	defer os.Remove(tmpPath)
	_, err = io.Copy(tmp, r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore snapshot: copy: %w", err)
	}
	scratch := store.New(store.DefaultConfig())
	if err := restoreFile(scratch, tmpPath, dataDir); err != nil {
		return err
	}
	index := uint64(scratch.AppliedIndex())
	if index == 0 {
		return errors.New("restore snapshot: snapshot has applied index 0")
	}

	bolt, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(dataDir, raftDBFile),
		BoltOptions: &bbolt.Options{Timeout: time.Second},
	})
	if err != nil {
		return fmt.Errorf("restore snapshot: open raft log: %w", err)
	}
	const term = 1
	err = bolt.SetUint64(keyCurrentTerm, term)
	if cerr := bolt.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore snapshot: write term: %w", err)
	}
	files, err := raft.NewFileSnapshotStoreWithLogger(dataDir, retainSnapshots, hclog.NewNullLogger())
	if err != nil {
		return fmt.Errorf("restore snapshot: open snapshot store: %w", err)
	}
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(nodeID), Address: raft.ServerAddress(raftAddr),
	}}}
	// Create encodes the peer list (a legacy field) through a transport.
	_, codec := raft.NewInmemTransport(raft.ServerAddress(raftAddr))
	defer codec.Close()
	sink, err := files.Create(raft.SnapshotVersionMax, index, term, conf, index, codec)
	if err != nil {
		return fmt.Errorf("restore snapshot: create raft snapshot: %w", err)
	}
	if err := copyFileTo(sink, tmpPath); err != nil {
		if cerr := sink.Cancel(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return fmt.Errorf("restore snapshot: write raft snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("restore snapshot: close raft snapshot: %w", err)
	}
	return nil
}

func restoreFile(m *store.Machine, path, tmpDir string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	defer f.Close()
	return restoreSnapshot(m, f, tmpDir)
}

func copyFileTo(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// RecoverCluster forces the raft configuration of a stopped node's data dir
// (cfg.DataDir) to voters, for recovery after a quorum is lost for good. It
// replays the node's snapshot and log into cfg.Machine (a fresh machine) on
// the way, as raft.RecoverCluster requires. Run it on every surviving node
// with the same voters, then start them. cfg needs NodeID, DataDir and
// Machine; nothing is bound.
func RecoverCluster(cfg Config, voters []raft.Server) error {
	switch {
	case cfg.NodeID == "" || cfg.DataDir == "" || cfg.Machine == nil:
		return errors.New("recover cluster: node id, data dir and machine are required")
	case len(voters) == 0:
		return errors.New("recover cluster: no voters given")
	}
	cfg.setDefaults()
	hl := newRaftLogger(cfg.Logger, hclog.Warn)
	if err := removeTempFiles(cfg.DataDir); err != nil {
		return fmt.Errorf("recover cluster: remove temporary snapshot files: %w", err)
	}
	dbPath := filepath.Join(cfg.DataDir, raftDBFile)
	bolt, err := openRaftDB(dbPath)
	if err != nil {
		return fmt.Errorf("recover cluster: %w", err)
	}
	defer bolt.Close()
	logs := checkedLogs{bolt}
	files, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, retainSnapshots, hl.Named("snapshot"))
	if err != nil {
		return fmt.Errorf("recover cluster: open snapshot store: %w", err)
	}
	snapIndex, err := newestSnapshotIndex(files)
	if err != nil {
		return fmt.Errorf("recover cluster: list snapshots: %w", err)
	}
	if err := verifyLog(logs, snapIndex); err != nil {
		return fmt.Errorf("recover cluster: raft log %s: %w", dbPath, err)
	}
	n := &Node{cfg: cfg}
	rc := n.raftConfig(hl)
	_, trans := raft.NewInmemTransport(raft.ServerAddress("recover-" + cfg.NodeID))
	defer trans.Close()
	f := newFSM(cfg.Machine, cfg.Logger, cfg.DataDir)
	if err := raft.RecoverCluster(rc, f, logs, bolt, files, trans, raft.Configuration{Servers: voters}); err != nil {
		return fmt.Errorf("recover cluster: %w", err)
	}
	cfg.Logger.Info("recovered cluster configuration", "node", cfg.NodeID, "voters", len(voters))
	return nil
}
