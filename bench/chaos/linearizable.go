package chaos

import (
	"fmt"
	"maps"
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
)

// The linearizability model of one SKU at one location (factor 1, no
// buffer), over single-SKU operations: reserve, confirm, release, ERP set
// (versioned) and adjust, and linearizable reads. It encodes I1 at admission
// (a reserve succeeds iff reserved + committed + q <= on_hand), I3 (a
// release or confirm of an id already in that state is answered OK) and the
// versioned ERP count (an older version is ignored).

// linState is the model's state; a step never mutates its input.
type linState struct {
	onHand    int64
	version   uint64
	committed int64
	held      map[string]int64 // reservation id -> units
	done      map[string]byte  // 'c' confirmed, 'r' released
}

func (s linState) reserved() int64 {
	var r int64
	for _, q := range s.held {
		r += q
	}
	return r
}

func (s linState) clone() linState {
	s.held, s.done = maps.Clone(s.held), maps.Clone(s.done)
	return s
}

// linOutput is what the client saw: its outcome, the gRPC code of a refusal
// and, for a read, the figure.
type linOutput struct {
	outcome outcome
	code    codes.Code
	read    skuRead
}

// linModel returns the porcupine model of one SKU starting at onHand with
// version 1, nothing held.
func linModel(onHand int64) porcupine.Model {
	return porcupine.Model{
		Init: func() any {
			return linState{onHand: onHand, version: 1, held: map[string]int64{}, done: map[string]byte{}}
		},
		Step: func(state, input, output any) (bool, any) {
			return linStep(state.(linState), input.(op), output.(linOutput))
		},
		Equal: func(a, b any) bool {
			x, y := a.(linState), b.(linState)
			return x.onHand == y.onHand && x.version == y.version && x.committed == y.committed &&
				maps.Equal(x.held, y.held) && maps.Equal(x.done, y.done)
		},
		Hash: func(state any) uint64 {
			s := state.(linState)
			return uint64(s.onHand)*1_000_003 ^ s.version*7919 ^ uint64(s.committed)*104_729 ^ uint64(len(s.held))
		},
		DescribeOperation: func(input, output any) string {
			o, out := input.(op), output.(linOutput)
			switch o.Kind {
			case opReadLin:
				return fmt.Sprintf("read -> on_hand %d reserved %d committed %d", out.read.OnHand, out.read.Reserved, out.read.Committed)
			case opReserve:
				return fmt.Sprintf("reserve %s %d -> %s", o.ID, o.Lines[0].Qty, out.outcome)
			case opSetStock:
				return fmt.Sprintf("set %d v%d -> %s", o.Value, o.Version, out.outcome)
			case opAdjust:
				return fmt.Sprintf("adjust %+d -> %s", o.Value, out.outcome)
			}
			return fmt.Sprintf("%s %s -> %s", o.Kind, o.ID, out.outcome)
		},
		DescribeState: func(state any) string {
			s := state.(linState)
			return fmt.Sprintf("on_hand %d reserved %d committed %d v%d", s.onHand, s.reserved(), s.committed, s.version)
		},
	}
}

// linStep applies one operation. An unknown outcome takes the effect the
// operation would have had at this point (stockd is deterministic), which
// porcupine may place anywhere after its call, the end included (never
// applied).
func linStep(s linState, o op, out linOutput) (bool, any) {
	unknown := out.outcome == outUnknown
	switch o.Kind {
	case opReadLin:
		return out.read.OnHand == s.onHand && out.read.Reserved == s.reserved() && out.read.Committed == s.committed, s
	case opReserve:
		if _, held := s.held[o.ID]; held || s.done[o.ID] != 0 {
			// A retry of an id already applied gets the first answer and
			// changes nothing (I3). (The model keeps no refused ids: the
			// workload never retries a refused reserve.)
			return unknown || out.outcome == outOK, s
		}
		q := o.Lines[0].Qty
		fits := s.reserved()+s.committed+q <= s.onHand
		switch {
		case unknown && !fits:
			return true, s
		case unknown || (fits && out.outcome == outOK):
			n := s.clone()
			n.held[o.ID] = q
			return true, n
		}
		return !fits && out.outcome == outRefused && out.code == codes.FailedPrecondition, s
	case opExtend:
		// A new deadline, nothing else: it succeeds iff the hold is held
		// (no hold expires within a run).
		_, held := s.held[o.ID]
		if held {
			return unknown || out.outcome == outOK, s
		}
		return unknown || out.outcome == outRefused, s
	case opRelease, opConfirm:
		mark := byte('r')
		if o.Kind == opConfirm {
			mark = 'c'
		}
		q, held := s.held[o.ID]
		switch {
		case held && (unknown || out.outcome == outOK):
			n := s.clone()
			delete(n.held, o.ID)
			n.done[o.ID] = mark
			if mark == 'c' {
				n.committed += q
			}
			return true, n
		case s.done[o.ID] == mark:
			return unknown || out.outcome == outOK, s
		}
		return unknown || out.outcome == outRefused, s
	case opSetStock:
		newer := o.Version > s.version
		switch {
		case newer && (unknown || out.outcome == outOK):
			n := s.clone()
			n.onHand, n.version = o.Value, o.Version
			return true, n
		case !newer:
			return unknown || out.outcome == outRefused, s
		}
		return false, s
	case opAdjust:
		switch out.outcome {
		case outOK, outUnknown:
			n := s.clone()
			n.onHand += o.Value
			return true, n
		}
		return false, s
	}
	return false, s
}

