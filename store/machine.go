package store

import (
	"cmp"
	"container/heap"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/stockd/stockd/api/logv1"
)

// Machine is the replicated state machine. Apply, ApplyEntry and Restore run
// on one goroutine (the log applier); every other method, Snapshot included,
// is safe from any goroutine concurrently with them.
type Machine struct {
	cfg Config
	st  atomic.Pointer[state]
	// applyMu is held while a command applies, a snapshot copies or a restore
	// swaps, so a Snapshot taken from any goroutine sees whole commands.
	applyMu sync.Mutex
	// bulk makes bulk commands atomic to readers (bulk.go).
	bulk bulkGate
	// changes is the change log (changes.go); skuIndex maps items to their
	// SKUs for Watch (channel_skus.go).
	changes  changeLog
	skuIndex skuIndexCache
	// stats are the cumulative counts Stats reads (stats.go); every state
	// generation points at the same one.
	stats *stats
	// lastCounters is the counter count of the last Snapshot, the next one's
	// capacity hint, so its capture walks the items once (snapshot.go).
	lastCounters int
}

// New returns an empty machine. Zero fields of cfg take DefaultConfig's values.
func New(cfg Config) *Machine {
	def := DefaultConfig()
	if cfg.RetryWindowNanos <= 0 {
		cfg.RetryWindowNanos = def.RetryWindowNanos
	}
	if cfg.MaxRecords <= 0 {
		cfg.MaxRecords = def.MaxRecords
	}
	if cfg.ChangeLogEntries <= 0 {
		cfg.ChangeLogEntries = DefaultChangeLogEntries
	}
	m := &Machine{cfg: cfg, stats: newStats()}
	m.changes.capacity = cfg.ChangeLogEntries
	st := newState()
	st.changes = &m.changes
	st.stats = m.stats
	m.st.Store(st)
	return m
}

// AppliedIndex is the index of the last applied entry; it never decreases
// while the machine runs (I5).
func (m *Machine) AppliedIndex() Revision { return Revision(m.st.Load().applied.Load()) }

// LastTime is the log time of the last applied entry, Unix nanoseconds.
func (m *Machine) LastTime() Timestamp { return Timestamp(m.st.Load().now.Load()) }

// NextDeadline is the earliest deadline of a live hold, if any: once the log
// time passes it, an entry (a Tick if nothing else) expires the hold.
func (m *Machine) NextDeadline() (Timestamp, bool) {
	d := m.st.Load().deadline.Load()
	return Timestamp(d), d != 0
}

// ApplyEntry applies every command of one log entry at index, in order, each
// with its own result; they share the entry's revision and time. It panics on
// an entry that needs a newer feature version or holds an unknown command:
// stopping beats diverging.
func (m *Machine) ApplyEntry(index Revision, e *logv1.Entry) []Result {
	if e.GetFeatureVersion() > FeatureVersion {
		panic(fmt.Sprintf("store: entry %d needs feature version %d, this build applies up to %d",
			index, e.GetFeatureVersion(), FeatureVersion))
	}
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	out := make([]Result, len(e.GetCommands()))
	for i, c := range e.GetCommands() {
		out[i] = m.apply(index, Timestamp(e.GetTimeUnixNanos()), c)
	}
	if len(out) == 0 {
		// An empty entry still moves time and the applied index.
		m.apply(index, Timestamp(e.GetTimeUnixNanos()), &logv1.Command{Kind: &logv1.Command_Tick{Tick: &logv1.Tick{}}})
	}
	return out
}

// Apply applies one command at log index with the entry's time stamp ts. The
// machine's time becomes max(its time, ts); holds whose deadline is at or
// before it expire first, then remembered answers past the retry window are
// pruned, then the command runs. A refusal is returned in Result.Err with the
// state unchanged by the command.
func (m *Machine) Apply(index Revision, ts Timestamp, cmd *logv1.Command) Result {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	return m.apply(index, ts, cmd)
}

