package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/stockd/stockd/store"
)

func TestSingleNode(t *testing.T) {
	logs := &logBuffer{}
	cfg := testConfig(t)
	cfg.Logger = newTextLogger(logs)
	n := startNode(t, cfg)

	t.Run("a fresh folder bootstraps a cluster this node leads", func(t *testing.T) {
		addr := n.RaftAddr()
		if addr == "" || strings.HasSuffix(addr, ":0") {
			t.Fatalf("RaftAddr() for bind %q = %q, want the resolved listener address", cfg.RaftAddr, addr)
		}
		if got := n.Leader(); got != addr {
			t.Fatalf("Leader() = %q, want own address %q", got, addr)
		}
		if s, f, l := n.Recovery(); s != 0 || f != 0 || l != 0 {
			t.Fatalf("Recovery() on an empty folder = (%d, %d, %d), want (0, 0, 0)", s, f, l)
		}
		waitClosed(t, n.replayed, "replay of an empty tail")
		out := logs.String()
		for _, want := range []string{`msg="no snapshot to restore"`, `msg="replayed log tail" first=0 last=0 entries=0`} {
			if !strings.Contains(out, want) {
				t.Fatalf("log after start of an empty folder:\n%s\nwant a line with %s", out, want)
			}
		}
	})

	t.Run("proposals apply in order, each with its own result", func(t *testing.T) {
		seed(t, n, 100)
		var last store.Revision
		for i := range 5 {
			id := fmt.Sprintf("r%d", i)
			res := propose(t, n, reserve("web", id, "ROSE", 1, 0))
			if res.Err != nil {
				t.Fatalf("reserve %s: refused: %v", id, res.Err)
			}
			if res.Reservation == nil || string(res.Reservation.ID) != id {
				t.Fatalf("reserve %s: got reservation %+v, want id %s", id, res.Reservation, id)
			}
			if res.Revision <= last {
				t.Fatalf("reserve %s: revision %d, want > previous %d", id, res.Revision, last)
			}
			if got := n.machine.AppliedIndex(); got < res.Revision {
				t.Fatalf("reserve %s: applied index %d after Propose returned revision %d", id, got, res.Revision)
			}
			last = res.Revision
		}
		// A refusal is a result, not an error.
		res := propose(t, n, reserve("web", "too-many", "ROSE", 1000, 0))
		if !errors.Is(res.Err, store.ErrInsufficientStock) {
			t.Fatalf("reserve 1000 of 95 left: Result.Err = %v, want %v", res.Err, store.ErrInsufficientStock)
		}
	})
}

func TestRestartKeepsState(t *testing.T) {
	cfg := testConfig(t)
	n := startNode(t, cfg)
	seed(t, n, 100)
	for i := range 5 {
		propose(t, n, reserve("web", fmt.Sprintf("before-%d", i), "ROSE", 2, 0))
	}
	snapRev := n.machine.AppliedIndex()
	if err := n.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	var lastRev store.Revision
	for i := range 3 {
		lastRev = propose(t, n, reserve("web", fmt.Sprintf("after-%d", i), "ROSE", 3, 0)).Revision
	}
	addr := n.RaftAddr()
	closeNode(t, n)
	want, err := cfg.Machine.Digest()
	if err != nil {
		t.Fatalf("Digest before restart: %v", err)
	}

	logs := &logBuffer{}
	cfg2 := cfg
	cfg2.RaftAddr = addr
	cfg2.Machine = store.New(store.DefaultConfig())
	cfg2.Logger = newTextLogger(logs)
	n2 := startNode(t, cfg2)
	waitClosed(t, n2.replayed, "replay of the log tail")

	snap, first, last := n2.Recovery()
	if snap != uint64(snapRev) || first != snap+1 || last < uint64(lastRev) {
		t.Fatalf("Recovery() after snapshot at %d and tail to %d = (%d, %d, %d), want (%d, %d, >= %d)",
			snapRev, lastRev, snap, first, last, snapRev, snapRev+1, lastRev)
	}
	if got := cfg2.Machine.AppliedIndex(); got != lastRev {
		t.Fatalf("applied index after replay = %d, want %d", got, lastRev)
	}
	out := logs.String()
	for _, line := range []string{
		fmt.Sprintf(`msg="restored snapshot" index=%d`, snap),
		fmt.Sprintf(`msg="replayed log tail" first=%d last=%d entries=%d`, first, last, last-first+1),
	} {
		if !strings.Contains(out, line) {
			t.Fatalf("log after restart:\n%s\nwant a line with %s", out, line)
		}
	}
	closeNode(t, n2)
	got, err := cfg2.Machine.Digest()
	if err != nil {
		t.Fatalf("Digest after restart: %v", err)
	}
	if got != want {
		t.Fatalf("digest after restart (snapshot %d + tail to %d) = %x, want %x as before", snapRev, lastRev, got, want)
	}
}

// snapshotWithTail leaves a folder holding one snapshot and returns its
// config (with a fresh machine) and the state.bin path.
func snapshotWithTail(t *testing.T) (Config, string) {
	t.Helper()
	cfg := testConfig(t)
	n := startNode(t, cfg)
	seed(t, n, 100)
	propose(t, n, reserve("web", "r1", "ROSE", 5, 0))
	if err := n.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	propose(t, n, reserve("web", "r2", "ROSE", 5, 0))
	closeNode(t, n)
	states, err := filepath.Glob(filepath.Join(cfg.DataDir, "snapshots", "*", "state.bin"))
	if err != nil || len(states) != 1 {
		t.Fatalf("snapshot files under %s: %v, %v; want exactly one", cfg.DataDir, states, err)
	}
	cfg.Machine = store.New(store.DefaultConfig())
	return cfg, states[0]
}

