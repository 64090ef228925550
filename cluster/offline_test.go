package cluster

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/stockd/stockd/store"
)

func digestOf(t *testing.T, m *store.Machine) [32]byte {
	t.Helper()
	d, err := m.Snapshot().Digest()
	if err != nil {
		t.Fatalf("Digest: %v", err)
	}
	return d
}

func TestRestoreSnapshot(t *testing.T) {
	src := startNode(t, testConfig(t))
	seed(t, src, 100)
	propose(t, src, reserve("web", "r1", "ROSE", 3, time.Hour))
	var buf bytes.Buffer
	rev, err := src.SaveSnapshot(t.Context(), &buf)
	if err != nil || rev != src.machine.AppliedIndex() {
		t.Fatalf("SaveSnapshot: %d, %v; want %d, nil", rev, err, src.machine.AppliedIndex())
	}
	want := digestOf(t, src.machine)
	// The restored node reuses src's id and addresses, so its record is
	// already right and self-registration changes nothing.
	srcAddr := src.RaftAddr()
	closeNode(t, src)

	t.Run("a restored data dir starts with the same state and leads", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "restored")
		if err := RestoreSnapshot(dir, "n1", srcAddr, bytes.NewReader(buf.Bytes())); err != nil {
			t.Fatalf("RestoreSnapshot(%s): %v", dir, err)
		}
		cfg := testConfig(t)
		cfg.DataDir, cfg.RaftAddr = dir, srcAddr
		n := startNode(t, cfg)
		if snap, _, _ := n.Recovery(); snap != uint64(rev) {
			t.Fatalf("restored node: Recovery snapshot index %d, want %d", snap, rev)
		}
		if got := digestOf(t, n.machine); got != want || n.machine.AppliedIndex() != rev {
			t.Fatalf("restored node: digest %x at %d, want %x at %d", got, n.machine.AppliedIndex(), want, rev)
		}
		if _, err := n.machine.Reservation("web", "r1"); err != nil {
			t.Fatalf("restored node Reservation(web, r1): %v, want it held", err)
		}
		res := propose(t, n, putLocation("L2"))
		if res.Err != nil || res.Revision <= rev {
			t.Fatalf("Propose after restore: %+v, want accepted after %d", res, rev)
		}
	})

	t.Run("a non-empty data dir is refused", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := RestoreSnapshot(dir, "r1", "127.0.0.1:1", bytes.NewReader(buf.Bytes())); err == nil {
			t.Fatalf("RestoreSnapshot into non-empty %s: nil, want an error", dir)
		}
	})

	t.Run("a damaged snapshot is refused", func(t *testing.T) {
		bad := bytes.Repeat([]byte("not a snapshot "), 1000)
		dir := filepath.Join(t.TempDir(), "bad")
		if err := RestoreSnapshot(dir, "r1", "127.0.0.1:1", bytes.NewReader(bad)); err == nil {
			t.Fatalf("RestoreSnapshot of %d bytes of text: nil, want an error", len(bad))
		}
	})
}

func TestRecoverCluster(t *testing.T) {
	nodes := startPeerCluster(t, 3, nil)
	l, _ := leaderAmong(t, nodes...)
	seed(t, l.n, 42)
	res := propose(t, l.n, reserve("web", "kept", "ROSE", 2, time.Hour))
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	defer cancel()
	for _, pn := range nodes {
		if err := pn.n.WaitApplied(ctx, res.Revision); err != nil {
			t.Fatalf("WaitApplied(%d) on %s: %v", res.Revision, pn.id, err)
		}
	}
	want := digestOf(t, nodes[0].n.machine)
	// Followers first, so the leader cannot hand off; then nobody is left.
	for _, pn := range append(append([]*peerNode(nil), nodes[1:]...), nodes[0]) {
		closeNode(t, pn.n)
	}

	survivor := nodes[1]
	// The survivor keeps its addresses, so its record stays right and
	// self-registration changes nothing: the digest must match exactly.
	rec, ok := survivor.n.machine.Node(survivor.id)
	if !ok {
		t.Fatalf("no record of %s before recovery", survivor.id)
	}
	cfg := testConfig(t)
	cfg.NodeID, cfg.DataDir, cfg.RaftAddr, cfg.GRPCAddr = survivor.id, survivor.cfg.DataDir, rec.RaftAddr, rec.GRPCAddr
	cfg.Machine = store.New(store.DefaultConfig())
	voters := []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(survivor.id), Address: raft.ServerAddress(rec.RaftAddr)}}
	if err := RecoverCluster(cfg, voters); err != nil {
		t.Fatalf("RecoverCluster(%s, %v): %v", survivor.id, voters, err)
	}
	cfg.Machine = store.New(store.DefaultConfig())
	n := startNode(t, cfg)
	waitApplied(t, n, "the recovered node applies the old log", func() bool {
		return n.machine.AppliedIndex() >= res.Revision
	})
	if got := digestOf(t, n.machine); got != want {
		t.Fatalf("recovered %s: digest %x at %d, want %x at %d", survivor.id, got, n.machine.AppliedIndex(), want, res.Revision)
	}
	if r := propose(t, n, putLocation("L2")); r.Err != nil {
		t.Fatalf("Propose on the recovered node: %v", r.Err)
	}
	if err := RecoverCluster(Config{NodeID: "x"}, voters); err == nil || errors.Is(err, ErrStopped) {
		t.Fatalf("RecoverCluster without a data dir: %v, want a config error", err)
	}
}
