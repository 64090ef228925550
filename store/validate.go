package store

import (
	"strconv"

	"github.com/stockd/stockd/api/logv1"
)

// Validate checks a command's shape without looking at state: ids present and
// at most MaxIDBytes, quantities positive, counts within limits, TTL in range.
// Handlers call it before proposing, so malformed input never reaches the
// log; Apply repeats it. The error is a *Rejection wrapping ErrInvalid whose
// Field is the request's proto field path. ERP rows are checked one by one in
// Apply instead, so a bad row never sinks its neighbours.
func Validate(cmd *logv1.Command) error {
	if r := validate(cmd); r != nil {
		return r
	}
	return nil
}

func validate(cmd *logv1.Command) *Rejection {
	switch k := cmd.GetKind().(type) {
	case *logv1.Command_Reserve:
		return validateReserve(k.Reserve)
	case *logv1.Command_Confirm:
		return validateConfirm(k.Confirm)
	case *logv1.Command_Release:
		return validateRelease(k.Release)
	case *logv1.Command_SetStock:
		return checkSetStock(k.SetStock)
	case *logv1.Command_AdjustStock:
		return checkRows(len(k.AdjustStock.GetRows()))
	case *logv1.Command_PutLocation:
		return validatePutLocation(k.PutLocation)
	case *logv1.Command_PutChannel:
		return validatePutChannel(k.PutChannel)
	case *logv1.Command_SetBuffer:
		return validateSetBuffer(k.SetBuffer)
	case *logv1.Command_PutNode:
		return validatePutNode(k.PutNode)
	case *logv1.Command_RemoveNode:
		return checkID("node_id", k.RemoveNode.GetId())
	case *logv1.Command_Extend:
		return validateExtend(k.Extend)
	case *logv1.Command_CancelOrder:
		return validateCancelOrder(k.CancelOrder)
	case *logv1.Command_ReleaseAll:
		return validateReleaseAll(k.ReleaseAll)
	case *logv1.Command_SetIncoming:
		return checkIncomingLines(len(k.SetIncoming.GetLines()))
	case *logv1.Command_PutSku:
		return validatePutSku(k.PutSku)
	case *logv1.Command_DeleteSku:
		return validateDeleteSku(k.DeleteSku)
	case *logv1.Command_PutLocationGroup:
		return validatePutLocationGroup(k.PutLocationGroup)
	case *logv1.Command_DeleteLocationGroup:
		return checkID("id", k.DeleteLocationGroup.GetId())
	case *logv1.Command_DeleteLocation:
		return checkID("id", k.DeleteLocation.GetId())
	case *logv1.Command_DeleteChannel:
		return checkID("id", k.DeleteChannel.GetId())
	case *logv1.Command_AckOrders:
		return validateAckOrders(k.AckOrders)
	case *logv1.Command_BackfillChunk:
		return validateBackfillChunk(k.BackfillChunk) // backfill.go
	case *logv1.Command_BackfillCommit:
		return validateBackfillCommit(k.BackfillCommit)
	case *logv1.Command_Tick:
		return nil
	case nil:
		return invalid("command", "empty command")
	}
	return nil
}

func validateConfirm(c *logv1.Confirm) *Rejection {
	return firstOf(checkID("channel", c.GetChannel()), checkID("reservation_id", c.GetReservationId()),
		checkID("order_ref", c.GetOrderRef()))
}

// validateRelease checks a whole release, or a partial one (with lines):
// then release_id is required and every quantity > 0; whether a line index
// exists and holds that much is decided in Apply.
func validateRelease(c *logv1.Release) *Rejection {
	if r := firstOf(checkID("channel", c.GetChannel()), checkID("reservation_id", c.GetReservationId())); r != nil {
		return r
	}
	n := len(c.GetLines())
	if n == 0 {
		return checkText("release_id", c.GetReleaseId())
	}
	if r := checkID("release_id", c.GetReleaseId()); r != nil {
		return r
	}
	if n > MaxLines {
		return invalid("lines", "at most "+strconv.Itoa(MaxLines)+" lines, got "+strconv.Itoa(n))
	}
	for i, l := range c.GetLines() {
		if q := l.GetQuantitySkuUnits(); q <= 0 {
			return invalid(indexed("lines", i, "quantity"), "must be > 0, got "+strconv.FormatInt(q, 10))
		}
	}
	return nil
}

