package server

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// Inventory.Watch: one stream per watcher; its handler goroutine is the
// watcher's sender (see watchhub.go for the hub that fills its buffer).

// Defaults of the watch settings in Config.
const (
	DefaultWatchBufferSKUs       = 10_000
	DefaultWatchProgressInterval = time.Second
)

// maxEventsPerMessage bounds the events of one WatchResponse.
const maxEventsPerMessage = 1000

var errWatchUnsupported = status.Error(codes.Unimplemented, "this node's reader keeps no change log")

// watcher is one Watch stream's filter and buffer.
type watcher struct {
	ch store.ChannelID
	// skus is the explicit filter (nil: prefix, "" for every SKU); never
	// changed after the watcher is registered.
	skus   map[store.SKU]struct{}
	prefix string
	limit  int // distinct SKUs the buffer holds before a resync

	mu sync.Mutex
	// queue holds the waiting events in the order they leave (revision
	// order of their last change); pos is each waiting SKU's index in it
	// (a coalesced event leaves a nil behind).
	queue []*stockdv1.WatchEvent
	pos   map[store.SKU]int
	// mark: the hub has handed over every change at or before it.
	mark store.Revision
	// force: the hub hands over every figure it computes for a change at or
	// before it, moved or not (a resume, see replay).
	force store.Revision
	// transfer, when set, is due: a state transfer for that reason.
	transfer stockdv1.ResyncReason
	// unread: the SKUs of a state transfer being sent that its chunks have
	// yet to read, sorted; their events are not queued (the chunk reads them
	// afresh), so a long transfer does not fill the buffer.
	unread []store.SKU
	err    error
	wake   chan struct{} // capacity 1
}

func (w *watcher) matches(sku store.SKU) bool { return matchesFilter(w.skus, w.prefix, sku) }

func (w *watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// startTransfer makes a state transfer due, dropping what waits.
func (w *watcher) startTransfer(reason stockdv1.ResyncReason, mark store.Revision) {
	w.mu.Lock()
	w.transfer = reason
	w.mark = max(w.mark, mark)
	clear(w.pos)
	clear(w.queue)
	w.queue = w.queue[:0]
	w.mu.Unlock()
	w.signal()
}

// resume queues a replay's events.
func (w *watcher) resume(events []*stockdv1.WatchEvent, mark, force store.Revision) {
	w.mu.Lock()
	for _, e := range events {
		w.enqueue(store.SKU(e.GetAvailability().GetSku()), e)
	}
	w.mark = max(w.mark, mark)
	w.force = force
	w.mu.Unlock()
	w.signal()
}

// deliver queues the hub's events that match, coalescing per SKU, and
// moves the mark; past the buffer's limit it drops them all and makes a
// state transfer due. It wakes the sender only when something is to be sent
// (a moved mark alone waits for the next heartbeat). Called by the hub under
// its mu; never blocks.
func (w *watcher) deliver(events []*hubEvent, mark store.Revision) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return
	}
	w.mark = max(w.mark, mark)
	if w.transfer != 0 {
		return // the transfer reads every figure afresh
	}
	queued := false
	for _, e := range events {
		if (!e.moved && store.Revision(e.ev.GetRevision()) > w.force) || !w.matches(e.sku) {
			continue
		}
		if _, unread := slices.BinarySearch(w.unread, e.sku); unread {
			continue
		}
		w.enqueue(e.sku, e.ev)
		queued = true
		if len(w.pos) > w.limit {
			w.transfer = stockdv1.ResyncReason_RESYNC_REASON_SLOW_CONSUMER
			clear(w.pos)
			clear(w.queue)
			w.queue = w.queue[:0]
			break
		}
	}
	if queued {
		w.signal()
	}
}

// enqueue puts ev last, replacing the SKU's waiting event. Under mu.
func (w *watcher) enqueue(sku store.SKU, ev *stockdv1.WatchEvent) {
	if i, ok := w.pos[sku]; ok {
		w.queue[i] = nil
	}
	w.pos[sku] = len(w.queue)
	w.queue = append(w.queue, ev)
	if len(w.queue) > 2*len(w.pos)+64 {
		w.compact()
	}
}