func (m *Machine) apply(index Revision, ts Timestamp, cmd *logv1.Command) Result {
	st := m.st.Load()
	st.index = index
	if Timestamp(st.now.Load()) < ts {
		st.now.Store(int64(ts))
	}
	now := Timestamp(st.now.Load())
	st.expire(now)
	st.prune(now, m.cfg)
	st.trimOutbox(now, m.cfg.RetryWindowNanos)

	var res Result
	switch k := cmd.GetKind().(type) {
	case *logv1.Command_Reserve:
		res = st.reserve(now, k.Reserve)
	case *logv1.Command_Confirm:
		res = st.confirm(now, k.Confirm)
	case *logv1.Command_Release:
		res = st.release(now, k.Release)
	case *logv1.Command_SetStock:
		res = st.setStock(k.SetStock)
	case *logv1.Command_AdjustStock:
		res = st.adjustStock(now, k.AdjustStock)
	case *logv1.Command_PutLocation:
		res = st.putLocation(k.PutLocation)
	case *logv1.Command_PutChannel:
		res = st.putChannel(k.PutChannel)
	case *logv1.Command_SetBuffer:
		res = st.setBuffer(k.SetBuffer)
	case *logv1.Command_PutNode:
		res = st.putNode(k.PutNode)
	case *logv1.Command_RemoveNode:
		res = st.removeNode(k.RemoveNode)
	case *logv1.Command_Extend:
		res = st.extend(now, k.Extend)
	case *logv1.Command_CancelOrder:
		res = st.cancelOrder(now, k.CancelOrder)
	case *logv1.Command_AckOrders:
		res = st.ackOrders(k.AckOrders)
	case *logv1.Command_ReleaseAll:
		res = st.releaseAllHolds(now, k.ReleaseAll)
	case *logv1.Command_SetIncoming:
		res = st.setIncoming(k.SetIncoming)
	case *logv1.Command_PutSku:
		res = st.putSku(k.PutSku)
	case *logv1.Command_DeleteSku:
		res = st.deleteSku(k.DeleteSku)
	case *logv1.Command_PutLocationGroup:
		res = st.putLocationGroup(k.PutLocationGroup)
	case *logv1.Command_DeleteLocationGroup:
		res = st.deleteLocationGroup(k.DeleteLocationGroup)
	case *logv1.Command_DeleteLocation:
		res = st.deleteLocation(k.DeleteLocation)
	case *logv1.Command_DeleteChannel:
		res = st.deleteChannel(k.DeleteChannel)
	case *logv1.Command_BackfillChunk:
		res = st.backfillChunk(k.BackfillChunk) // backfill.go
	case *logv1.Command_BackfillCommit:
		res = m.bulkApply(func() Result { return st.backfillCommit(k.BackfillCommit) }) // bulk.go
	case *logv1.Command_Tick:
	default:
		panic(fmt.Sprintf("store: entry %d holds an unknown command %T", index, cmd.GetKind()))
	}
	res.Revision = index
	m.changes.publish(index) // changes.go
	st.settleDeadline()
	if Revision(st.applied.Load()) < index {
		st.applied.Store(uint64(index))
	}
	return res
}

// expire ends every hold whose deadline is at or before now, in (deadline,
// channel, id) order so the result does not depend on the heap's layout. A
// heap item whose time is not the hold's current deadline is stale (the hold
// ended or an Extend moved it) and skipped; an Extend back to a deadline the
// hold had before leaves two live-looking items for one hold, so due holds
// are taken once each.
func (st *state) expire(now Timestamp) {
	var due []*reservation
	for len(st.deadlines) > 0 && st.deadlines[0].at <= now {
		it := heap.Pop(&st.deadlines).(deadlineItem)
		r := st.reservations[it.key]
		if r != nil && r.State == StateHeld && r.ExpiresAt == it.at {
			due = append(due, r)
		}
	}
	if len(due) == 0 {
		return
	}
	slices.SortFunc(due, func(a, b *reservation) int {
		if a.ExpiresAt != b.ExpiresAt {
			return cmp.Compare(a.ExpiresAt, b.ExpiresAt)
		}
		return cmpKey(resKey{a.Channel, a.ID}, resKey{b.Channel, b.ID})
	})
	due = slices.Compact(due)
	for _, r := range due {
		st.unhold(r)
		st.finish(r, StateExpired, now)
	}
	st.stats.expired(len(due))
}

// settleDeadline drops stale heap tops and publishes the earliest live deadline.
func (st *state) settleDeadline() {
	for len(st.deadlines) > 0 {
		it := st.deadlines[0]
		r := st.reservations[it.key]
		if r != nil && r.State == StateHeld && r.ExpiresAt == it.at {
			st.deadline.Store(int64(it.at))
			return
		}
		heap.Pop(&st.deadlines)
	}
	st.deadline.Store(0)
}

// prune forgets final answers older than the retry window, and the oldest
// ones past the count cap, in the order they became final.
func (st *state) prune(now Timestamp, cfg Config) {
	for st.pruneHead < len(st.pruneQueue) {
		it := st.pruneQueue[st.pruneHead]
		live := len(st.pruneQueue) - st.pruneHead
		if int64(now)-int64(it.at) < cfg.RetryWindowNanos && live <= cfg.MaxRecords {
			break
		}
		switch it.kind {
		case pruneReservation:
			st.lmu.Lock()
			delete(st.reservations, it.key)
			st.lmu.Unlock()
		case pruneRefusal:
			delete(st.refusals, it.key)
		case pruneDelta:
			delete(st.deltas, it.deltaID)
		case pruneReleaseAll:
			delete(st.releaseAlls, it.key)
		}
		st.pruneQueue[st.pruneHead] = pruneItem{}
		st.pruneHead++
	}
	// Compact once the dead head outweighs the live tail.
	if st.pruneHead > 1024 && st.pruneHead*2 > len(st.pruneQueue) {
		st.pruneQueue = append(st.pruneQueue[:0], st.pruneQueue[st.pruneHead:]...)
		st.pruneHead = 0
	}
}

// enqueuePrune schedules a final answer to be forgotten after the window.
func (st *state) enqueuePrune(it pruneItem) uint64 {
	it.seq = st.nextPruneSeq
	st.nextPruneSeq++
	st.pruneQueue = append(st.pruneQueue, it)
	return it.seq
}

func cmpKey(a, b resKey) int {
	return cmp.Or(cmp.Compare(a.channel, b.channel), cmp.Compare(a.id, b.id))
}

// deadlineHeap orders holds by deadline, then key. Entries go stale when a
// hold ends or its deadline moves; they are skipped when they surface.
type deadlineHeap []deadlineItem

func (h deadlineHeap) Len() int { return len(h) }
func (h deadlineHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return cmpKey(h[i].key, h[j].key) < 0
}
func (h deadlineHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)   { *h = append(*h, x.(deadlineItem)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
