package store

// OutboxKind says what an outbox entry asks of the ERP.
type OutboxKind uint8

// Outbox kinds; the numbers are persisted in snapshots.
const (
	OutboxOrder        OutboxKind = 1
	OutboxCancellation OutboxKind = 2
)

// OrderOutcome is what the ERP reported for an outbox entry.
type OrderOutcome uint8

// Outcomes; the numbers are persisted in snapshots. 0 is none yet.
const (
	OutcomeBooked  OrderOutcome = 1
	OutcomeRefused OrderOutcome = 2
	OutcomeDone    OrderOutcome = 3
)

// OutboxLine is units of an item at a location in an order, in base units.
type OutboxLine struct {
	Item     ItemID
	Location LocationID
	Quantity Units
	// POLine is set while the units wait for that incoming line.
	POLine string
}

// OutboxEntry is a confirmed order or a cancellation on its way to the ERP.
type OutboxEntry struct {
	Seq           uint64
	Kind          OutboxKind
	Channel       ChannelID
	ReservationID ReservationID
	OrderRef      string
	Lines         []OutboxLine
	CreatedAt     Timestamp
	CancelsSeq    uint64
	Outcome       OrderOutcome
	OutcomeReason string
	Absorbed      bool
	Cancelled     bool
}

// OutboxStatus is the outbox backlog.
type OutboxStatus struct {
	Pending                uint64
	OldestPendingSeq       uint64
	OldestPendingCreatedAt Timestamp
	NextSeq                uint64
	AbsorbedMark           uint64
}

// RejectedRow is one rejected ERP row kept in the dead-letter list.
type RejectedRow struct {
	Revision Revision
	At       Timestamp
	Source   string
	Row      uint32
	Key      string
	Reason   string
}

// RejectedCount counts rejections by reason since the state began.
type RejectedCount struct {
	Reason string
	Count  uint64
}

// Outbox returns up to limit entries with sequence > afterSeq that have no
// outcome yet, in sequence order. Safe from any goroutine.
func (m *Machine) Outbox(afterSeq uint64, limit int) []OutboxEntry {
	return nil // TODO(#5)
}

// Order returns the order entry confirmed by (channel, orderRef), or an
// ErrUnknownOrder rejection. Safe from any goroutine.
func (m *Machine) Order(ch ChannelID, orderRef string) (OutboxEntry, error) {
	return OutboxEntry{}, reject(ErrUnknownOrder, "order_ref", "no such order") // TODO(#5)
}

// OutboxStatus reports the backlog. Safe from any goroutine.
func (m *Machine) OutboxStatus() OutboxStatus {
	return OutboxStatus{} // TODO(#5)
}

// Rejected returns up to limit of the most recent rejected ERP rows, newest
// first, and the counts of all rejections by reason, sorted by reason. Safe
// from any goroutine.
func (m *Machine) Rejected(limit int) ([]RejectedRow, []RejectedCount) {
	return nil, nil // TODO(#5)
}