// compact drops the holes coalescing left. Under mu.
func (w *watcher) compact() {
	n := 0
	for _, e := range w.queue {
		if e != nil {
			w.queue[n] = e
			w.pos[store.SKU(e.GetAvailability().GetSku())] = n
			n++
		}
	}
	clear(w.queue[n:])
	w.queue = w.queue[:n]
}

// drop removes sku's waiting event, if any. Under mu.
func (w *watcher) drop(sku store.SKU) {
	if i, ok := w.pos[sku]; ok {
		w.queue[i] = nil
		delete(w.pos, sku)
	}
}

// take removes up to limit waiting events, oldest first, and returns them
// with the mark a message carrying them may claim, or the reason of a due
// state transfer.
func (w *watcher) take(limit int) ([]*stockdv1.WatchEvent, store.Revision, stockdv1.ResyncReason, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return nil, 0, 0, w.err
	}
	if w.transfer != 0 {
		return nil, 0, w.transfer, nil
	}
	var out []*stockdv1.WatchEvent
	i := 0
	for ; i < len(w.queue) && len(out) < limit; i++ {
		if e := w.queue[i]; e != nil {
			out = append(out, e)
			delete(w.pos, store.SKU(e.GetAvailability().GetSku()))
		}
	}
	mark := w.mark
	for j := i; j < len(w.queue); j++ {
		if e := w.queue[j]; e != nil {
			// Changes from this one's on still wait.
			mark = min(mark, store.Revision(e.GetRevision())-1)
			break
		}
	}
	n := copy(w.queue, w.queue[i:])
	clear(w.queue[n:])
	w.queue = w.queue[:n]
	for j, e := range w.queue {
		if e != nil {
			w.pos[store.SKU(e.GetAvailability().GetSku())] = j
		}
	}
	return out, mark, 0, nil
}

// end ends the stream with err (the channel was deleted, the hub failed).
func (w *watcher) end(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
	w.signal()
}

// Watch streams the channel's figures of the matching SKUs: a state
// transfer first (or, with from_revision, what changed after it), then the
// new figure of each SKU whose figure moves (or its removal, when a change
// leaves it unresolved for the channel), coalesced per SKU, in revision
// order. It ends when the client goes away (its own code), the channel is
// deleted (NOT_FOUND) or the server drains (UNAVAILABLE: reconnect with the
// last revision, to any node).
func (v *inventory) Watch(req *stockdv1.WatchRequest, stream stockdv1.Inventory_WatchServer) error {
	s := v.s
	ctx := stream.Context()
	if err := checkWatchRequest(req); err != nil {
		return s.status(ctx, err)
	}
	if s.watch == nil {
		return errWatchUnsupported
	}
	// A resume on a node that has not applied from_revision yet (another
	// node served the stream before) waits for it as min_revision does.
	if err := s.awaitCaughtUp(ctx); err != nil {
		return s.status(ctx, err)
	}
	wctx, cancel := context.WithTimeout(ctx, s.readWait)
	err := s.waitRevision(ctx, wctx, "from_revision: revision", store.Revision(req.GetFromRevision()))
	cancel()
	if err != nil {
		return s.status(ctx, err)
	}
	w := &watcher{
		ch: store.ChannelID(req.GetChannel()), prefix: req.GetSkuPrefix(), limit: s.watchBuffer,
		pos: make(map[store.SKU]int), wake: make(chan struct{}, 1),
	}
	var explicit []store.SKU
	if len(req.GetSkus()) > 0 {
		w.skus = make(map[store.SKU]struct{}, len(req.GetSkus()))
		for _, sku := range req.GetSkus() {
			if _, dup := w.skus[store.SKU(sku)]; !dup {
				explicit = append(explicit, store.SKU(sku))
			}
			w.skus[store.SKU(sku)] = struct{}{}
		}
		slices.Sort(explicit)
	}
	// An unknown channel, or a SKU the channel cannot resolve, is NOT_FOUND
	// as in GetAvailability.
	var a store.SKUAvailability
	if _, err := s.watch.channel(w.ch); err != nil {
		return s.status(ctx, err)
	}
	for i, sku := range req.GetSkus() {
		if err := s.reader.Availability(w.ch, store.SKU(sku), &a); err != nil {
			return s.status(ctx, atSKU(err, i))
		}
	}
	defer s.watch.unregister(w)
	if err := s.watch.register(w, store.Revision(req.GetFromRevision())); err != nil {
		return s.status(ctx, err)
	}
	tick := time.NewTicker(s.watchProgress)
	defer tick.Stop()
	var sent store.Revision
	for {
		heartbeat := false
		select {
		case <-ctx.Done():
			return s.status(ctx, ctx.Err())
		case <-s.draining:
			return s.status(ctx, errDraining)
		case <-w.wake:
		case <-tick.C:
			heartbeat = true
		}
		for {
			events, mark, transfer, err := w.take(maxEventsPerMessage)
			if err != nil {
				return s.status(ctx, err)
			}
			if transfer != 0 {
				if sent, err = s.transfer(stream, w, explicit, transfer); err != nil {
					return err
				}
				continue
			}
			mark = max(mark, sent)
			if len(events) == 0 && (!heartbeat || mark == sent) {
				break
			}
			if err := stream.Send(&stockdv1.WatchResponse{Events: events, Revision: uint64(mark)}); err != nil {
				return s.streamStatus(ctx, err)
			}
			sent, heartbeat = mark, false
		}
	}
}

