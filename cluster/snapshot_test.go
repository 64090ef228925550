package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// machineWithState applies a few entries straight to a machine (no raft).
func machineWithState(t *testing.T) *store.Machine {
	t.Helper()
	m := store.New(store.DefaultConfig())
	cmds := []*logv1.Command{putLocation("L1"), putLocation("L2"), putChannel("web", "L1", "L2"),
		setStock("ROSE", "L1", 50, 1), setStock("TULIP", "L2", 7, 3)}
	for i := range 20 {
		cmds = append(cmds, reserve("web", fmt.Sprintf("r%02d", i), "ROSE", 1, time.Hour))
	}
	for i, c := range cmds {
		m.ApplyEntry(store.Revision(i+1), &logv1.Entry{TimeUnixNanos: int64(i+1) * 1e9, FeatureVersion: store.FeatureVersion,
			Commands: []*logv1.Command{c}})
	}
	return m
}

func TestStreamDigestMatchesStore(t *testing.T) {
	s := machineWithState(t).Snapshot()
	want, err := s.Digest()
	if err != nil {
		t.Fatal(err)
	}
	d := newStreamDigest()
	if err := s.WriteRecords(func(rec []byte) error { d.add(rec); return nil }); err != nil {
		t.Fatal(err)
	}
	if got := d.sum(); got != want {
		t.Fatalf("container digest over snapshot %d = %x, want store.Snapshot.Digest %x", s.Index(), got, want)
	}
}

// writeTestContainer writes m's snapshot as a container and returns its bytes.
func writeTestContainer(t *testing.T, m *store.Machine) []byte {
	t.Helper()
	dir := t.TempDir()
	path, _, err := writeContainer(dir, m.Snapshot())
	if err != nil {
		t.Fatalf("writeContainer: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestContainerRoundTrip(t *testing.T) {
	src := machineWithState(t)
	want, err := src.Digest()
	if err != nil {
		t.Fatal(err)
	}
	dst := store.New(store.DefaultConfig())
	if err := restoreSnapshot(dst, bytes.NewReader(writeTestContainer(t, src)), t.TempDir()); err != nil {
		t.Fatalf("restoreSnapshot: %v", err)
	}
	got, err := dst.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got != want || dst.AppliedIndex() != src.AppliedIndex() {
		t.Fatalf("restored machine: digest %x at %d, want %x at %d", got, dst.AppliedIndex(), want, src.AppliedIndex())
	}
}

func TestRestoreRefusesDamagedContainers(t *testing.T) {
	src := machineWithState(t)
	good := writeTestContainer(t, src)

	// edit rewrites a copy of the good container with fn.
	edit := func(t *testing.T, fn func(tx *bbolt.Tx) error) []byte {
		t.Helper()
		path := t.TempDir() + "/c"
		if err := os.WriteFile(path, good, 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	key := func(i uint64) []byte { return []byte{0, 0, 0, 0, 0, 0, 0, byte(i)} }

	for _, tc := range []struct {
		name string
		data func(t *testing.T) []byte
		want error // nil: any error
	}{
		{"a changed record fails the digest", func(t *testing.T) []byte {
			return edit(t, func(tx *bbolt.Tx) error {
				b := tx.Bucket(bucketRecords)
				v := append([]byte(nil), b.Get(key(3))...)
				v[len(v)-1] ^= 1
				return b.Put(key(3), v)
			})
		}, errDigestMismatch},
		{"a dropped record fails the count", func(t *testing.T) []byte {
			return edit(t, func(tx *bbolt.Tx) error {
				b := tx.Bucket(bucketRecords)
				k, _ := b.Cursor().Last()
				return b.Delete(append([]byte(nil), k...))
			})
		}, errDigestMismatch},
		{"a record out of sequence is refused", func(t *testing.T) []byte {
			return edit(t, func(tx *bbolt.Tx) error { return tx.Bucket(bucketRecords).Delete(key(2)) })
		}, nil},
		{"a missing meta bucket is refused", func(t *testing.T) []byte {
			return edit(t, func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketMeta) })
		}, nil},
		{"bytes that are no container are refused", func(t *testing.T) []byte {
			return bytes.Repeat([]byte("not a bolt file "), 512)
		}, nil},
		{"an empty stream is refused", func(t *testing.T) []byte { return nil }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := store.New(store.DefaultConfig())
			err := restoreSnapshot(dst, bytes.NewReader(tc.data(t)), t.TempDir())
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("restoreSnapshot: %v, want an error (%v)", err, tc.want)
			}
			if dst.AppliedIndex() != 0 {
				t.Fatalf("machine after a refused restore: applied index %d, want 0 (unchanged)", dst.AppliedIndex())
			}
		})
	}
}

// TestCapturedBytesCountsUnreleasedCaptures: a capture counts its Footprint
// in captured (which the heap governor gives no headroom) until raft
// releases it, and two at once count both.
func TestCapturedBytesCountsUnreleasedCaptures(t *testing.T) {
	f := newFSM(machineWithState(t), slog.New(slog.DiscardHandler), t.TempDir())
	first, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	one := first.(*fsmSnapshot).snap.Footprint()
	if one <= 0 || f.captured.Load() != one {
		t.Fatalf("one capture: captured %d, footprint %d, want equal and above 0", f.captured.Load(), one)
	}
	second, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if got := f.captured.Load(); got != 2*one {
		t.Errorf("two captures of one state: captured %d, want %d", got, 2*one)
	}
	first.Release()
	first.Release() // raft releases once; a second call must not count twice
	if got := f.captured.Load(); got != one {
		t.Errorf("one of two released: captured %d, want %d", got, one)
	}
	second.Release()
	if got := f.captured.Load(); got != 0 {
		t.Errorf("both released: captured %d, want 0", got)
	}
}