// startExpectingFailure starts a node on cfg and returns Start's error.
func startExpectingFailure(t *testing.T, cfg Config) error {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	err = n.Start()
	if cerr := n.Close(); cerr != nil {
		t.Errorf("Close after failed Start: %v", cerr)
	}
	if err == nil {
		t.Fatalf("Start on a folder with a damaged snapshot: nil error, want a refusal")
	}
	if got := cfg.Machine.AppliedIndex(); got != 0 {
		t.Fatalf("machine after refused start: applied index %d, want 0 (nothing served)", got)
	}
	return err
}

func TestCorruptSnapshotFailsStart(t *testing.T) {
	cfg, state := snapshotWithTail(t)
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(state, b, 0o600); err != nil {
		t.Fatal(err)
	}
	err = startExpectingFailure(t, cfg)
	if !strings.Contains(err.Error(), "CRC mismatch") {
		t.Fatalf("Start error %q, want it to name the CRC mismatch", err)
	}
}

// A container whose records no longer match their digest is refused even
// when raft's own file checksum was fixed up to match (the digest is the
// last line of defence against serving wrong counts).
func TestTamperedSnapshotRecordFailsStart(t *testing.T) {
	cfg, state := snapshotWithTail(t)
	db, err := bbolt.Open(state, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		k, v := b.Cursor().Last()
		return b.Put(append([]byte(nil), k...), append(append([]byte(nil), v...), 0))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	fixSnapshotCRC(t, state)

	err = startExpectingFailure(t, cfg)
	if !errors.Is(err, errDigestMismatch) || !errors.Is(err, store.ErrCorruptSnapshot) {
		t.Fatalf("Start error %q, want %v wrapping %v", err, errDigestMismatch, store.ErrCorruptSnapshot)
	}
}

// fixSnapshotCRC rewrites the CRC in meta.json next to state so raft's file
// snapshot store accepts the changed file.
func fixSnapshotCRC(t *testing.T, state string) {
	t.Helper()
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	h.Write(b)
	metaPath := filepath.Join(filepath.Dir(state), "meta.json")
	mb, err := os.ReadFile(metaPath)
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	if err := json.Unmarshal(mb, &meta); err != nil {
		t.Fatal(err)
	}
	crc, err := json.Marshal(h.Sum(nil))
	if err != nil {
		t.Fatal(err)
	}
	meta["CRC"] = json.RawMessage(crc)
	if mb, err = json.Marshal(meta); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(metaPath, mb, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestWaitApplied(t *testing.T) {
	n := startNode(t, testConfig(t))
	rev := propose(t, n, putLocation("L1")).Revision

	t.Run("a reached revision returns at once", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
		defer cancel()
		if err := n.WaitApplied(ctx, rev); err != nil {
			t.Fatalf("WaitApplied(%d) at applied %d: %v, want nil", rev, n.machine.AppliedIndex(), err)
		}
	})

	t.Run("a later revision returns once it is applied", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- n.WaitApplied(ctx, rev+1) }()
		next := propose(t, n, putLocation("L2")).Revision
		if err := <-done; err != nil {
			t.Fatalf("WaitApplied(%d) with %d proposed: %v, want nil", rev+1, next, err)
		}
	})

	t.Run("an unreached revision honours ctx", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		far := n.machine.AppliedIndex() + 1000
		if err := n.WaitApplied(ctx, far); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitApplied(%d) with a 50ms ctx: %v, want %v", far, err, context.DeadlineExceeded)
		}
	})

	t.Run("close wakes waiters with ErrStopped", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
		defer cancel()
		far := n.machine.AppliedIndex() + 1000
		done := make(chan error, 1)
		go func() { done <- n.WaitApplied(ctx, far) }()
		closeNode(t, n)
		if err := <-done; !errors.Is(err, ErrStopped) {
			t.Fatalf("WaitApplied(%d) across Close: %v, want %v", far, err, ErrStopped)
		}
	})
}

func TestCloseStopsEverything(t *testing.T) {
	cfg := testConfig(t)
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Propose(t.Context(), putLocation("L1")); !errors.Is(err, ErrStopped) {
		t.Fatalf("Propose before Start: %v, want %v", err, ErrStopped)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node leads", n.IsLeader)
	propose(t, n, putLocation("L1"))
	closeNode(t, n)
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v, want nil", err)
	}
	if _, err := n.Propose(t.Context(), putLocation("L2")); !errors.Is(err, ErrStopped) {
		t.Fatalf("Propose after Close: %v, want %v", err, ErrStopped)
	}
	if err := n.Snapshot(); !errors.Is(err, ErrStopped) {
		t.Fatalf("Snapshot after Close: %v, want %v", err, ErrStopped)
	}
	if n.IsLeader() || n.Leader() != "" || n.RaftAddr() != "" {
		t.Fatalf("after Close: IsLeader %v, Leader %q, RaftAddr %q; want false, empty, empty",
			n.IsLeader(), n.Leader(), n.RaftAddr())
	}
	goleak.VerifyNone(t)
	// The folder is free again: a new node opens it.
	cfg.Machine = store.New(store.DefaultConfig())
	startNode(t, cfg)
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testDeadline):
		t.Fatalf("waiting for %s: not done after %v", what, testDeadline)
	}
}