func validateExtend(c *logv1.Extend) *Rejection {
	if r := firstOf(checkID("channel", c.GetChannel()), checkID("reservation_id", c.GetReservationId()),
		checkID("extend_id", c.GetExtendId())); r != nil {
		return r
	}
	if ttl := c.GetTtlNanos(); ttl < MinHoldTTLNanos || ttl > MaxHoldTTLNanos {
		return invalid("ttl", "must be between 1s and 24h, got "+strconv.FormatInt(ttl, 10)+"ns")
	}
	return nil
}

func validateCancelOrder(c *logv1.CancelOrder) *Rejection {
	return firstOf(checkID("channel", c.GetChannel()), checkID("reservation_id", c.GetReservationId()))
}

// validateAckOrders checks 1 to MaxRows acks, each with an outcome of 1
// (booked), 2 (refused) or 3 (done) and a reason of at most MaxIDBytes bytes
// of text; whether a seq exists and takes that outcome is decided per ack in
// Apply.
func validateAckOrders(c *logv1.AckOrders) *Rejection {
	n := len(c.GetAcks())
	if n == 0 {
		return invalid("acks", "at least one ack is required")
	}
	if n > MaxRows {
		return invalid("acks", "at most "+strconv.Itoa(MaxRows)+" acks, got "+strconv.Itoa(n))
	}
	for i, a := range c.GetAcks() {
		if o := a.GetOutcome(); o < uint32(OutcomeBooked) || o > uint32(OutcomeDone) {
			return invalid(indexed("acks", i, "outcome"), "must be 1 (booked), 2 (refused) or 3 (done), got "+strconv.FormatUint(uint64(o), 10))
		}
		if r := checkText(indexed("acks", i, "reason"), a.GetReason()); r != nil {
			return r
		}
	}
	return nil
}

func validateReleaseAll(c *logv1.ReleaseAll) *Rejection {
	return firstOf(checkID("channel", c.GetChannel()), checkID("release_all_id", c.GetReleaseAllId()))
}

func validatePutLocation(c *logv1.PutLocation) *Rejection {
	return firstOf(checkID("location.id", c.GetId()), checkText("location.name", c.GetName()))
}

func validateSetBuffer(c *logv1.SetBuffer) *Rejection {
	r := firstOf(checkID("item", c.GetItem()), checkText("channel", c.GetChannel()), checkText("location", c.GetLocation()))
	if r == nil && c.GetBufferBaseUnits() < 0 {
		r = invalid("buffer_base_units", "must be >= 0")
	}
	return r
}

func validatePutNode(c *logv1.PutNode) *Rejection {
	r := firstOf(checkID("node_id", c.GetId()), checkID("raft_addr", c.GetRaftAddr()), checkID("grpc_addr", c.GetGrpcAddr()))
	if r == nil && c.GetFeatureVersion() == 0 {
		r = invalid("feature_version", "must be >= 1")
	}
	return r
}

func validateReserve(c *logv1.Reserve) *Rejection {
	if r := firstOf(checkID("channel", c.GetChannel()), checkID("reservation_id", c.GetReservationId())); r != nil {
		return r
	}
	n := len(c.GetLines())
	if n == 0 {
		return invalid("lines", "at least one line is required")
	}
	if n > MaxLines {
		return invalid("lines", "at most "+strconv.Itoa(MaxLines)+" lines, got "+strconv.Itoa(n))
	}
	for i, l := range c.GetLines() {
		if r := checkID(indexed("lines", i, "sku"), l.GetSku()); r != nil {
			return r
		}
		if l.GetQuantitySkuUnits() <= 0 {
			return invalid(indexed("lines", i, "quantity"), "must be > 0, got "+strconv.FormatInt(l.GetQuantitySkuUnits(), 10))
		}
		if r := checkText(indexed("lines", i, "location"), l.GetLocation()); r != nil {
			return r
		}
	}
	if ttl := c.GetTtlNanos(); ttl != 0 && (ttl < MinHoldTTLNanos || ttl > MaxHoldTTLNanos) {
		return invalid("ttl", "must be between 1s and 24h, got "+strconv.FormatInt(ttl, 10)+"ns")
	}
	return nil
}

