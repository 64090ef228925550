package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// The watch hub (issue 6): one goroutine follows the local state machine's
// change log and turns changed inputs into changed figures, computed once
// per (channel, SKU) for the channels that have watchers and compared with
// the last figure handed out (its baseline, kept as a hash of every field
// but mod_revision). A changed figure goes into the bounded, coalescing
// buffer of every watcher whose filter matches; each watcher's own stream
// handler sends from its buffer, so a watcher that never reads fills only its
// own buffer (then it is marked for a resync and its buffer dropped) and
// never slows the hub, apply, or other watchers. The hub only reads the
// state machine (local memory on any node, followers included).
//
// computeMu orders figures: the hub holds it while it computes a batch and
// hands it out, and a watcher holds it while it reads a chunk of its state
// transfer and drops what its buffer holds for those SKUs, so a figure
// always leaves after every older figure of the same SKU.

// ChangeReader is the change-log side of the local state machine that Watch,
// ListChanges and ListAvailability read; *store.Machine satisfies it. Every
// method is called from many goroutines at once.
type ChangeReader interface {
	ChangesSince(after store.Revision, limit int, dst []store.Change) ([]store.Change, store.Revision, bool)
	ItemSKUs(ch store.ChannelID, item store.ItemID, dst []store.SKU) []store.SKU
	ChannelSKUs(ch store.ChannelID, after store.SKU, limit int) ([]store.SKU, bool, error)
}

// hubBatchChanges bounds the change-log entries the hub reads per round.
const hubBatchChanges = 65536

// skuPage is how many SKUs a catalog scan or a state chunk takes at a time.
const skuPage = 1000

type watchHub struct {
	s       *Server
	changes ChangeReader

	computeMu sync.Mutex

	mu       sync.Mutex
	channels map[store.ChannelID]*hubChannel
	// mark: every change at or before it has been handed out.
	mark store.Revision
	run  *hubRun // nil while no goroutine runs
}

// hubRun is one life of the hub goroutine: it starts with the first watcher
// and ends after the last one leaves (or the server drains).
type hubRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// hubChannel is what the hub keeps per watched channel.
type hubChannel struct {
	watchers map[*watcher]struct{}
	// baseline: hash of the last figure handed out per SKU (hub or
	// registration, under computeMu).
	baseline map[store.SKU]uint64
}

func newWatchHub(s *Server, cr ChangeReader) *watchHub {
	return &watchHub{s: s, changes: cr, channels: make(map[store.ChannelID]*hubChannel)}
}

// register adds w; it builds the channel's baseline when w is its first
// watcher, then prepares w's start (state transfer or replay). It starts
// the hub goroutine if none runs. The caller must call unregister.
func (h *watchHub) register(w *watcher, from store.Revision) error {
	h.computeMu.Lock()
	defer h.computeMu.Unlock()
	h.mu.Lock()
	for h.run != nil && h.run.cancel == nil {
		// A run that is ending (its last watcher left): wait for it, with
		// computeMu free for its last round.
		r := h.run
		h.mu.Unlock()
		h.computeMu.Unlock()
		<-r.done
		h.computeMu.Lock()
		h.mu.Lock()
	}
	if h.run == nil {
		ctx, cancel := context.WithCancel(context.Background())
		r := &hubRun{cancel: cancel, done: make(chan struct{})}
		h.run = r
		h.mark = h.s.reader.AppliedIndex()
		go h.loop(ctx, r)
	}
	hc := h.channels[w.ch]
	if hc == nil {
		hc = &hubChannel{watchers: make(map[*watcher]struct{})}
		h.channels[w.ch] = hc
	}
	hc.watchers[w] = struct{}{}
	mark := h.mark
	h.mu.Unlock()
	if hc.baseline == nil {
		b, err := h.scanChannel(w.ch, nil)
		if err != nil {
			return err
		}
		hc.baseline = b
	}
	if from == 0 {
		w.startTransfer(stockdv1.ResyncReason_RESYNC_REASON_INITIAL, mark)
		return nil
	}
	return h.replay(w, from)
}

// unregister removes w; the last watcher out stops the hub goroutine.
func (h *watchHub) unregister(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hc := h.channels[w.ch]; hc != nil {
		delete(hc.watchers, w)
		if len(hc.watchers) == 0 {
			delete(h.channels, w.ch)
		}
	}
	if len(h.channels) == 0 && h.run != nil && h.run.cancel != nil {
		h.run.cancel()
		h.run.cancel = nil // ending: register waits for done
	}
}

