package chaos

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
)

// The linearizability model of a connected set of SKUs (one location,
// factor 1, no buffer): multi-line carts, single reserves, release, confirm,
// extend, ERP adjustments and versioned counts, and linearizable single-SKU
// reads. A cart applies fully or not at all: it succeeds iff every line fits
// (reserved + committed + q <= on hand, lines of one SKU summed). Every SKU
// an operation touches is connected to the others it touches; each connected
// set is checked on its own (union-find over the history).

// cartCounter is one SKU's counters in the model.
type cartCounter struct {
	onHand, reserved, committed int64
	version                     uint64
}

// cartState is the model's state; a step never mutates its input.
type cartState struct {
	skus map[string]cartCounter
	res  map[string]byte // reservation id -> 'h' held, 'c' confirmed, 'r' released
}

func (s cartState) clone() cartState {
	return cartState{skus: maps.Clone(s.skus), res: maps.Clone(s.res)}
}

// cartModel returns the model of the SKUs skus, each at onHand, version 1.
func cartModel(skus []string, onHand int64) porcupine.Model {
	return porcupine.Model{
		Init: func() any {
			s := cartState{skus: map[string]cartCounter{}, res: map[string]byte{}}
			for _, sku := range skus {
				s.skus[sku] = cartCounter{onHand: onHand, version: 1}
			}
			return s
		},
		Step: func(state, input, output any) (bool, any) {
			return cartStep(state.(cartState), input.(op), output.(linOutput))
		},
		Equal: func(a, b any) bool {
			x, y := a.(cartState), b.(cartState)
			return maps.Equal(x.skus, y.skus) && maps.Equal(x.res, y.res)
		},
		Hash: func(state any) uint64 {
			s := state.(cartState)
			h := uint64(len(s.res))
			for _, c := range s.skus {
				h = h*1_000_003 ^ uint64(c.onHand)*7919 ^ uint64(c.reserved)*104_729 ^ uint64(c.committed)
			}
			return h
		},
		DescribeOperation: func(input, output any) string {
			o, out := input.(op), output.(linOutput)
			if o.Kind == opReadLin {
				return fmt.Sprintf("read %s -> on_hand %d reserved %d committed %d", out.read.SKU, out.read.OnHand, out.read.Reserved, out.read.Committed)
			}
			return fmt.Sprintf("%s %s %v %+d -> %s", o.Kind, o.ID, o.Lines, o.Value, out.outcome)
		},
		DescribeState: func(state any) string {
			s := state.(cartState)
			keys := slices.Sorted(maps.Keys(s.skus))
			var b strings.Builder
			for _, k := range keys {
				c := s.skus[k]
				fmt.Fprintf(&b, "%s: on_hand %d reserved %d committed %d; ", k, c.onHand, c.reserved, c.committed)
			}
			return b.String()
		},
	}
}

// cartStep applies one operation; an unknown outcome takes the effect the
// operation would have had here (porcupine may also place it after
// everything: never applied).
func cartStep(s cartState, o op, out linOutput) (bool, any) {
	unknown := out.outcome == outUnknown
	ok := out.outcome == outOK
	switch o.Kind {
	case opReadLin:
		c := s.skus[out.read.SKU]
		return out.read.OnHand == c.onHand && out.read.Reserved == c.reserved && out.read.Committed == c.committed, s
	case opReserve:
		if s.res[o.ID] != 0 {
			return unknown || ok, s // a retry gets the first answer (I3)
		}
		want := linesOf(o.Lines)
		fits := true
		for sku, q := range want {
			c := s.skus[sku]
			fits = fits && c.reserved+c.committed+q <= c.onHand
		}
		switch {
		case unknown && !fits:
			return true, s
		case unknown || (fits && ok):
			n := s.clone()
			for sku, q := range want {
				c := n.skus[sku]
				c.reserved += q
				n.skus[sku] = c
			}
			n.res[o.ID] = 'h'
			return true, n
		}
		return !fits && out.outcome == outRefused && out.code == codes.FailedPrecondition, s
	case opRelease, opConfirm:
		mark := byte('r')
		if o.Kind == opConfirm {
			mark = 'c'
		}
		switch st := s.res[o.ID]; {
		case st == 'h' && (unknown || ok):
			n := s.clone()
			for sku, q := range linesOf(o.Lines) {
				c := n.skus[sku]
				c.reserved -= q
				if mark == 'c' {
					c.committed += q
				}
				n.skus[sku] = c
			}
			n.res[o.ID] = mark
			return true, n
		case st == mark:
			return unknown || ok, s
		}
		return unknown || out.outcome == outRefused, s
	case opExtend:
		if s.res[o.ID] == 'h' {
			return unknown || ok, s
		}
		return unknown || out.outcome == outRefused, s
	case opAdjust:
		if !ok && !unknown {
			return false, s
		}
		n := s.clone()
		c := n.skus[o.Lines[0].SKU]
		c.onHand += o.Value
		n.skus[o.Lines[0].SKU] = c
		return true, n
	case opSetStock:
		c := s.skus[o.Lines[0].SKU]
		if o.Version <= c.version {
			return unknown || out.outcome == outRefused, s
		}
		if !ok && !unknown {
			return false, s
		}
		n := s.clone()
		c.onHand, c.version = o.Value, o.Version
		n.skus[o.Lines[0].SKU] = c
		return true, n
	}
	return false, s
}

