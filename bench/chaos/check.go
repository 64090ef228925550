package chaos

import (
	"fmt"
	"maps"
	"sort"
	"strings"
)

// Checkers over a recorded history and the cluster's final state. Each
// returns the violations it found, one sentence each; none means it passed.

// checkReads is I1 at every read: every figure is self-consistent (the
// shortfall is exposed as oversold, never hidden or negative) and, for SKUs
// whose on hand the ERP never lowers (noLowering), nothing is promised
// beyond on hand.
func checkReads(ops []op, noLowering func(sku string) bool) []string {
	var v []string
	for _, o := range ops {
		if o.Outcome != outOK {
			continue
		}
		for _, rd := range o.Reads {
			v = append(v, checkFigure(fmt.Sprintf("%s by client %d on node%d at revision %d", o.Kind, o.Client, o.Node+1, o.Revision), rd, noLowering)...)
		}
	}
	return v
}

// checkFigure checks one SKU's figure (buffer 0, factor 1).
func checkFigure(where string, rd skuRead, noLowering func(sku string) bool) []string {
	var v []string
	promised := rd.Reserved + rd.Committed
	if rd.Reserved < 0 || rd.Committed < 0 || rd.Available < 0 || rd.Oversold < 0 {
		v = append(v, fmt.Sprintf("I1: %s: %s has a negative figure %+v", where, rd.SKU, rd))
	}
	if want := max(0, rd.OnHand-promised); rd.Available != want {
		v = append(v, fmt.Sprintf("I1: %s: %s available %d, want max(0, on_hand %d - promised %d) = %d", where, rd.SKU, rd.Available, rd.OnHand, promised, want))
	}
	if want := max(0, promised-max(0, rd.OnHand)); rd.Oversold != want {
		v = append(v, fmt.Sprintf("I1: %s: %s oversold %d, want max(0, promised %d - on_hand %d) = %d", where, rd.SKU, rd.Oversold, promised, rd.OnHand, want))
	}
	if noLowering(rd.SKU) && promised > rd.OnHand {
		v = append(v, fmt.Sprintf("I1 oversell: %s: %s promised %d (reserved %d + committed %d) > on_hand %d", where, rd.SKU, promised, rd.Reserved, rd.Committed, rd.OnHand))
	}
	return v
}

// checkMonotonic is I5 for local reads: per client and node, in the client's
// order, the revision never goes back, and each read reflects at least the
// min_revision it asked for (the client's last acknowledged write: read
// your writes on any node).
func checkMonotonic(ops []op) []string {
	var v []string
	type key struct{ client, node int }
	last := map[key]op{}
	for _, o := range ops { // sorted by call; a client's calls are sequential
		if o.Kind != opReadLocal || o.Outcome != outOK {
			continue
		}
		if o.Revision < o.MinRev {
			v = append(v, fmt.Sprintf("I5: client %d read node%d at revision %d, below its min_revision %d", o.Client, o.Node+1, o.Revision, o.MinRev))
		}
		k := key{o.Client, o.Node}
		if p, ok := last[k]; ok && o.Revision < p.Revision {
			v = append(v, fmt.Sprintf("I5: client %d read node%d at revision %d after revision %d", o.Client, o.Node+1, o.Revision, p.Revision))
		}
		last[k] = o
	}
	return v
}

// resView is one reservation as one node reports it at the end.
type resView struct {
	Found bool
	State string // HELD, CONFIRMED, RELEASED, ... (the enum name without prefix)
	Lines map[string]int64
}

// expectation is what the history says a reservation must look like.
type expectation struct {
	id       string
	lines    map[string]int64
	states   []string // acceptable states; empty with absent: must not exist
	mayBeAbs bool     // it may be absent (never applied)
	why      string
}

func linesOf(ls []line) map[string]int64 {
	m := map[string]int64{}
	for _, l := range ls {
		m[l.SKU] += l.Qty
	}
	return m
}