// scanChannel hashes the current figure of every SKU the channel sells, and
// of the extra SKUs; under computeMu.
func (h *watchHub) scanChannel(ch store.ChannelID, extra map[store.SKU]struct{}) (map[store.SKU]uint64, error) {
	out := make(map[store.SKU]uint64)
	var a store.SKUAvailability
	all, _, err := h.changes.ChannelSKUs(ch, "", 0)
	if err != nil {
		return nil, err
	}
	for _, sku := range all {
		if err := h.s.reader.Availability(ch, sku, &a); err != nil {
			return nil, err
		}
		out[sku] = figureHash(&a)
	}
	for sku := range extra {
		if _, ok := out[sku]; ok {
			continue
		}
		if err := h.s.reader.Availability(ch, sku, &a); err != nil {
			return nil, err
		}
		out[sku] = figureHash(&a)
	}
	return out, nil
}

// replay queues for w, resuming after from, the current figure (or the
// removal, see recompute) of every matching SKU changed after from, in order
// of last change; or a state transfer when the log does not reach back to
// from, a change of the channel or a bulk command is among them, or they
// exceed w's buffer. Under computeMu.
func (h *watchHub) replay(w *watcher, from store.Revision) error {
	changes, through, complete := h.changes.ChangesSince(from, 0, nil)
	if !complete {
		w.startTransfer(stockdv1.ResyncReason_RESYNC_REASON_TOO_OLD, through)
		return nil
	}
	c, err := h.channel(w.ch)
	if err != nil {
		return err
	}
	last := make(map[store.SKU]store.Revision)
	var skus []store.SKU
	for _, ch := range changes {
		if !ch.Visible(c) {
			continue
		}
		switch ch.Kind {
		case store.ChangeAll, store.ChangeChannel:
			w.startTransfer(stockdv1.ResyncReason_RESYNC_REASON_CHANNEL_CHANGED, through)
			return nil
		case store.ChangeSKU:
			skus = append(skus[:0], ch.SKU)
		case store.ChangeItem:
			skus = h.changes.ItemSKUs(w.ch, ch.Item, skus[:0])
		}
		for _, sku := range skus {
			if w.matches(sku) {
				last[sku] = ch.Revision
			}
		}
	}
	if len(last) > w.limit {
		w.startTransfer(stockdv1.ResyncReason_RESYNC_REASON_SLOW_CONSUMER, through)
		return nil
	}
	order := make([]store.SKU, 0, len(last))
	for sku := range last {
		order = append(order, sku)
	}
	slices.SortFunc(order, func(a, b store.SKU) int { return cmp.Or(cmp.Compare(last[a], last[b]), cmp.Compare(a, b)) })
	events := make([]*stockdv1.WatchEvent, 0, len(order))
	for _, sku := range order {
		var a store.SKUAvailability
		err := h.s.reader.Availability(w.ch, sku, &a)
		switch {
		case isUnknownSKU(err):
			// Its mapping was deleted after from (a client that never held
			// it ignores the removal).
			events = append(events, removedEvent(sku, last[sku]))
			continue
		case err != nil:
			return err
		}
		events = append(events, &stockdv1.WatchEvent{
			Availability: skuAvailabilityToProto(&stockdv1.SkuAvailability{}, &a), Revision: uint64(last[sku])})
	}
	// A change applied while the hub's baseline was read may be in the
	// baseline but not in changes: the hub hands w every figure changed up to
	// the next revision whether or not it moved.
	w.resume(events, through, through+1)
	return nil
}

// channel returns the channel's current definition.
func (h *watchHub) channel(id store.ChannelID) (*store.Channel, error) {
	for _, c := range h.s.reader.Channels() {
		if c.ID == id {
			return &c, nil
		}
	}
	return nil, &store.Rejection{Kind: store.ErrUnknownChannel, Field: "channel", Reason: "unknown channel " + strconv.Quote(string(id))}
}

