package cluster

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// fsm is the raft.FSM adapter: a thin forwarder from committed log entries to
// the store.Machine. It decides nothing: no clock, no validation, no
// filtering beyond the log type. raft calls Apply, Snapshot and Restore on
// its one FSM goroutine, which is the machine's apply goroutine.
type fsm struct {
	machine *store.Machine
	logger  *slog.Logger
	// tmpDir holds the temporary bbolt containers of Persist and Restore.
	tmpDir string

	mu sync.Mutex
	// applied is closed and replaced after every apply and restore, so
	// waiters (WaitApplied) wake without polling.
	applied chan struct{}
	// restoreErr is the last Restore failure, reported by Start when raft
	// refuses to start because no snapshot could be restored.
	restoreErr error

	// captured is the Footprint of the snapshot captures not yet released.
	captured atomic.Int64
}

func newFSM(m *store.Machine, logger *slog.Logger, tmpDir string) *fsm {
	return &fsm{machine: m, logger: logger, tmpDir: tmpDir, applied: make(chan struct{})}
}

// Apply decodes one committed entry and applies it at its log index. It
// returns one store.Result per command, in command order. An entry that does
// not decode panics: a replica that cannot apply a committed entry must stop
// rather than diverge.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var e logv1.Entry
	if err := proto.Unmarshal(l.Data, &e); err != nil {
		panic(fmt.Sprintf("cluster: decode log entry %d: %v", l.Index, err))
	}
	if brokenClockExpiry { // false but in bench/chaos's self-test (broken_clock_expiry.go)
		f.machine.ApplyEntry(store.Revision(l.Index), &logv1.Entry{TimeUnixNanos: localClock()})
	}
	res := f.machine.ApplyEntry(store.Revision(l.Index), &e)
	f.notify()
	return res
}

// Snapshot captures the machine's state; Persist writes it later on raft's
// snapshot goroutine while applies continue.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	start := time.Now()
	snap := f.machine.Snapshot()
	took := time.Since(start)
	footprint := snap.Footprint()
	f.captured.Add(footprint)
	return &fsmSnapshot{snap: snap, capture: took, footprint: footprint, captured: &f.captured,
		tmpDir: f.tmpDir, logger: f.logger}, nil
}

// Restore replaces the machine's state with a snapshot's after checking the
// snapshot's digest. On error the machine is unchanged.
func (f *fsm) Restore(rc io.ReadCloser) error {
	err := restoreSnapshot(f.machine, rc, f.tmpDir)
	if cerr := rc.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("restore snapshot: close source: %w", cerr)
	}
	f.mu.Lock()
	f.restoreErr = err
	f.mu.Unlock()
	if err != nil {
		f.logger.Error("snapshot restore failed", "error", err)
		return err
	}
	f.notify()
	return nil
}

// notify wakes every goroutine waiting for the applied index to move.
func (f *fsm) notify() {
	f.mu.Lock()
	close(f.applied)
	f.applied = make(chan struct{})
	f.mu.Unlock()
}

// appliedCh returns a channel closed at the next apply or restore. Take it
// before reading the applied index, so a change in between is not missed.
func (f *fsm) appliedCh() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

func (f *fsm) lastRestoreErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restoreErr
}