// skusOf lists the SKUs an operation touches (a read: the one it read).
func skusOf(o op) []string {
	if o.Kind == opReadLin {
		if len(o.Reads) != 1 {
			return nil
		}
		return []string{o.Reads[0].SKU}
	}
	var out []string
	for _, l := range o.Lines {
		out = append(out, l.SKU)
	}
	return out
}

// components groups skus into connected sets: two SKUs are connected when
// one operation of ops touches both (union-find). Operations touching any
// SKU outside skus are left out. Each set is sorted; sets are sorted.
func components(ops []op, skus []string) [][]string {
	parent := map[string]string{}
	for _, s := range skus {
		parent[s] = s
	}
	var find func(string) string
	find = func(s string) string {
		if parent[s] != s {
			parent[s] = find(parent[s])
		}
		return parent[s]
	}
	for _, o := range ops {
		ss := skusOf(o)
		if !inCartSet(ss, parent) {
			continue
		}
		for _, s := range ss[1:] {
			parent[find(s)] = find(ss[0])
		}
	}
	groups := map[string][]string{}
	for _, s := range skus {
		groups[find(s)] = append(groups[find(s)], s)
	}
	var out [][]string
	for _, g := range groups {
		sort.Strings(g)
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

func inCartSet[V any](ss []string, set map[string]V) bool {
	if len(ss) == 0 {
		return false
	}
	for _, s := range ss {
		if _, ok := set[s]; !ok {
			return false
		}
	}
	return true
}

// cartOps converts the operations on the SKUs of one connected set, as
// porcupineOps does for one SKU.
func cartOps(ops []op, set []string) []porcupine.Operation {
	in := map[string]bool{}
	for _, s := range set {
		in[s] = true
	}
	var out []porcupine.Operation
	for _, o := range ops {
		if o.Kind == opReadLocal || !inCartSet(skusOf(o), in) {
			continue
		}
		if o.Kind == opReadLin && o.Outcome != outOK {
			continue
		}
		if o.Outcome == outUnknown && o.Resolved == resolvedNotApplied {
			continue
		}
		lo := linOutput{outcome: o.Outcome}
		if o.Outcome == outUnknown && o.Resolved == resolvedApplied {
			lo.outcome = outOK
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

// checkCartsLinearizable checks each connected set of skus (each SKU at
// initial on hand, version 1) with porcupine, the sets in parallel. A
// result's sku names the set ("a+b+c").
func checkCartsLinearizable(ops []op, skus []string, initial int64, timeout time.Duration) []linResult {
	sets := components(ops, skus)
	res := make([]linResult, len(sets))
	inParallel(len(sets), func(i int) {
		m := cartModel(sets[i], initial)
		pops := cartOps(ops, sets[i])
		r, info := porcupine.CheckOperationsVerbose(m, pops, timeout)
		res[i] = linResult{sku: strings.Join(sets[i], "+"), result: r, info: info, model: m, ops: len(pops)}
	})
	return res
}