// linResult is the verdict on one SKU's history.
type linResult struct {
	sku    string
	result porcupine.CheckResult
	info   porcupine.LinearizationInfo
	model  porcupine.Model
	ops    int
}

// porcupineOps converts the SKU's single-SKU operations. Unknown outcomes
// return at the end of time; failed reads are left out (no effect).
func porcupineOps(ops []op, sku string) []porcupine.Operation {
	var out []porcupine.Operation
	for _, o := range ops {
		if o.Kind == opReadLocal || len(o.Lines) != 1 && o.Kind != opReadLin {
			continue
		}
		if o.Kind == opReadLin {
			if o.Outcome != outOK || len(o.Reads) != 1 || o.Reads[0].SKU != sku {
				continue
			}
		} else if o.Lines[0].SKU != sku {
			continue
		}
		if o.Outcome == outUnknown && o.Resolved == resolvedNotApplied {
			continue // no effect: the same as linearized after everything
		}
		lo := linOutput{outcome: o.Outcome}
		if o.Outcome == outUnknown && o.Resolved == resolvedApplied {
			lo.outcome = outOK // applied, at an unknown time before the end
		}
		if o.Outcome == outRefused {
			lo.code = codeOf(o.Err)
		}
		if o.Kind == opReadLin {
			lo.read = o.Reads[0]
		}
		ret := o.Return
		if o.Outcome == outUnknown {
			ret = math.MaxInt64
		}
		out = append(out, porcupine.Operation{ClientId: o.Client, Input: o, Call: o.Call, Output: lo, Return: ret})
	}
	return out
}

// codeOf recovers the gRPC code from a recorded error string ("rpc error:
// code = X desc = ..."); errStale counts as FailedPrecondition.
func codeOf(errText string) codes.Code {
	const prefix = "rpc error: code = "
	if !strings.HasPrefix(errText, prefix) {
		return codes.Unknown
	}
	name, _, _ := strings.Cut(strings.TrimPrefix(errText, prefix), " desc = ")
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if c.String() == name {
			return c
		}
	}
	return codes.Unknown
}

// Values of op.Resolved.
const (
	resolvedApplied    = "applied"
	resolvedNotApplied = "not applied"
)

// resolveUnknowns marks each unknown reserve, release and confirm applied or
// not from the final reservations (as every node agrees, checked apart): a
// reserve applied iff the reservation exists (holds never expire in a run
// and the client never touches an unknown one again); a release or confirm
// iff the reservation ended in its state. Fewer open-ended operations keep
// porcupine's search small.
func resolveUnknowns(ops []op, final map[string]resView) {
	for i := range ops {
		o := &ops[i]
		if o.Outcome != outUnknown {
			continue
		}
		v := final[o.ID]
		applied := false
		switch o.Kind {
		case opReserve:
			applied = v.Found
		case opRelease:
			applied = v.State == "RELEASED"
		case opConfirm:
			applied = v.State == "CONFIRMED"
		default:
			continue
		}
		o.Resolved = resolvedNotApplied
		if applied {
			o.Resolved = resolvedApplied
		}
	}
}

// checkLinearizable checks each SKU's history with porcupine (the SKUs in
// parallel), given each SKU's on hand at the start (version 1).
func checkLinearizable(ops []op, skus []string, initial int64, timeout time.Duration) []linResult {
	skus = append([]string(nil), skus...)
	sort.Strings(skus)
	res := make([]linResult, len(skus))
	inParallel(len(skus), func(i int) {
		m := linModel(initial)
		pops := porcupineOps(ops, skus[i])
		r, info := porcupine.CheckOperationsVerbose(m, pops, timeout)
		res[i] = linResult{sku: skus[i], result: r, info: info, model: m, ops: len(pops)}
	})
	return res
}

// inParallel calls f(0) to f(n-1), GOMAXPROCS at a time: a soak checks
// hundreds of histories, each with its own timeout, which must not all
// share the cores at once.
func inParallel(n int, f func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(n, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
