package store

import "sync"

// The change log (issue 6): a bounded, in-memory record of which inputs of
// channel figures each applied entry changed, so Watch and ListChanges learn
// what moved without scanning the catalog. It is derived state, not
// replicated: nothing in it reaches a result or a snapshot, and after a
// restart or a snapshot install it starts empty at the restored revision
// (asking for changes from before that answers "not complete"). The apply
// goroutine collects a command's changes without locking (deduplicated
// against the last one) and publishes them once per command; readers on
// other goroutines copy them out under a read lock.

// DefaultChangeLogEntries is Config.ChangeLogEntries when left zero.
const DefaultChangeLogEntries = 100_000

// ChangeKind says what a Change names.
type ChangeKind uint8

const (
	// ChangeItem: inputs of the item's figures changed (a counter, a buffer
	// rule or an incoming line): every SKU resolving to Item, for channels in
	// scope (Change.Channel, Change.Location).
	ChangeItem ChangeKind = iota + 1
	// ChangeSKU: the SKU's mapping changed (put or deleted), for every channel.
	ChangeSKU
	// ChangeChannel: the channel changed (locations, group, default buffer,
	// deleted): every figure of Channel may have moved.
	ChangeChannel
	// ChangeAll: a bulk command changed more than the log records one by
	// one (a Backfill commit): every figure may have moved.
	ChangeAll
)

// Change is one entry of the change log.
type Change struct {
	Revision Revision
	Kind     ChangeKind
	// Item for ChangeItem.
	Item ItemID
	// SKU for ChangeSKU.
	SKU SKU
	// Channel: for ChangeChannel, the channel; for ChangeItem, when set, only
	// this channel's figures (a buffer rule of one channel).
	Channel ChannelID
	// Location: for ChangeItem, when set, only channels that see it.
	Location LocationID
}

// Visible reports whether the change can move a figure of channel c: the
// change is not scoped to another channel or to a location c does not see.
func (ch Change) Visible(c *Channel) bool {
	switch ch.Kind {
	case ChangeChannel:
		return ch.Channel == c.ID
	case ChangeItem:
		return (ch.Channel == "" || ch.Channel == c.ID) && (ch.Location == "" || c.sees(ch.Location))
	}
	return true
}

// changeLog holds the last capacity changes (at most one block more), in
// revision order, in blocks of equal size: appending never copies what is
// kept, and the oldest block, once dropped, takes the next changes.
type changeLog struct {
	capacity int
	// pending is the command being applied's changes (apply goroutine only).
	pending []Change
	// bulk: the command being applied recorded more than maxPending changes;
	// they collapse to one ChangeAll.
	bulk bool

	mu sync.RWMutex
	// blocks are full but the last; total counts their changes.
	blocks []*changeBlock
	total  int
	spare  *changeBlock
	// floor: every change after floor is kept (a change at or before it may
	// have been dropped or predates the log).
	floor Revision
}

type changeBlock struct {
	n int
	e []Change
}

// blockSize is the changes per block: capacity/8 up to 4,096, at least 1.
func (l *changeLog) blockSize() int { return min(max(l.capacity/8, 1), 4096) }

// maxPending is how many changes one command records one by one; past it,
// the command is recorded as ChangeAll (it would evict most of the log).
func (l *changeLog) maxPending() int { return max(l.capacity/8, 1) }

// note records a change of the entry being applied. Apply goroutine only.
func (l *changeLog) note(c Change) {
	if l == nil || l.bulk {
		return
	}
	if n := len(l.pending); n > 0 && l.pending[n-1] == c {
		return
	}
	if len(l.pending) >= l.maxPending() {
		l.bulk = true
		l.pending = l.pending[:0]
		return
	}
	l.pending = append(l.pending, c)
}

