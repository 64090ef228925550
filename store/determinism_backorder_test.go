package store_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// backorderCommand is genLog's share of incoming supply and backorders: ERP
// incoming rows that add lines, receive them (partly), slip or cut them, with
// stale, replayed and malformed rows among them; carts that on-hand alone
// often cannot fill, with lines allowing a backorder; and confirms and
// releases of those carts. The carts join g.recent, so the lifecycle share
// extends, partly releases, confirms and cancels them too.
func (g *logGen) backorderCommand() *logv1.Command {
	if g.incoming == nil {
		g.incoming = map[string]*logv1.IncomingLine{}
	}
	switch k := g.r.IntN(10); {
	case k < 4:
		var lines []*logv1.ReserveLine
		for range 1 + g.r.IntN(2) {
			l := line("i"+strconv.Itoa(g.r.IntN(4)), 10+int64(g.r.IntN(35)))
			l.AllowBackorder = g.r.IntN(4) > 0
			if g.r.IntN(8) == 0 {
				l.Location = g.pick(genLocations)
			}
			lines = append(lines, l)
		}
		ch, id := g.pick(genChannels), "b"+strconv.Itoa(g.r.IntN(100)) // ids of their own: fewer conflicts with other carts
		g.recent = append(g.recent[max(0, len(g.recent)-7):], [2]string{ch, id})
		g.carts = append(g.carts[max(0, len(g.carts)-3):], [2]string{ch, id})
		return reserve(ch, id, g.pickTTL(0, 5*time.Second, 30*time.Second, 2*time.Minute), lines...)
	case k < 7:
		var rows []*logv1.IncomingLine
		for range 1 + g.r.IntN(2) {
			rows = append(rows, g.incomingRow())
		}
		return setIncomingCmd(rows...)
	case k < 9 && len(g.carts) > 0:
		cart := g.carts[g.r.IntN(len(g.carts))]
		g.lastConfirmed = cart // the lifecycle share cancels it now and then
		return confirm(cart[0], cart[1], "o"+strconv.Itoa(g.r.IntN(3)))
	case len(g.carts) > 0:
		cart := g.carts[g.r.IntN(len(g.carts))]
		return release(cart[0], cart[1])
	}
	return tickCmd()
}

func (g *logGen) pickTTL(ttls ...time.Duration) time.Duration { return ttls[g.r.IntN(len(ttls))] }

// incomingRow is the next row of one of eight po lines (po k carries item
// i(k mod 4) at location l(k mod 5)): mostly a newer version with a receipt,
// a slipped ETA or a new quantity; now and then stale, replayed or
// malformed.
func (g *logGen) incomingRow() *logv1.IncomingLine {
	k := g.r.IntN(8)
	po := "po" + strconv.Itoa(k)
	last := g.incoming[po]
	if last == nil {
		last = &logv1.IncomingLine{PoLineId: po, Item: "i" + strconv.Itoa(k%4), Location: genLocations[k%5],
			QuantityBaseUnits: int64(30 + g.r.IntN(60)), EtaUnixNanos: g.clock + int64(1+g.r.IntN(5))*int64(day)}
	}
	next := &logv1.IncomingLine{PoLineId: po, Item: last.Item, Location: last.Location, QuantityBaseUnits: last.QuantityBaseUnits,
		ReceivedBaseUnits: last.ReceivedBaseUnits, EtaUnixNanos: last.EtaUnixNanos, Version: last.Version + 1}
	switch g.r.IntN(10) {
	case 0, 1, 2:
		next.ReceivedBaseUnits = min(next.QuantityBaseUnits, next.ReceivedBaseUnits+int64(g.r.IntN(12)))
	case 3, 4:
		next.EtaUnixNanos += int64(g.r.IntN(5)-2) * int64(day)
	case 5, 6:
		next.QuantityBaseUnits = next.ReceivedBaseUnits + int64(g.r.IntN(80)) // a top-up, or a cut below what waits: rejected
	case 7:
		next.Version = last.Version // a replay, or the same version with other figures
	case 8:
		next.Version = max(last.Version, 2) - 1 // stale
	default:
		next.ReceivedBaseUnits = next.QuantityBaseUnits + 1 // malformed: rejected, the line unchanged
		return next
	}
	if next.Version > last.Version {
		g.incoming[po] = next
	}
	return next
}

// TestGenLogExercisesBackorders guards the generator: the determinism tests
// must see backorders held, confirmed, released or expired and refused,
// receipts that move waiters onto on-hand, and SetIncoming rows applied,
// ignored as stale and rejected.
func TestGenLogExercisesBackorders(t *testing.T) {
	log := genLog(1, 3000)
	m := store.New(genConfig)
	seen := map[string]int{}
	for i, e := range log {
		before := m.Incoming("")
		results := m.ApplyEntry(store.Revision(i+1), e)
		for j, r := range results {
			c := e.Commands[j]
			if rows := c.GetSetIncoming(); rows != nil {
				for _, row := range r.Rows {
					seen[fmt.Sprintf("incoming row status %d", row.Status)]++
				}
			}
			if c.GetReserve() != nil && wantsBackorder(c.GetReserve()) && r.Err != nil {
				seen["backorder cart refused: "+sentinelName(r.Err)]++
			}
			if r.Reservation == nil {
				continue
			}
			for _, l := range r.Reservation.Lines {
				for _, a := range l.Allocations {
					if a.POLine != "" {
						seen["backorder "+r.Reservation.State.String()]++
					}
				}
			}
		}
		if i%10 == 0 {
			for _, ch := range genChannels {
				page, _ := m.Reservations(store.ReservationQuery{Channel: store.ChannelID(ch), State: store.StateExpired, Limit: 1000})
				for _, r := range page {
					for _, l := range r.Lines {
						for _, a := range l.Allocations {
							if a.POLine != "" {
								seen["backorder expired"]++
							}
						}
					}
				}
			}
		}
		after := m.Incoming("")
		for _, b := range before {
			for _, a := range after {
				if a.POLine == b.POLine && a.Received > b.Received && a.Backordered < b.Backordered {
					seen["receipt moved waiters"]++
				}
			}
		}
	}
	t.Logf("backorder outcomes: %v", seen)
	for _, k := range []string{"backorder held", "backorder confirmed", "backorder released", "backorder expired",
		"backorder cart refused: insufficient stock", "receipt moved waiters",
		"incoming row status 1", "incoming row status 2", "incoming row status 3"} {
		if seen[k] == 0 {
			t.Errorf("input log of seed 1: got outcomes %v, want at least one %q", seen, k)
		}
	}
}

func wantsBackorder(c *logv1.Reserve) bool {
	for _, l := range c.GetLines() {
		if l.GetAllowBackorder() {
			return true
		}
	}
	return false
}
