// Package store is stockd's state machine: per-item counters for every
// location, reservations (holds), the order outbox and remembered answers,
// all in memory, changed only by applying log entries.
//
// Machine.Apply is a pure function of (state, entry index, entry time,
// command). It never reads a clock, draws randomness, does I/O or starts a
// goroutine, and nothing that reaches a result or a snapshot depends on map
// iteration order, so every replica that applies the same log reaches the same
// state and answers (DESIGN.md I4). Time enters only through entries, and the
// machine takes max(last applied time, stamp), so time never moves backwards.
//
// Guarantees, by DESIGN.md name:
//   - I1 no oversell at admission: a Reserve line is admitted only while
//     promised + q <= on_hand - buffer at its location; a cart is checked
//     whole before any counter moves. A backorder takes at most what an
//     incoming line has open (quantity - received - backordered), and when
//     the line is received its holds move onto reserved (orders onto
//     committed) at that location, so the receipt is not sold twice.
//   - I3 safe retries: a Reserve answer (a refusal included) is remembered by
//     (channel, reservation id) and replayed for a retry with the same
//     payload; another payload is refused with ErrIdempotencyConflict.
//     Adjustments are remembered by delta id. Answers are pruned in log-time
//     order after Config.RetryWindowNanos or past Config.MaxRecords.
//   - I4 determinism, as above; snapshots are written as a canonical record
//     stream in sorted key order.
//   - I5 monotonic reads: AppliedIndex only grows, and reads run under
//     per-shard locks concurrently with Apply.
//   - I6 one master: on_hand moves only by ERP commands.
//
// The order outbox (outbox.go) carries confirmed orders and cancellations
// to the ERP with increasing sequences. An order's units stay committed
// until the ERP refuses it or the absorbed mark passes it, whichever comes
// first, and leave committed exactly once; committed lives in the counters,
// so trimming finished entries never frees units. Rejected ERP rows are
// kept in a dead-letter list of MaxRejectedRows and counted by field
// (deadletter.go).
//
// Apply runs on one goroutine. Reads (Availability, Reservation, Locations,
// Channels, AppliedIndex, NextDeadline, Outbox, Order, OutboxStatus,
// Rejected, Counters) are safe from any goroutine; Counters and Snapshot
// copy under the apply lock, so Apply waits while they copy.
//
// A hold that ends keeps its lines and request packed in one string for
// the retry window (packed.go): the collector does not scan it, and
// reads, retries and snapshots decode it.
//
// The change log (changes.go) records which inputs of channel figures each
// command changed, for Watch and ListChanges (ChangesSince, ItemSKUs,
// ChannelSKUs, safe from any goroutine). It is derived, bounded and local:
// it reaches no result or snapshot and starts empty after a Restore.
package store