// publish moves the pending changes into the log. Apply goroutine only,
// once per command, before the applied index moves.
func (l *changeLog) publish(rev Revision) {
	if l == nil || (len(l.pending) == 0 && !l.bulk) {
		return
	}
	if l.bulk {
		l.pending = append(l.pending[:0], Change{Revision: rev, Kind: ChangeAll})
		l.bulk = false
	}
	size := l.blockSize()
	l.mu.Lock()
	for _, c := range l.pending {
		last := len(l.blocks) - 1
		if last < 0 || l.blocks[last].n == size {
			b := l.spare
			if b == nil || len(b.e) != size {
				b = &changeBlock{e: make([]Change, size)}
			}
			l.spare = nil
			l.blocks = append(l.blocks, b)
			last++
		}
		b := l.blocks[last]
		b.e[b.n] = c
		b.n++
		l.total++
		if first := l.blocks[0]; l.total-first.n >= l.capacity {
			l.floor = max(l.floor, first.e[first.n-1].Revision)
			l.total -= first.n
			clear(first.e)
			first.n = 0
			l.spare = first
			l.blocks[0] = nil
			l.blocks = l.blocks[1:]
		}
	}
	l.mu.Unlock()
	clear(l.pending)
	l.pending = l.pending[:0]
	if cap(l.pending) > 4096 {
		l.pending = nil // a big command's buffer is not kept
	}
}

// reset empties the log: nothing before rev is known. Under applyMu.
func (l *changeLog) reset(rev Revision) {
	l.mu.Lock()
	l.blocks, l.total, l.spare, l.floor = nil, 0, nil, rev
	l.mu.Unlock()
	l.pending, l.bulk = nil, false
}

// at returns the i-th oldest change. Under mu.
func (l *changeLog) at(i int) Change {
	size := l.blockSize()
	return l.blocks[i/size].e[i%size]
}

// ChangesSince appends to dst the changes with after < revision <= through,
// where through is at most the applied index, oldest first, and returns them
// with through. When more than limit changes wait, through stops at a whole
// revision so the answer holds at most limit changes (or every change of
// one revision when that alone exceeds limit); limit <= 0 means no limit.
// complete is false when the log no longer holds every change after after
// (evicted, or after predates the log's start: a restart, a snapshot
// install); then dst is returned as it was and through is the applied index:
// the caller must rescan the state it follows. Safe from any goroutine.
func (m *Machine) ChangesSince(after Revision, limit int, dst []Change) (out []Change, through Revision, complete bool) {
	applied := m.AppliedIndex()
	l := &m.changes
	l.mu.RLock()
	defer l.mu.RUnlock()
	if after < l.floor {
		return dst, applied, false
	}
	if after >= applied {
		return dst, max(after, applied), true
	}
	n := l.total
	i := l.search(after)
	through = applied
	start := len(dst)
	for ; i < n; i++ {
		c := l.at(i)
		if c.Revision > applied {
			break
		}
		if limit > 0 && len(dst)-start >= limit && c.Revision != dst[len(dst)-1].Revision {
			through = dst[len(dst)-1].Revision
			break
		}
		dst = append(dst, c)
	}
	return dst, through, true
}

// search returns the index of the first entry with a revision after rev.
// Under mu.
func (l *changeLog) search(rev Revision) int {
	lo, hi := 0, l.total
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if l.at(mid).Revision <= rev {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// ChangeLogFloor is the revision the change log reaches back to: every change
// after it is kept. Safe from any goroutine.
func (m *Machine) ChangeLogFloor() Revision {
	m.changes.mu.RLock()
	defer m.changes.mu.RUnlock()
	return m.changes.floor
}

// noteItem records a change to inputs of item's figures at loc (empty: every
// location) for channel ch (empty: every channel). Apply goroutine only.
func (st *state) noteItem(item ItemID, ch ChannelID, loc LocationID) {
	st.changes.note(Change{Revision: st.index, Kind: ChangeItem, Item: item, Channel: ch, Location: loc})
}

// noteSKU records a change to sku's mapping. Apply goroutine only.
func (st *state) noteSKU(sku SKU) {
	st.changes.note(Change{Revision: st.index, Kind: ChangeSKU, SKU: sku})
}

// noteChannel records a change to channel ch itself. Apply goroutine only.
func (st *state) noteChannel(ch ChannelID) {
	st.changes.note(Change{Revision: st.index, Kind: ChangeChannel, Channel: ch})
}