// expectations derives each reservation's acceptable final states: an
// acknowledged reserve exists with its lines (I2), HELD unless a later
// release or confirm was acknowledged (then exactly that) or unknown (then
// either); a refused reserve never became a hold (I3: a retry never turns
// into a late success); an unknown one exists at most once, any state.
func expectations(ops []op) []expectation {
	byID := map[string]*expectation{}
	var order []string
	for _, o := range ops {
		switch o.Kind {
		case opReserve:
			if e := byID[o.ID]; e != nil {
				// A call with an id already seen is a retry: the first
				// answer stands (I3), and checkRetryAnswers judges its own.
				if o.Outcome == outOK && e.mayBeAbs && len(e.states) == 1 && e.states[0] == "HELD" {
					e.mayBeAbs, e.why = false, "reserve acknowledged on a retry"
				}
				continue
			}
			e := &expectation{id: o.ID, lines: linesOf(o.Lines)}
			switch o.Outcome {
			case outOK:
				e.states, e.why = []string{"HELD"}, "reserve acknowledged"
			case outRefused:
				e.mayBeAbs, e.states, e.why = true, []string{"REFUSED"}, "reserve refused ("+o.Err+")"
			default:
				e.mayBeAbs, e.states, e.why = true, []string{"HELD"}, "reserve unknown"
			}
			byID[o.ID] = e
			order = append(order, o.ID)
		case opRelease, opConfirm:
			e := byID[o.ID]
			if e == nil {
				continue
			}
			st := "RELEASED"
			if o.Kind == opConfirm {
				st = "CONFIRMED"
			}
			switch o.Outcome {
			case outOK:
				e.states, e.why = []string{st}, e.why+", "+string(o.Kind)+" acknowledged"
			case outUnknown:
				e.states, e.why = append(e.states, st), e.why+", "+string(o.Kind)+" unknown"
			default:
				e.why += ", " + string(o.Kind) + " refused"
			}
		}
	}
	out := make([]expectation, 0, len(order))
	for _, id := range order {
		out = append(out, *byID[id])
	}
	return out
}

// checkAcks is I2 and I3 on every node: final[i] is node i's view of every
// reservation id in the history (by GetReservation at the final revision).
func checkAcks(ops []op, final []map[string]resView) []string {
	var v []string
	for _, e := range expectations(ops) {
		for i, views := range final {
			got := views[e.id]
			switch {
			case !got.Found && e.mayBeAbs:
			case !got.Found:
				v = append(v, fmt.Sprintf("I2 lost ack: node%d has no reservation %s (%s)", i+1, e.id, e.why))
			case len(e.states) == 1 && e.states[0] == "REFUSED":
				if got.State == "HELD" || got.State == "CONFIRMED" {
					v = append(v, fmt.Sprintf("I3: node%d has reservation %s %s after the client was refused (%s)", i+1, e.id, got.State, e.why))
				}
			case !maps.Equal(got.Lines, e.lines):
				v = append(v, fmt.Sprintf("I2: node%d reservation %s has lines %v, want %v (%s)", i+1, e.id, got.Lines, e.lines, e.why))
			case !contains(e.states, got.State):
				v = append(v, fmt.Sprintf("I2: node%d reservation %s is %s, want %s (%s)", i+1, e.id, got.State, strings.Join(e.states, " or "), e.why))
			}
		}
	}
	return v
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// memberView is one member's line of a Status with digests.
type memberView struct {
	ID      string
	Applied uint64
	Digest  string
}

// checkDigests is I4: members that applied the same index hold the same
// state digest; settled reports whether every member reached one index (the
// caller polls until it does).
func checkDigests(ms []memberView) (settled bool, violations []string) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].ID < ms[j].ID })
	byIndex := map[uint64]memberView{}
	settled = len(ms) > 0
	for _, m := range ms {
		if m.Applied != ms[0].Applied || m.Digest == "" {
			settled = false
		}
		if m.Digest == "" {
			continue
		}
		if p, ok := byIndex[m.Applied]; ok && p.Digest != m.Digest {
			violations = append(violations, fmt.Sprintf("I4: %s and %s applied index %d with digests %s and %s", p.ID, m.ID, m.Applied, p.Digest, m.Digest))
		}
		byIndex[m.Applied] = m
	}
	return settled, violations
}

