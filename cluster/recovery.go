package cluster

import (
	"context"
	"fmt"
	"strconv"

	"github.com/hashicorp/raft"

	"github.com/stockd/stockd/store"
)

// Start logs what it recovered in two lines a process test parses:
//
//	msg="restored snapshot" index=N          (only when a snapshot was restored;
//	                                         else msg="no snapshot to restore")
//	msg="replayed log tail" first=F last=L entries=E   (once the tail is applied)

// recovery is what Start found on disk.
type recovery struct {
	snapshotIndex uint64
	first, last   uint64
	// target is the last command entry of the tail; replay is over once the
	// machine applied it (entries after it do not reach the machine).
	target uint64
}

// planRecovery reads, right after NewRaft, the snapshot raft restored and the
// log tail it will replay, and finds the tail's last command entry.
func planRecovery(r *raft.Raft, logs raft.LogStore) (recovery, error) {
	var rec recovery
	s := r.Stats()["last_snapshot_index"]
	snap, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return rec, fmt.Errorf("read snapshot index %q: %w", s, err)
	}
	rec.snapshotIndex = snap
	last := r.LastIndex()
	if last <= snap {
		return rec, nil
	}
	rec.first, rec.last = snap+1, last
	for idx := last; idx > snap; idx-- {
		var l raft.Log
		if err := logs.GetLog(idx, &l); err != nil {
			return rec, fmt.Errorf("read log entry %d: %w", idx, err)
		}
		if l.Type == raft.LogCommand {
			rec.target = idx
			break
		}
	}
	return rec, nil
}

// watchReplay logs once the log tail found at Start has been applied, then
// closes replayed. It exits then, or when ctx ends.
func (n *Node) watchReplay(ctx context.Context, rec recovery) {
	if rec.target > 0 {
		if err := n.WaitApplied(ctx, store.Revision(rec.target)); err != nil {
			return
		}
	}
	entries := uint64(0)
	if rec.last > 0 {
		entries = rec.last - rec.first + 1
	}
	n.logger.Info("replayed log tail", "first", rec.first, "last", rec.last, "entries", entries)
	close(n.replayed)
}

// Recovery reports what Start found on disk: the index of the snapshot it
// restored (0: none) and the log tail replayed after it, first to last
// inclusive (0, 0: none). The tail counts every raft entry, not only those
// carrying commands.
func (n *Node) Recovery() (snapshotIndex, firstReplayed, lastReplayed uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.recovery.snapshotIndex, n.recovery.first, n.recovery.last
}
