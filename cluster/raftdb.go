package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// A damaged raft.db must stop the node, never feed it wrong entries. bbolt
// checksums only its two meta pages: it silently falls back to the older one
// when the newer fails (losing the last, acknowledged, commit), maps a file
// shorter than its meta says and reads past its end, panics on a page it
// cannot parse, and has no checksum over values, so one flipped bit in a log
// entry is a different command (a different on_hand). Hence, before raft
// sees the file: the meta pages are checked here, the file is walked and
// bbolt's consistency check run with panics and memory faults turned into
// errors, and every log entry carries a CRC-32C that is checked whenever it
// is read back.

// errCorruptRaftDB marks a raft log file (raft.db) that failed a check at
// open or an entry that failed its checksum.
var errCorruptRaftDB = errors.New("damaged")

// damaged wraps err with errCorruptRaftDB unless it already is one.
func damaged(err error) error {
	if err == nil || errors.Is(err, errCorruptRaftDB) {
		return err
	}
	return fmt.Errorf("%w: %w", errCorruptRaftDB, err)
}

// openRaftDB checks the raft log file at path and opens it. A missing file is
// created (a new node); a damaged one is an error naming the file and the
// damage, wrapping errCorruptRaftDB.
func openRaftDB(path string) (*raftboltdb.BoltStore, error) {
	if err := inspectRaftDB(path); err != nil {
		return nil, fmt.Errorf("raft log %s: %w", path, damaged(err))
	}
	var bolt *raftboltdb.BoltStore
	err := guard(func() error {
		var err error
		bolt, err = raftboltdb.New(raftboltdb.Options{
			Path: path,
			// Another process holding the file fails this one instead of hanging.
			BoltOptions: &bbolt.Options{Timeout: time.Second},
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("raft log %s: %w", path, err)
	}
	return bolt, nil
}

// bbolt's on-disk meta page (format version 2, native byte order, which is
// little-endian on every platform stockd is built for): a 16-byte page
// header, then magic, version, page size, flags (uint32 each), the root
// bucket (pgid, sequence), the freelist pgid, the high-water mark pgid, the
// txid, and an FNV-64a checksum over the 56 bytes before it.
const (
	boltPageHeader   = 16
	boltMetaSize     = 64
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	boltNoFreelist   = 0xffffffffffffffff
	boltMinPageBytes = 512
)

type boltMeta struct {
	pageSize          uint32
	root, free, pages uint64
	txid              uint64
}

func readBoltMeta(f *os.File, page int, offset int64) (boltMeta, error) {
	b := make([]byte, boltMetaSize)
	if _, err := f.ReadAt(b, offset+boltPageHeader); err != nil {
		return boltMeta{}, fmt.Errorf("meta page %d: cut short: %w", page, err)
	}
	le := binary.LittleEndian
	h := fnv.New64a()
	h.Write(b[:56])
	switch {
	case le.Uint32(b[0:]) != boltMagic:
		return boltMeta{}, fmt.Errorf("meta page %d: not a bbolt meta page", page)
	case le.Uint32(b[4:]) != boltVersion:
		return boltMeta{}, fmt.Errorf("meta page %d: format version %d, want %d", page, le.Uint32(b[4:]), boltVersion)
	case le.Uint64(b[56:]) != h.Sum64():
		return boltMeta{}, fmt.Errorf("meta page %d: checksum mismatch", page)
	}
	return boltMeta{
		pageSize: le.Uint32(b[8:]),
		root:     le.Uint64(b[16:]),
		free:     le.Uint64(b[32:]),
		pages:    le.Uint64(b[40:]),
		txid:     le.Uint64(b[48:]),
	}, nil
}

// inspectRaftDB checks an existing raft log file before bbolt opens it for
// writing: a non-empty file (bbolt writes four pages when it creates one, so
// an empty file was cut), both meta pages valid (either failing means a
// commit may be lost), the file as long as the newer meta says, and every
// page reachable and consistent. A missing file is fine.
func inspectRaftDB(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size == 0 {
		return errors.New("empty file (0 bytes): truncated")
	}
	m0, err := readBoltMeta(f, 0, 0)
	if err != nil {
		return fmt.Errorf("%w (file %d bytes)", err, size)
	}
	if m0.pageSize < boltMinPageBytes || m0.pageSize&(m0.pageSize-1) != 0 {
		return fmt.Errorf("meta page 0: page size %d", m0.pageSize)
	}
	m1, err := readBoltMeta(f, 1, int64(m0.pageSize))
	if err != nil {
		return fmt.Errorf("%w (file %d bytes)", err, size)
	}
	m := m0
	if m1.txid > m0.txid {
		m = m1
	}
	switch want := int64(m.pages) * int64(m0.pageSize); {
	case m1.pageSize != m0.pageSize:
		return fmt.Errorf("meta pages disagree on the page size: %d and %d", m0.pageSize, m1.pageSize)
	case size < want:
		return fmt.Errorf("truncated: %d bytes, its meta page (txid %d) says %d", size, m.txid, want)
	case m.root < 2 || m.root >= m.pages || (m.free != boltNoFreelist && (m.free < 2 || m.free >= m.pages)):
		return fmt.Errorf("meta page (txid %d): root page %d or freelist page %d outside 2..%d", m.txid, m.root, m.free, m.pages)
	}
	return checkBoltTree(path)
}

// checkBoltTree opens the file read-only, touches every key and value of
// every bucket on this goroutine (where a memory fault on a bad page pointer
// becomes a recoverable panic), then runs bbolt's consistency check, which
// walks the same pages on a goroutine of its own.
func checkBoltTree(path string) error {
	var db *bbolt.DB
	err := guard(func() error {
		var err error
		db, err = bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
		return err
	})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	err = guard(func() error {
		return db.View(func(tx *bbolt.Tx) error {
			var sum uint32
			err := tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
				return b.ForEach(func(k, v []byte) error {
					sum = crc32.Update(sum, crc32.IEEETable, k)
					sum = crc32.Update(sum, crc32.IEEETable, v)
					return nil
				})
			})
			if err != nil {
				return err
			}
			var errs joined
			for err := range tx.Check() {
				if len(errs) < 5 {
					errs = append(errs, err)
				}
			}
			if len(errs) > 0 {
				return errs
			}
			return nil
		})
	})
	if cerr := db.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// guard runs f and turns a panic, or a memory fault (a page pointer past the
// end of a damaged file's mapping), into an error: bbolt panics on pages it
// cannot parse.
func guard(f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt panicked: %v", errCorruptRaftDB, r)
		}
	}()
	return f()
}