func validatePutChannel(c *logv1.PutChannel) *Rejection {
	if r := checkID("channel.id", c.GetId()); r != nil {
		return r
	}
	// Exactly one of locations and location_group (catalog.go).
	if r := checkText("channel.location_group", c.GetLocationGroup()); r != nil {
		return r
	}
	if c.GetLocationGroup() != "" && len(c.GetLocations()) > 0 {
		return invalid("channel.location_group", "give locations or a location_group, not both")
	}
	if c.GetLocationGroup() == "" {
		if r := checkLocationList("channel.locations", c.GetLocations()); r != nil {
			return r
		}
	}
	if c.GetDefaultBufferBaseUnits() < 0 {
		return invalid("channel.default_buffer_base_units", "must be >= 0")
	}
	return nil
}

// checkSetStock allows a batch of no rows when it carries only an absorbed mark.
func checkSetStock(c *logv1.SetStock) *Rejection {
	if len(c.GetRows()) == 0 && c.GetAbsorbedMark() > 0 {
		return nil
	}
	return checkRows(len(c.GetRows()))
}

func checkRows(n int) *Rejection {
	if n == 0 {
		return invalid("rows", "at least one row is required")
	}
	if n > MaxRows {
		return invalid("rows", "at most "+strconv.Itoa(MaxRows)+" rows, got "+strconv.Itoa(n))
	}
	return nil
}

// checkID requires 1 to MaxIDBytes bytes without control characters.
func checkID(field, s string) *Rejection {
	if s == "" {
		return invalid(field, "must not be empty")
	}
	return checkText(field, s)
}

// validID is checkID's verdict without a Rejection (nothing allocated).
func validID(s string) bool {
	if s == "" || len(s) > MaxIDBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// checkText allows empty, else at most MaxIDBytes bytes without control characters.
func checkText(field, s string) *Rejection {
	if len(s) > MaxIDBytes {
		return invalid(field, "at most "+strconv.Itoa(MaxIDBytes)+" bytes, got "+strconv.Itoa(len(s)))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return invalid(field, "must not contain control characters")
		}
	}
	return nil
}

func firstOf(rs ...*Rejection) *Rejection {
	for _, r := range rs {
		if r != nil {
			return r
		}
	}
	return nil
}

// CommandFeature is the log feature version a command needs: a leader
// proposes it only once every voter's build applies that version (DESIGN.md,
// rolling upgrades). The issue 4 command kinds (put_sku to set_incoming),
// ack_orders and the issue 4 fields of older kinds need version 2;
// set_stock's same_version_stale needs 3; the rest version 1.
func CommandFeature(cmd *logv1.Command) uint32 {
	switch k := cmd.GetKind().(type) {
	case *logv1.Command_PutSku, *logv1.Command_DeleteSku, *logv1.Command_PutLocationGroup,
		*logv1.Command_DeleteLocationGroup, *logv1.Command_DeleteLocation, *logv1.Command_DeleteChannel,
		*logv1.Command_Extend, *logv1.Command_CancelOrder, *logv1.Command_ReleaseAll, *logv1.Command_SetIncoming,
		*logv1.Command_AckOrders, *logv1.Command_BackfillChunk, *logv1.Command_BackfillCommit:
		return 2
	case *logv1.Command_Reserve:
		for _, l := range k.Reserve.GetLines() {
			if l.GetExpectedModRevision() != 0 || l.GetAllowBackorder() {
				return 2
			}
		}
	case *logv1.Command_Release:
		if len(k.Release.GetLines()) > 0 || k.Release.GetReleaseId() != "" {
			return 2
		}
	case *logv1.Command_SetStock:
		if k.SetStock.GetSameVersionStale() {
			return 3
		}
	case *logv1.Command_PutChannel:
		if k.PutChannel.GetLocationGroup() != "" || k.PutChannel.GetRequireSkuMapping() {
			return 2
		}
	}
	return 1
}