// loop follows the change log until ctx ends. It recovers its own panic:
// every watcher then ends with INTERNAL.
func (h *watchHub) loop(ctx context.Context, r *hubRun) {
	defer close(r.done)
	defer func() {
		h.mu.Lock()
		if h.run == r {
			h.run = nil
		}
		h.mu.Unlock()
	}()
	defer func() {
		if p := recover(); p != nil {
			h.s.log.LogAttrs(ctx, slog.LevelError, "panic in watch hub",
				slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
			h.endAll(errInternalWatch)
		}
	}()
	var buf []store.Change
	for {
		h.mu.Lock()
		mark := h.mark
		h.mu.Unlock()
		if err := h.s.proposer.WaitApplied(ctx, mark+1); err != nil {
			if ctx.Err() == nil {
				h.s.log.LogAttrs(ctx, slog.LevelDebug, "watch hub stops", slog.Any("error", err))
				h.endAll(err)
			}
			return
		}
		buf = h.round(mark, buf[:0])
	}
}

// errInternalWatch ends every watch stream after the hub failed.
var errInternalWatch = errors.New("watch hub failed")

// endAll ends every watcher with err.
func (h *watchHub) endAll(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, hc := range h.channels {
		for w := range hc.watchers {
			w.end(err)
		}
	}
}

// round hands out the figures changed after mark, up to what the change log
// holds now. It returns buf for reuse.
func (h *watchHub) round(mark store.Revision, buf []store.Change) []store.Change {
	changes, through, complete := h.changes.ChangesSince(mark, hubBatchChanges, buf)
	h.computeMu.Lock()
	defer h.computeMu.Unlock()
	h.mu.Lock()
	watched := make(map[store.ChannelID]*hubChannel, len(h.channels))
	for id, hc := range h.channels {
		watched[id] = hc
	}
	h.mu.Unlock()
	defs := make(map[store.ChannelID]*store.Channel, len(watched))
	for _, c := range h.s.reader.Channels() {
		if watched[c.ID] != nil {
			defs[c.ID] = &c
		}
	}
	rescan := make(map[store.ChannelID]bool)
	perChannel := make(map[store.ChannelID]map[store.SKU]store.Revision)
	var skus []store.SKU
	for _, c := range changes {
		if c.Kind == store.ChangeAll {
			for id := range watched {
				rescan[id] = true
			}
			continue
		}
		for id, def := range defs {
			if rescan[id] || !c.Visible(def) {
				continue
			}
			switch c.Kind {
			case store.ChangeChannel:
				rescan[id] = true
				continue
			case store.ChangeSKU:
				skus = append(skus[:0], c.SKU)
			case store.ChangeItem:
				skus = h.changes.ItemSKUs(id, c.Item, skus[:0])
			}
			m := perChannel[id]
			if m == nil {
				m = make(map[store.SKU]store.Revision)
				perChannel[id] = m
			}
			for _, sku := range skus {
				m[sku] = c.Revision
			}
		}
	}
	for id, hc := range watched {
		if defs[id] == nil {
			// Deleted: its watchers end.
			h.mu.Lock()
			for w := range hc.watchers {
				w.end(fmt.Errorf("channel %q: %w", id, store.ErrUnknownChannel))
			}
			h.mu.Unlock()
			continue
		}
		var events []*hubEvent
		if !complete || rescan[id] {
			events = h.rescan(id, hc, through)
		} else {
			events = h.recompute(id, hc, perChannel[id], false)
		}
		slices.SortFunc(events, func(a, b *hubEvent) int {
			return cmp.Or(cmp.Compare(a.ev.GetRevision(), b.ev.GetRevision()), cmp.Compare(a.sku, b.sku))
		})
		h.mu.Lock()
		for w := range hc.watchers {
			w.deliver(events, through)
		}
		h.mu.Unlock()
	}
	h.mu.Lock()
	h.mark = max(h.mark, through)
	h.mu.Unlock()
	return changes[:0]
}

// removedEvent says sku no longer resolves for the channel as of rev.
func removedEvent(sku store.SKU, rev store.Revision) *stockdv1.WatchEvent {
	return &stockdv1.WatchEvent{Availability: &stockdv1.SkuAvailability{Sku: string(sku)}, Revision: uint64(rev), Removed: true}
}

// hubEvent is a figure handed out; moved is false for a figure that did not
// move (only watchers that asked for every figure up to its revision take it).
type hubEvent struct {
	sku   store.SKU
	ev    *stockdv1.WatchEvent
	moved bool
}

// recompute computes each affected SKU's figure and returns those that
// moved against the baseline (and those that did not, for forced delivery).
// A SKU that no longer resolves for the channel (its mapping was deleted and
// the channel requires one) leaves the baseline and gets a removed event,
// counted as moved: a watcher may hold a figure of it that the baseline
// never saw (a state transfer reads ahead of the hub), so after a change the
// removal goes to every matching watcher; one that never held the SKU
// ignores it. Only a SKU the baseline did not hold counts as not moved
// (rescan sends those to no one). Under computeMu.
func (h *watchHub) recompute(id store.ChannelID, hc *hubChannel, skus map[store.SKU]store.Revision, rescan bool) []*hubEvent {
	events := make([]*hubEvent, 0, len(skus))
	var a store.SKUAvailability
	for sku, rev := range skus {
		err := h.s.reader.Availability(id, sku, &a)
		switch {
		case isUnknownSKU(err):
			_, held := hc.baseline[sku]
			delete(hc.baseline, sku)
			events = append(events, &hubEvent{sku: sku, moved: held || !rescan, ev: removedEvent(sku, rev)})
			continue
		case err != nil:
			continue // the channel was deleted meanwhile: round ends its watchers
		}
		hash := figureHash(&a)
		old, ok := hc.baseline[sku]
		moved := !ok || old != hash
		hc.baseline[sku] = hash
		events = append(events, &hubEvent{sku: sku, moved: moved, ev: &stockdv1.WatchEvent{
			Availability: skuAvailabilityToProto(&stockdv1.SkuAvailability{}, &a), Revision: uint64(rev)}})
	}
	return events
}

// rescan recomputes every figure of the channel (the log lost track, or the
// channel changed): every SKU of its catalog, of its baseline and named by a
// watcher. Under computeMu.
func (h *watchHub) rescan(id store.ChannelID, hc *hubChannel, rev store.Revision) []*hubEvent {
	skus := make(map[store.SKU]store.Revision)
	for sku := range hc.baseline {
		skus[sku] = rev
	}
	h.mu.Lock()
	for w := range hc.watchers {
		for sku := range w.skus {
			skus[sku] = rev
		}
	}
	h.mu.Unlock()
	all, _, _ := h.changes.ChannelSKUs(id, "", 0) // an unknown channel ends its watchers in round
	for _, sku := range all {
		skus[sku] = rev
	}
	events := h.recompute(id, hc, skus, true)
	return slices.DeleteFunc(events, func(e *hubEvent) bool { return !e.moved })
}

// figureHash is a 64-bit FNV-1a hash of every field of a figure but
// mod_revision and the SKU: two figures of one SKU with equal hashes say the
// same thing (a collision, 2^-64 per change, would hide one event).
func figureHash(a *store.SKUAvailability) uint64 {
	h := fnvHash(14695981039346656037)
	h.str(string(a.Item))
	h.num(int64(a.Available))
	h.num(int64(a.Factor))
	if a.Known {
		h.num(1)
	} else {
		h.num(0)
	}
	h.num(int64(len(a.Locations)))
	for _, l := range a.Locations {
		h.str(string(l.Location))
		h.num(int64(l.Available))
		h.num(int64(l.OnHand))
		h.num(int64(l.Reserved))
		h.num(int64(l.Committed))
		h.num(int64(l.Buffer))
		h.num(int64(l.Oversold))
	}
	h.num(int64(len(a.Incoming)))
	for _, in := range a.Incoming {
		h.str(in.POLine)
		h.str(string(in.Location))
		h.num(int64(in.ETA))
		h.num(int64(in.Available))
	}
	return uint64(h)
}

// fnvHash is FNV-1a, fed without allocating.
type fnvHash uint64

func (h *fnvHash) byte(b byte) { *h = (*h ^ fnvHash(b)) * 1099511628211 }

func (h *fnvHash) num(v int64) {
	for i := 0; i < 64; i += 8 {
		h.byte(byte(v >> i))
	}
}

func (h *fnvHash) str(s string) {
	h.num(int64(len(s)))
	for i := 0; i < len(s); i++ {
		h.byte(s[i])
	}
}

// matchesFilter reports whether sku passes a watch filter.
func matchesFilter(skus map[store.SKU]struct{}, prefix string, sku store.SKU) bool {
	if skus != nil {
		_, ok := skus[sku]
		return ok
	}
	return strings.HasPrefix(string(sku), prefix)
}
