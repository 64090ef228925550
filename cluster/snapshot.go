package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"

	"github.com/stockd/stockd/store"
)

// A snapshot travels (to disk through raft's FileSnapshotStore, to followers
// through InstallSnapshot) as one bbolt file used as a container:
//
//	bucket "records": big-endian uint64 sequence 0, 1, ... -> one record of
//	                  the machine's canonical stream (a marshalled
//	                  logv1.SnapshotRecord), in stream order
//	bucket "meta":    "digest" -> sha256 over the canonical stream, framed as
//	                  store.Snapshot.Digest frames it; "count" -> big-endian
//	                  uint64 record count; "format" -> big-endian uint32
//
// The digest is over the record stream, never over the container bytes: two
// equal states give equal digests whatever bbolt's page layout.
var (
	bucketRecords = []byte("records")
	bucketMeta    = []byte("meta")
	keyDigest     = []byte("digest")
	keyCount      = []byte("count")
	keyFormat     = []byte("format")
)

// containerFormat is the container layout version written in meta.
const containerFormat uint32 = 1

// recordsPerTx bounds the records written in one bbolt transaction, so a
// large snapshot does not sit in memory twice.
const recordsPerTx = 4096

// Temporary container files live in the data folder, next to the snapshot
// store; leftovers of a crash are removed at Start.
const (
	persistTempPattern = "snapshot-*.tmp"
	restoreTempPattern = "restore-*.tmp"
)

// errDigestMismatch marks a snapshot whose records do not match the digest
// stored with them: the node refuses it rather than serve wrong counts. It
// unwraps to store.ErrCorruptSnapshot.
var errDigestMismatch = fmt.Errorf("%w: digest mismatch", store.ErrCorruptSnapshot)

// streamDigest hashes a record stream the way store.Snapshot.Digest does:
// each record preceded by its length as a uvarint. A test pins the two equal.
type streamDigest struct {
	h   hash.Hash
	len [binary.MaxVarintLen64]byte
}

func newStreamDigest() *streamDigest { return &streamDigest{h: sha256.New()} }

func (d *streamDigest) add(rec []byte) {
	d.h.Write(d.len[:binary.PutUvarint(d.len[:], uint64(len(rec)))])
	d.h.Write(rec)
}

func (d *streamDigest) sum() [32]byte {
	var out [32]byte
	d.h.Sum(out[:0])
	return out
}

// fsmSnapshot is a captured machine state waiting to be persisted. raft calls
// Persist on its snapshot goroutine, concurrently with applies; the capture
// is a deep copy, so that is safe.
type fsmSnapshot struct {
	snap *store.Snapshot
	// capture is how long the copy took: applies waited that long.
	capture time.Duration
	// footprint is the copy's Footprint, counted in captured until Release.
	footprint int64
	captured  *atomic.Int64
	tmpDir    string
	logger    *slog.Logger
	// bytes is the size of the container Persist wrote.
	bytes int64
}

// Persist writes the container to a temporary file, then streams it into the
// sink. On error the sink is cancelled and raft keeps the previous snapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	n, err := s.persist(sink)
	if err != nil {
		if cerr := sink.Cancel(); cerr != nil {
			s.logger.Warn("cancel snapshot sink", "error", cerr)
		}
		return fmt.Errorf("persist snapshot %d: %w", s.snap.Index(), err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("persist snapshot %d: close sink: %w", s.snap.Index(), err)
	}
	s.logger.Info("persisted snapshot", "index", uint64(s.snap.Index()), "records", n,
		"capture", s.capture, "duration", time.Since(start))
	return nil
}

func (s *fsmSnapshot) persist(w io.Writer) (uint64, error) {
	path, n, err := writeContainer(s.tmpDir, s.snap)
	if path != "" {
		defer os.Remove(path)
	}
	if err != nil {
		return 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open container: %w", err)
	}
	defer f.Close()
	copied, err := io.Copy(w, f)
	if err != nil {
		return 0, fmt.Errorf("copy container to sink: %w", err)
	}
	s.bytes = copied
	return n, nil
}

// collectAfterBytes is the container size from which Release collects the
// capture's garbage at once.
const collectAfterBytes = 16 << 20

// Release drops the capture. A large one (a copy of every counter, tens of
// MiB at a million counters) is collected at once: otherwise the live-heap
// figure the memory governor (cmd/stockd) sizes the soft limit by still
// counts it until the next collection, which an idle node may not start for
// two minutes, and the node keeps that much more memory resident.
func (s *fsmSnapshot) Release() {
	s.snap = nil
	if s.captured != nil {
		s.captured.Add(-s.footprint)
		s.footprint = 0
	}
	if s.bytes >= collectAfterBytes {
		runtime.GC()
	}
}

// writeContainer writes snap's records into a new bbolt file in dir and
// returns its path (set whenever a file was created, so the caller removes
// it) and the record count.
func writeContainer(dir string, snap *store.Snapshot) (string, uint64, error) {
	f, err := os.CreateTemp(dir, persistTempPattern)
	if err != nil {
		return "", 0, fmt.Errorf("create container: %w", err)
	}
	path := f.Name()
	if err := f.Close(); err != nil {
		return path, 0, fmt.Errorf("create container: %w", err)
	}
	// The file is copied into the sink, which raft syncs; syncing it here too
	// would only double the cost.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{NoSync: true, Timeout: time.Second})
	if err != nil {
		return path, 0, fmt.Errorf("open container: %w", err)
	}
	n, err := fillContainer(db, snap)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close container: %w", cerr)
	}
	return path, n, err
}

