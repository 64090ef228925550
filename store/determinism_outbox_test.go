package store_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// ackCommand is genLog's share of AckOrders. Mostly a run of up to 15
// consecutive seqs, each acked booked (or, one time in three, refused) and done:
// the one that fits the entry's kind applies, the other is rejected, so
// entries get outcomes and finished ones can leave the outbox. The generator
// cannot see which seqs exist: g.acked, the highest seq it acks, grows by
// one per run, and each run starts anywhere below it, so seqs issued after a
// run passed them are acked later. The rest are replays, conflicts and
// malformed acks.
func (g *logGen) ackCommand() *logv1.Command {
	switch k := g.r.IntN(10); {
	case k < 6:
		g.acked++
		var acks []*logv1.OrderAck
		for seq := 1 + uint64(g.r.IntN(int(g.acked))); seq <= g.acked && len(acks) < 30; seq++ {
			if g.r.IntN(3) == 0 {
				acks = append(acks, ackRefused(seq, "refused "+strconv.Itoa(g.r.IntN(3))))
			} else {
				acks = append(acks, ackBooked(seq))
			}
			acks = append(acks, ackDone(seq))
		}
		return ackCmd(acks...)
	case k < 9:
		seq := 1 + uint64(g.r.IntN(int(g.acked)+3))
		a := &logv1.OrderAck{Seq: seq, Outcome: 1 + uint32(g.r.IntN(3))}
		if a.Outcome == uint32(store.OutcomeRefused) {
			a.Reason = "refused " + strconv.Itoa(g.r.IntN(3))
		}
		return ackCmd(a)
	}
	return ackCmd(&logv1.OrderAck{Seq: g.acked, Outcome: uint32(g.r.IntN(2) * 5)}) // malformed: outcome 0 or 5
}

// TestGenLogExercisesTheOutbox guards the generator: the determinism tests
// must see every kind of ack answer, refusals that free units, cancellation
// entries, and finished entries leaving the outbox.
func TestGenLogExercisesTheOutbox(t *testing.T) {
	log := genLog(1, 3000)
	m := store.New(genConfig)
	seen := map[string]int{}
	for i, e := range log {
		results := m.ApplyEntry(store.Revision(i+1), e)
		for j, r := range results {
			acks := e.Commands[j].GetAckOrders()
			if acks == nil {
				continue
			}
			if r.Err != nil {
				seen["ack batch "+sentinelName(r.Err)]++
			}
			for k, row := range r.Rows {
				seen[fmt.Sprintf("ack outcome %d status %d", acks.GetAcks()[k].GetOutcome(), row.Status)]++
			}
		}
		for _, o := range m.Outbox(0, 1000) {
			if o.Kind == store.OutboxCancellation {
				seen["cancellation pending"]++
			}
		}
	}
	kept := 0
	for _, r := range mustRecords(t, m) {
		var rec logv1.SnapshotRecord
		if err := unmarshalRecord(r, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.GetOrder() != nil {
			kept++
		}
	}
	st := m.OutboxStatus()
	t.Logf("ack outcomes: %v; outbox %+v, %d entries kept", seen, st, kept)
	// The log spans about 9 minutes of log time, the retry window is 5.
	if issued := int(st.NextSeq - 1); issued-kept < 10 {
		t.Errorf("input log of seed 1: got %d of %d outbox entries kept, want at least 10 finished and trimmed", kept, issued)
	}
	for _, k := range []string{"ack batch invalid argument", "cancellation pending",
		"ack outcome 1 status 1", "ack outcome 1 status 2", "ack outcome 1 status 3",
		"ack outcome 2 status 1", "ack outcome 2 status 3", "ack outcome 3 status 1", "ack outcome 3 status 2", "ack outcome 3 status 3"} {
		if seen[k] == 0 {
			t.Errorf("input log of seed 1: got outcomes %v, want at least one %q", seen, k)
		}
	}
}