// checkFinalFigures is I1 and I4 at the end: every node's figure of every SKU
// is self-consistent and the nodes agree (final[i] maps SKU to node i's
// figure at the final revision).
func checkFinalFigures(final []map[string]skuRead, noLowering func(string) bool) []string {
	var v []string
	for i, figs := range final {
		skus := make([]string, 0, len(figs))
		for s := range figs {
			skus = append(skus, s)
		}
		sort.Strings(skus)
		for _, s := range skus {
			v = append(v, checkFigure(fmt.Sprintf("final read on node%d", i+1), figs[s], noLowering)...)
			if i > 0 && figs[s] != final[0][s] {
				v = append(v, fmt.Sprintf("I4: final %s on node%d is %+v, on node1 %+v", s, i+1, figs[s], final[0][s]))
			}
		}
	}
	return v
}

// checkUnexpected reports definite errors no correct run produces: a read
// refused, or a refusal of a kind the workload never provokes.
func checkUnexpected(ops []op) []string {
	var v []string
	for _, o := range ops {
		if o.Outcome != outRefused {
			continue
		}
		switch {
		case o.Kind == opReadLin || o.Kind == opReadLocal:
			v = append(v, fmt.Sprintf("client %d %s on node%d failed: %s", o.Client, o.Kind, o.Node+1, o.Err))
		case o.Kind == opRelease || o.Kind == opConfirm || o.Kind == opExtend:
			v = append(v, fmt.Sprintf("client %d %s of its held reservation %s refused: %s", o.Client, o.Kind, o.ID, o.Err))
		case o.Kind == opAdjust:
			v = append(v, fmt.Sprintf("client %d adjust %s refused: %s", o.Client, o.ID, o.Err))
		case o.Kind == opReserve && codeOf(o.Err).String() != "FailedPrecondition":
			v = append(v, fmt.Sprintf("client %d reserve %s refused unexpectedly: %s", o.Client, o.ID, o.Err))
		}
	}
	return v
}

// checkRetryAnswers is I3 for the client: every call of one reservation id
// that got a definite answer got the first one. A refusal stays a refusal
// of the same code (a retry never turns into a late success), and an
// acknowledgement names the same hold (ops with an Answer: its created_at,
// so a hold created again shows). Calls are taken in call order.
func checkRetryAnswers(ops []op) []string {
	var v []string
	first := map[string]op{}
	answer := func(o op) string {
		if o.Outcome == outRefused {
			return "refused " + codeOf(o.Err).String()
		}
		return "ok " + o.Answer
	}
	for _, o := range ops {
		if o.Kind != opReserve || (o.Outcome != outOK && o.Outcome != outRefused) {
			continue
		}
		p, seen := first[o.ID]
		if !seen {
			first[o.ID] = o
			continue
		}
		if o.Outcome == outOK && p.Outcome == outOK && (o.Answer == "" || p.Answer == "") {
			continue // nothing recorded to compare
		}
		if answer(o) != answer(p) {
			v = append(v, fmt.Sprintf("I3: client %d retry of reserve %s on node%d answered %q, the first call answered %q", o.Client, o.ID, o.Node+1, answer(o), answer(p)))
		}
	}
	return v
}

// checkAppliedOnce is I3 in the state: on every node, each SKU's reserved
// units are exactly the sum of its HELD reservations' lines (factor 1, one
// location), so no reserve was applied twice (a hold taken again leaves
// units reserved that no hold accounts for) and none was lost. figs[i] and
// res[i] are node i's final figures and reservations, read at one revision.
func checkAppliedOnce(figs []map[string]skuRead, res []map[string]resView) []string {
	var v []string
	for i := range figs {
		held := map[string]int64{}
		for _, r := range res[i] {
			if r.State != "HELD" {
				continue
			}
			for sku, q := range r.Lines {
				held[sku] += q
			}
		}
		skus := make([]string, 0, len(figs[i]))
		for s := range figs[i] {
			skus = append(skus, s)
		}
		sort.Strings(skus)
		for _, s := range skus {
			if got := figs[i][s].Reserved; got != held[s] {
				v = append(v, fmt.Sprintf("I3 applied twice or lost: node%d %s has %d units reserved, its HELD reservations hold %d", i+1, s, got, held[s]))
			}
		}
	}
	return v
}
