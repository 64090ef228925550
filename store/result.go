package store

import "github.com/stockd/stockd/api/logv1"

// EncodeResult turns a command's answer into its wire form, for a leader to
// send to the follower that forwarded the command. Only refusals (*Rejection)
// can be encoded as Err.
func EncodeResult(r Result) *logv1.CommandResult {
	out := &logv1.CommandResult{Revision: uint64(r.Revision), Count: r.Count}
	if rej, ok := r.Err.(*Rejection); ok {
		out.Rejection = rejectionRecord(rej)
	}
	if r.Reservation != nil {
		out.Reservation = reservationRecord(&reservation{Reservation: *r.Reservation})
	}
	for _, row := range r.Rows {
		out.Rows = append(out.Rows, &logv1.RowResultRecord{Status: uint32(row.Status), Reason: row.Reason,
			Version: row.Version, OnHandBaseUnits: int64(row.OnHand)})
	}
	return out
}

// DecodeResult is the inverse of EncodeResult.
func DecodeResult(c *logv1.CommandResult) Result {
	out := Result{Revision: Revision(c.GetRevision()), Count: c.GetCount()}
	if c.GetRejection() != nil {
		out.Err = rejectionFromRecord(c.GetRejection())
	}
	if c.GetReservation() != nil {
		r := reservationFromRecord(c.GetReservation()).Reservation
		out.Reservation = &r
	}
	for _, row := range c.GetRows() {
		out.Rows = append(out.Rows, RowResult{Status: RowStatus(row.GetStatus()), Reason: row.GetReason(),
			Version: row.GetVersion(), OnHand: Units(row.GetOnHandBaseUnits())})
	}
	return out
}