// entryTag starts the Extensions of every entry this node stores, followed
// by a big-endian CRC-32C of the entry and then the Extensions raft gave (none
// in stockd). The tag and checksum are local to this node's file: they are
// added when an entry is stored and removed when it is read, so neither raft
// nor other nodes see them. An entry with no Extensions was stored by an
// older build and is read unchecked.
var entryTag = []byte("sck1")

const entryTagLen = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func entrySum(l *raft.Log, ext []byte) uint32 {
	var hdr [25]byte
	binary.BigEndian.PutUint64(hdr[0:], l.Index)
	binary.BigEndian.PutUint64(hdr[8:], l.Term)
	hdr[16] = byte(l.Type)
	binary.BigEndian.PutUint64(hdr[17:], uint64(len(l.Data)))
	sum := crc32.Update(0, castagnoli, hdr[:])
	sum = crc32.Update(sum, castagnoli, l.Data)
	return crc32.Update(sum, castagnoli, ext)
}

// checkedLogs is raft's log store with a checksum on every entry (entryTag).
// It is as safe for concurrent use as the store it wraps.
type checkedLogs struct {
	raft.LogStore
}

// StoreLog stores l with its checksum.
func (s checkedLogs) StoreLog(l *raft.Log) error {
	return s.StoreLogs([]*raft.Log{l})
}

// StoreLogs stores logs with their checksums; the callers' entries are not changed.
func (s checkedLogs) StoreLogs(logs []*raft.Log) error {
	sealed := make([]*raft.Log, len(logs))
	for i, l := range logs {
		c := *l
		ext := make([]byte, entryTagLen, entryTagLen+len(l.Extensions))
		copy(ext, entryTag)
		binary.BigEndian.PutUint32(ext[4:], entrySum(l, l.Extensions))
		c.Extensions = append(ext, l.Extensions...)
		sealed[i] = &c
	}
	return s.LogStore.StoreLogs(sealed)
}

// GetLog reads entry idx into l and checks its checksum; a mismatch wraps
// errCorruptRaftDB. raft.ErrLogNotFound passes through unwrapped.
func (s checkedLogs) GetLog(idx uint64, l *raft.Log) error {
	if err := s.LogStore.GetLog(idx, l); err != nil {
		return err
	}
	if l.Index != idx {
		return fmt.Errorf("%w: entry %d: holds index %d", errCorruptRaftDB, idx, l.Index)
	}
	ext := l.Extensions
	if len(ext) == 0 {
		return nil
	}
	if len(ext) < entryTagLen || !bytes.Equal(ext[:len(entryTag)], entryTag) {
		return fmt.Errorf("%w: entry %d: no checksum tag", errCorruptRaftDB, idx)
	}
	rest := ext[entryTagLen:]
	if got, want := entrySum(l, rest), binary.BigEndian.Uint32(ext[4:]); got != want {
		return fmt.Errorf("%w: entry %d: checksum mismatch: stored %08x, computed %08x", errCorruptRaftDB, idx, want, got)
	}
	l.Extensions = nil
	if len(rest) > 0 {
		l.Extensions = rest
	}
	return nil
}

// verifyLog reads every entry in the store, which checks each checksum,
// and checks that none after the newest snapshot (index snapshotIndex, 0 for
// none) is missing: raft replays those. Entries at or before it may be
// missing: a follower that installs a snapshot keeps its older entries up to
// the trailing-log count and appends after the snapshot's index, leaving a
// gap that raft never reads.
func verifyLog(logs raft.LogStore, snapshotIndex uint64) error {
	return guard(func() error {
		first, err := logs.FirstIndex()
		if err != nil {
			return err
		}
		last, err := logs.LastIndex()
		if err != nil || last == 0 {
			return err
		}
		var l raft.Log
		for i := first; i <= last; i++ {
			err := logs.GetLog(i, &l)
			switch {
			case err == nil:
			case errors.Is(err, errCorruptRaftDB):
				return fmt.Errorf("log %d..%d: %w", first, last, err)
			case errors.Is(err, raft.ErrLogNotFound) && i <= snapshotIndex:
				// behind the snapshot: raft does not need it
			default:
				return damaged(fmt.Errorf("log %d..%d: entry %d: %w", first, last, i, err))
			}
		}
		return nil
	})
}

// newestSnapshotIndex is the index of the newest snapshot in the store, 0
// when there is none.
func newestSnapshotIndex(files raft.SnapshotStore) (uint64, error) {
	metas, err := files.List()
	if err != nil || len(metas) == 0 {
		return 0, err
	}
	return metas[0].Index, nil
}

// joined is errors.Join on one line, so a refused start is one line on stderr.
type joined []error

func (j joined) Error() string {
	msgs := make([]string, len(j))
	for i, err := range j {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (j joined) Unwrap() []error { return j }
