package cluster

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

// TestVerifyLogAcceptsTheGapBehindAnInstalledSnapshot: a follower that
// installs a snapshot keeps its older entries (up to the trailing-log count)
// and appends after the snapshot's index, so its log has a gap raft never
// reads. The fault harness caught a node refusing to restart over that gap
// ("entry 438: log not found", seed 1795917627848173781: kill-all after a
// snapshot catch-up). A gap after the newest snapshot is still damage, and
// so is an entry whose checksum fails.
func TestVerifyLogAcceptsTheGapBehindAnInstalledSnapshot(t *testing.T) {
	bolt, err := openRaftDB(filepath.Join(t.TempDir(), raftDBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	logs := checkedLogs{bolt}
	var entries []*raft.Log
	for _, span := range [][2]uint64{{310, 437}, {1432, 1500}} {
		for i := span[0]; i <= span[1]; i++ {
			entries = append(entries, &raft.Log{Index: i, Term: 3, Type: raft.LogCommand, Data: []byte{byte(i)}})
		}
	}
	if err := logs.StoreLogs(entries); err != nil {
		t.Fatal(err)
	}
	if err := verifyLog(logs, 1431); err != nil {
		t.Fatalf("log 310..437 and 1432..1500 over a snapshot at 1431: %v, want accepted", err)
	}
	for _, snap := range []uint64{0, 1000} {
		if err := verifyLog(logs, snap); !errors.Is(err, errCorruptRaftDB) {
			t.Fatalf("the same log over a snapshot at %d (entries 1001..1431 needed but missing): got %v, want damage", snap, err)
		}
	}
	// A stored entry behind the snapshot is still checked.
	bad := &raft.Log{Index: 400, Term: 3, Type: raft.LogCommand, Data: []byte("flipped"), Extensions: []byte("sck1\x00\x00\x00\x00")}
	if err := bolt.StoreLog(bad); err != nil {
		t.Fatal(err)
	}
	if err := verifyLog(logs, 1431); !errors.Is(err, errCorruptRaftDB) {
		t.Fatalf("entry 400 with a wrong checksum behind the snapshot: got %v, want damage", err)
	}
}