// transfer sends the current figure of every SKU w matches, in SKU order,
// skuPage at a time; the first message says resync, the last carries the
// mark. Each chunk is read under the hub's computeMu and drops what w's
// buffer holds for its SKUs (older figures), so what the hub queues later
// is newer. It returns the mark sent.
func (s *Server) transfer(stream stockdv1.Inventory_WatchServer, w *watcher, explicit []store.SKU, reason stockdv1.ResyncReason) (store.Revision, error) {
	ctx := stream.Context()
	skus := explicit
	if w.skus == nil {
		all, _, err := s.watch.changes.ChannelSKUs(w.ch, "", 0)
		if err != nil {
			return 0, s.status(ctx, err)
		}
		for _, sku := range all {
			if strings.HasPrefix(string(sku), w.prefix) {
				skus = append(skus, sku)
			}
		}
	}
	h := s.watch
	var mark store.Revision
	first := true
	for start := 0; first || start < len(skus); start += skuPage {
		chunk := skus[start:min(start+skuPage, len(skus))]
		msg := &stockdv1.WatchResponse{Events: make([]*stockdv1.WatchEvent, 0, len(chunk))}
		h.computeMu.Lock()
		for _, sku := range chunk {
			var a store.SKUAvailability
			if err := s.reader.Availability(w.ch, sku, &a); err != nil {
				// It no longer resolves (its mapping was deleted): a state
				// transfer replaces what the client holds, so absent is gone.
				continue
			}
			msg.Events = append(msg.Events, &stockdv1.WatchEvent{
				Availability: skuAvailabilityToProto(&stockdv1.SkuAvailability{}, &a), Revision: uint64(a.ModRevision)})
		}
		w.mu.Lock()
		if first {
			mark, w.transfer = w.mark, 0
			msg.Resync, msg.ResyncReason = true, reason
		}
		for _, sku := range chunk {
			w.drop(sku)
		}
		w.unread = skus[min(start+skuPage, len(skus)):]
		w.mu.Unlock()
		h.computeMu.Unlock()
		first = false
		if start+skuPage >= len(skus) {
			msg.Revision = uint64(mark)
		}
		if err := stream.Send(msg); err != nil {
			return 0, s.streamStatus(ctx, err)
		}
	}
	return mark, nil
}

// checkWatchRequest validates a Watch request before anything is read.
func checkWatchRequest(req *stockdv1.WatchRequest) error {
	if err := checkID("channel", req.GetChannel()); err != nil {
		return err
	}
	skus := req.GetSkus()
	if len(skus) > maxSKUsPerRead {
		return invalid("skus", "at most "+strconv.Itoa(maxSKUsPerRead)+" skus, got "+strconv.Itoa(len(skus)))
	}
	if len(skus) > 0 && req.GetSkuPrefix() != "" {
		return invalid("sku_prefix", "give skus or sku_prefix, not both")
	}
	for i, sku := range skus {
		if err := checkID(indexed("skus", i), sku); err != nil {
			return err
		}
	}
	if len(req.GetSkuPrefix()) > 256 {
		return invalid("sku_prefix", "at most 256 bytes")
	}
	return nil
}