func fillContainer(db *bbolt.DB, snap *store.Snapshot) (uint64, error) {
	d := newStreamDigest()
	var (
		seq uint64
		tx  *bbolt.Tx
		b   *bbolt.Bucket
	)
	defer func() {
		if tx != nil {
			_ = tx.Rollback() // only reached on error; the write error is the one to report
		}
	}()
	emit := func(rec []byte) error {
		if tx == nil {
			var err error
			if tx, err = db.Begin(true); err != nil {
				return err
			}
			if b, err = tx.CreateBucketIfNotExists(bucketRecords); err != nil {
				return err
			}
			b.FillPercent = 1 // keys only ever grow
		}
		key := make([]byte, 8)
		binary.BigEndian.PutUint64(key, seq)
		// bbolt keeps the value until commit; the store may reuse rec.
		if err := b.Put(key, bytes.Clone(rec)); err != nil {
			return err
		}
		d.add(rec)
		seq++
		if seq%recordsPerTx == 0 {
			err := tx.Commit()
			tx = nil
			return err
		}
		return nil
	}
	if err := snap.WriteRecords(emit); err != nil {
		return 0, fmt.Errorf("write records: %w", err)
	}
	if tx != nil {
		err := tx.Commit()
		tx = nil
		if err != nil {
			return 0, fmt.Errorf("write records: %w", err)
		}
	}
	digest := d.sum()
	err := db.Update(func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketRecords); err != nil {
			return err
		}
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if err := m.Put(keyDigest, digest[:]); err != nil {
			return err
		}
		if err := m.Put(keyCount, binary.BigEndian.AppendUint64(nil, seq)); err != nil {
			return err
		}
		return m.Put(keyFormat, binary.BigEndian.AppendUint32(nil, containerFormat))
	})
	if err != nil {
		return 0, fmt.Errorf("write meta: %w", err)
	}
	return seq, nil
}

// restoreSnapshot copies a container stream to a temporary file, checks the
// record sequence, count and digest, and only then feeds the records in key
// order to m.Restore: a damaged snapshot never reaches the machine.
func restoreSnapshot(m *store.Machine, r io.Reader, dir string) error {
	f, err := os.CreateTemp(dir, restoreTempPattern)
	if err != nil {
		return fmt.Errorf("restore snapshot: create container: %w", err)
	}
	path := f.Name()
	defer os.Remove(path)
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore snapshot: copy container: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("restore snapshot: open container: %w", err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		recs, err := verifyContainer(tx)
		if err != nil {
			return err
		}
		c := recs.Cursor()
		k, v := c.First()
		next := func() ([]byte, error) {
			if k == nil {
				return nil, io.EOF
			}
			// The mapping dies with the transaction; the store may keep bytes.
			rec := bytes.Clone(v)
			k, v = c.Next()
			return rec, nil
		}
		return m.Restore(next)
	})
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	return nil
}

// verifyContainer checks that the records bucket holds exactly the counted
// records under keys 0..count-1 and that their digest is the stored one.
func verifyContainer(tx *bbolt.Tx) (*bbolt.Bucket, error) {
	meta := tx.Bucket(bucketMeta)
	recs := tx.Bucket(bucketRecords)
	if meta == nil || recs == nil {
		return nil, errors.New("not a snapshot container: buckets missing")
	}
	if fv := meta.Get(keyFormat); len(fv) != 4 || binary.BigEndian.Uint32(fv) != containerFormat {
		return nil, fmt.Errorf("unsupported container format %x", fv)
	}
	want := meta.Get(keyDigest)
	cv := meta.Get(keyCount)
	if len(want) != sha256.Size || len(cv) != 8 {
		return nil, errors.New("container meta malformed")
	}
	count := binary.BigEndian.Uint64(cv)
	d := newStreamDigest()
	var n uint64
	c := recs.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 8 || binary.BigEndian.Uint64(k) != n {
			return nil, fmt.Errorf("record %d: key %x out of sequence", n, k)
		}
		d.add(v)
		n++
	}
	if n != count {
		return nil, fmt.Errorf("%w: %d records, meta says %d", errDigestMismatch, n, count)
	}
	if got := d.sum(); !bytes.Equal(got[:], want) {
		return nil, fmt.Errorf("%w: stored %x, computed %x", errDigestMismatch, want, got)
	}
	return recs, nil
}

// openRecorder is raft's snapshot store, remembering why snapshots could not
// be opened: raft only logs it and then reports "failed to load any existing
// snapshots", and Start should say why.
type openRecorder struct {
	raft.SnapshotStore

	mu   sync.Mutex
	errs []error
}

// Open opens a snapshot, recording a failure.
func (s *openRecorder) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.SnapshotStore.Open(id)
	if err != nil {
		s.mu.Lock()
		s.errs = append(s.errs, fmt.Errorf("open snapshot %s: %w", id, err))
		s.mu.Unlock()
	}
	return meta, rc, err
}

func (s *openRecorder) openErrs() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.errs)
}

// removeTempFiles deletes container files a crash left in dir.
func removeTempFiles(dir string) error {
	for _, pattern := range []string{persistTempPattern, restoreTempPattern} {
		names, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return err
		}
		for _, name := range names {
			if err := os.Remove(name); err != nil {
				return err
			}
		}
	}
	return nil
}
