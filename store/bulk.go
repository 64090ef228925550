package store

import (
	"sync"
	"sync/atomic"
)

// Bulk commits are atomic to readers (issue 5: "channels never see half a
// catalog"). A Backfill commit sets up to a million counters in one entry,
// row by row under per-shard locks, which takes a few hundred milliseconds;
// a read running meanwhile could see one location of an item from the new
// generation and another from the old. bulkGate is a sequence lock around
// such commands: the sequence is odd while one applies. A read notes the
// sequence before it starts, waits while it is odd, and reads again if it
// changed by the end, so what it returns is wholly before or wholly after
// every bulk commit. Ordinary commands do not take the gate: their rows are
// few and each counter is consistent under its shard lock.
type bulkGate struct {
	seq atomic.Uint64
	// mu is held by the applying goroutine for the whole bulk command;
	// readers that see an odd seq wait on it.
	mu sync.RWMutex
}

// bulkApply runs apply, the application of one bulk command, with the gate
// closed. Apply goroutine only.
func (m *Machine) bulkApply(apply func() Result) Result {
	g := &m.bulk
	g.mu.Lock()
	g.seq.Add(1)
	defer func() {
		g.seq.Add(1)
		g.mu.Unlock()
	}()
	return apply()
}

// readBegin waits until no bulk command applies and returns the sequence
// to hand to readDone.
func (m *Machine) readBegin() uint64 {
	g := &m.bulk
	for {
		s := g.seq.Load()
		if s&1 == 0 {
			return s
		}
		g.mu.RLock() // held by the bulk command until it ends
		g.mu.RUnlock()
	}
}

// readDone reports whether no bulk command applied since readBegin returned
// s; if one did, the read must be done again.
func (m *Machine) readDone(s uint64) bool { return m.bulk.seq.Load() == s }

// ReadAtomic runs read so that everything it reads through this machine is
// either before or after each bulk command (a Backfill commit), never half
// of one: read runs again if one applied meanwhile, so it may run more than
// once and must only read. It returns read's last error. A read waits while
// a bulk command applies. Safe from any goroutine; read must not apply.
func (m *Machine) ReadAtomic(read func() error) error {
	for {
		s := m.readBegin()
		err := read()
		if m.readDone(s) {
			return err
		}
	}
}

// Availability fills dst with what channel ch may promise of sku; see
// availability (read.go). It is atomic with respect to bulk commands: it
// waits while one applies.
func (m *Machine) Availability(ch ChannelID, sku SKU, dst *SKUAvailability) error {
	for {
		s := m.readBegin()
		err := m.availability(ch, sku, dst)
		if m.readDone(s) {
			return err
		}
	}
}
