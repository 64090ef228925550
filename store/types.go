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
const FeatureVersion uint32 = 3

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
	StateCancelled ReservationState = 5
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
	case StateCancelled:
		return "cancelled"
	}
	return "unknown"
}

// Allocation is part of a line held at one location, in base units.
type Allocation struct {
	Location LocationID
	Quantity Units
	// POLine is set for a backorder: the incoming line the units wait for.
	POLine string
	// PromisedAt is the incoming line's current ETA for a backorder (filled
	// in answers and reads; 0 otherwise).
	PromisedAt Timestamp
}

// ReservationLine is one line of a reservation. Quantity is in SKU units;
// Factor (base units per SKU unit) is fixed at reserve time.
type ReservationLine struct {
	SKU         SKU
	Item        ItemID
	Quantity    Units
	Factor      Units
	Allocations []Allocation
	// PromisedAt is the latest ETA of the line's backorder allocations, 0 when
	// everything is held from on-hand (filled in answers and reads).
	PromisedAt Timestamp
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
	// Count is ReleaseAll's number of holds released.
	Count uint32
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
	// Factor is the SKU's pack factor (base units per SKU unit).
	Factor Units
	// ModRevision is the last revision that changed any input of this figure
	// for this channel: counters at its locations, buffer rules of the item,
	// the channel (or its location group), the SKU mapping.
	ModRevision Revision
	// Incoming is supply on its way to the channel's locations, ETA then
	// po line order, only lines with something left to take.
	Incoming []IncomingAvailability
}

// IncomingAvailability is what a backorder may still take from one incoming
// line, in whole SKU units.
type IncomingAvailability struct {
	POLine    string
	Location  LocationID
	ETA       Timestamp
	Available Units
}

// SKUMapping maps a channel SKU to an ERP item with a pack factor.
type SKUMapping struct {
	SKU    SKU
	Item   ItemID
	Factor Units
}

// LocationGroup is a named, ordered set of locations channels may see.
type LocationGroup struct {
	ID        string
	Locations []LocationID
}

// BufferRule is one SetBuffer rule; an empty Channel or Location is a wildcard.
type BufferRule struct {
	Item     ItemID
	Channel  ChannelID
	Location LocationID
	Units    Units
}

// IncomingLine is a purchase-order line on its way, as the ERP last sent it,
// plus the units backorders hold on it. Quantities in base units.
type IncomingLine struct {
	POLine      string
	Item        ItemID
	Location    LocationID
	Quantity    Units
	Received    Units
	ETA         Timestamp
	Version     uint64
	Backordered Units
}

// ReservationQuery selects reservations for Machine.Reservations.
type ReservationQuery struct {
	Channel ChannelID
	// State 0 means every state.
	State ReservationState
	// ExpiringWithinNanos > 0 keeps only live holds whose deadline is within
	// this span of the machine's log time.
	ExpiringWithinNanos int64
	// After: only ids sorted after this one (paging).
	After ReservationID
	// Limit caps the page, 1 to 1,000.
	Limit int
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
	// LocationGroup, when set, names the group whose locations the channel
	// sees (Locations then holds the group's current locations in reads).
	LocationGroup string
	// RequireSKUMapping makes an unmapped SKU ErrUnknownSKU for this channel.
	RequireSKUMapping bool
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
	// ChangeLogEntries bounds the in-memory change log Watch and ListChanges
	// read (changes.go); default DefaultChangeLogEntries. It is not
	// replicated state: replicas may differ in it.
	ChangeLogEntries int
}

// DefaultConfig returns the defaults named on Config's fields.
func DefaultConfig() Config {
	return Config{RetryWindowNanos: 3600e9, MaxRecords: 1_000_000}
}
