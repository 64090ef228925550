package chaos

import (
	"encoding/json"
	"os"
	"sort"
	"sync"
)

// opKind names an operation of the workload.
type opKind string

const (
	opReserve   opKind = "reserve"    // one or more lines (a cart when more)
	opConfirm   opKind = "confirm"    // a held reservation becomes an order
	opRelease   opKind = "release"    // a held reservation gives its units back
	opSetStock  opKind = "set-stock"  // ERP absolute count with a version
	opAdjust    opKind = "adjust"     // ERP delta with a delta id
	opReadLin   opKind = "read-lin"   // GetAvailability, linearizable
	opReadLocal opKind = "read-local" // GetAvailability from the node's memory
	opExtend    opKind = "extend"     // a held reservation's TTL extended (its own extend id)
)

// outcome is how an operation ended, as the client knows it.
type outcome string

const (
	outOK      outcome = "ok"      // acknowledged as done (row applied)
	outRefused outcome = "refused" // a definite refusal (no stock, stale version, not held)
	outUnknown outcome = "unknown" // indeterminate after every retry: may or may not apply
	outFailed  outcome = "failed"  // a read that got no answer (no effect to model)
)

// skuRead is one SKU's figure at the channel's only location, as read.
type skuRead struct {
	SKU       string `json:"sku"`
	OnHand    int64  `json:"on_hand"`
	Reserved  int64  `json:"reserved"`
	Committed int64  `json:"committed"`
	Oversold  int64  `json:"oversold"`
	Available int64  `json:"available"`
	Known     bool   `json:"known"`
}

// line is one reserve line: SKU and quantity (SKU units, factor 1).
type line struct {
	SKU string `json:"sku"`
	Qty int64  `json:"qty"`
}

// op is one client operation, from its first call to its last answer,
// retries included (they carry the same id).
type op struct {
	Client   int       `json:"client"`
	Kind     opKind    `json:"kind"`
	Node     int       `json:"node"` // index of the node that gave the last answer
	ID       string    `json:"id,omitempty"`
	Lines    []line    `json:"lines,omitempty"`
	Version  uint64    `json:"version,omitempty"`
	Value    int64     `json:"value,omitempty"`   // set-stock on hand, adjust delta
	MinRev   uint64    `json:"min_rev,omitempty"` // local read's min_revision
	Call     int64     `json:"call"`              // ns since the run began
	Return   int64     `json:"return"`            // ns since the run began
	Outcome  outcome   `json:"outcome"`
	Err      string    `json:"err,omitempty"`
	Revision uint64    `json:"revision,omitempty"`
	Attempts int       `json:"attempts"`
	Reads    []skuRead `json:"reads,omitempty"`
	// Answer identifies what an acknowledged reserve answered, for
	// checkRetryAnswers: its hold's created_at (Unix ns), which a retry
	// answered with the first answer repeats. Empty when not recorded.
	Answer string `json:"answer,omitempty"`
	// Resolved says, for an unknown reserve, release or confirm, whether the
	// final state shows it applied ("applied", "not applied"); empty when
	// not known.
	Resolved string `json:"resolved,omitempty"`
}

// history is the record of a run; safe for concurrent use.
type history struct {
	mu  sync.Mutex
	ops []op
}

func (h *history) add(o op) {
	h.mu.Lock()
	h.ops = append(h.ops, o)
	h.mu.Unlock()
}

// snapshot returns the operations sorted by call time.
func (h *history) snapshot() []op {
	h.mu.Lock()
	out := append([]op(nil), h.ops...)
	h.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Call < out[j].Call })
	return out
}

// writeHistory saves ops as JSON, for a failed run's artifacts.
func writeHistory(path string, ops []op) error {
	b, err := json.MarshalIndent(ops, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
