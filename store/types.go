package store

// ItemID names an ERP item, the unit of stock counted in base units.
type ItemID string

// LocationID names a declared stock location (a warehouse, a store).
type LocationID string

// SKU is a channel's stock-keeping unit; until pack sizes exist a SKU is its
// own item with factor 1.
type SKU string

// ChannelID names a selling channel (storefront, rep app, marketplace).
type ChannelID string

// ReservationID is a caller-chosen hold id, unique within its channel.
type ReservationID string

// Units is a signed quantity; its unit (base or SKU units) is named where it is used.
type Units int64

// Revision is the index of the applied log entry a state or answer reflects.
type Revision uint64

// Timestamp is a leader-stamped time in Unix nanoseconds.
type Timestamp int64

// FeatureVersion is the highest log-entry feature version this build applies.
// An entry that needs a newer one stops the replica rather than diverge.
const FeatureVersion uint32 = 1

// Limits on input, enforced by Validate.
const (
	// MaxIDBytes bounds every id: items, locations, channels, SKUs, reservations, order refs.
	MaxIDBytes = 256
	// MaxLines bounds the lines of one Reserve.
	MaxLines = 1000
	// MaxRows bounds the rows of one ERP batch.
	MaxRows = 10000
	// MaxChannelLocations bounds the locations a channel sees.
	MaxChannelLocations = 64
	// MinHoldTTLNanos and MaxHoldTTLNanos bound a hold's TTL; DefaultHoldTTLNanos applies when none is given.
	MinHoldTTLNanos     int64 = 1e9
	MaxHoldTTLNanos     int64 = 24 * 3600e9
	DefaultHoldTTLNanos int64 = 15 * 60e9
)

// ReservationState is where a reservation is in its life.
type ReservationState uint8

// Reservation states; the numbers are persisted in snapshots.
const (
	StateHeld      ReservationState = 1
	StateConfirmed ReservationState = 2
	StateReleased  ReservationState = 3
	StateExpired   ReservationState = 4
)

// String names the state in lower case.
func (s ReservationState) String() string {
	switch s {
	case StateHeld:
		return "held"
	case StateConfirmed:
		return "confirmed"
	case StateReleased:
		return "released"
	case StateExpired:
		return "expired"
	}
	return "unknown"
}

// Allocation is part of a line held at one location, in base units.
type Allocation struct {
	Location LocationID
	Quantity Units
}

// ReservationLine is one line of a reservation. Quantity is in SKU units;
// Factor (base units per SKU unit) is fixed at reserve time.
type ReservationLine struct {
	SKU         SKU
	Item        ItemID
	Quantity    Units
	Factor      Units
	Allocations []Allocation
}

// Reservation is a hold and its fate. Values returned by Machine are copies.
type Reservation struct {
	Channel   ChannelID
	ID        ReservationID
	State     ReservationState
	Lines     []ReservationLine
	CreatedAt Timestamp
	ExpiresAt Timestamp
	OrderRef  string
	OrderSeq  uint64
}

// RowStatus is the outcome of one ERP row.
type RowStatus uint8

// Row outcomes; the numbers are persisted in snapshots.
const (
	RowApplied      RowStatus = 1
	RowIgnoredStale RowStatus = 2
	RowRejected     RowStatus = 3
)

// RowResult answers one ERP row: its status, a reason naming the field when
// rejected or ignored, and the counter's version and on_hand after the row.
type RowResult struct {
	Status  RowStatus
	Reason  string
	Version uint64
	OnHand  Units
}

// Result is the deterministic answer to one applied command. Err is a
// business refusal (a *Rejection that unwraps to a sentinel): the entry was
// applied, the state unchanged by this command. Revision is the entry index.
type Result struct {
	Revision    Revision
	Err         error
	Reservation *Reservation
	Rows        []RowResult
}

// LocationAvailability is one location's figure for one channel, in base
// units except Available, which is in SKU units.
type LocationAvailability struct {
	Location  LocationID
	Available Units
	OnHand    Units
	Reserved  Units
	Committed Units
	Buffer    Units
	// Oversold is promised beyond on_hand (DESIGN.md I1 exposure), never negative.
	Oversold Units
}

// SKUAvailability is a SKU's figure for one channel: the total in SKU units
// and one entry per channel location in priority order.
type SKUAvailability struct {
	SKU       SKU
	Item      ItemID
	Available Units
	// Known is false when the ERP never sent a count for the item.
	Known     bool
	Locations []LocationAvailability
}

// Location is a declared stock location.
type Location struct {
	ID   LocationID
	Name string
}

// Channel is a selling channel: the locations it sees in priority order and
// its default safety buffer in base units.
type Channel struct {
	ID            ChannelID
	Locations     []LocationID
	DefaultBuffer Units
}

// Node is a cluster member's record: its addresses and the highest log
// feature version its build applies. Raft's configuration says who votes.
type Node struct {
	ID             string
	RaftAddr       string
	GRPCAddr       string
	FeatureVersion uint32
}

// Config holds the machine's parameters. They shape results, so every replica
// of a cluster must use the same values.
type Config struct {
	// RetryWindowNanos is how long, in log time, answers are remembered for
	// retries after they become final; default one hour.
	RetryWindowNanos int64
	// MaxRecords caps the remembered final answers; the oldest go first. Default 1,000,000.
	MaxRecords int
}

// DefaultConfig returns the defaults named on Config's fields.
func DefaultConfig() Config {
	return Config{RetryWindowNanos: 3600e9, MaxRecords: 1_000_000}
}
