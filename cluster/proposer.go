package cluster

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// maxInflightEntries bounds the entries handed to raft whose commit has not
// been delivered yet. It pipelines: the batcher builds the next entry while
// earlier ones commit.
const maxInflightEntries = 64

// proposal is one caller's command waiting to be batched and committed.
type proposal struct {
	ctx  context.Context
	cmd  *logv1.Command
	done chan outcome // buffered 1: delivery never blocks, even after the caller left
}

type outcome struct {
	res store.Result
	err error
}

// pendingEntry is an entry handed to raft, waiting for its commit.
type pendingEntry struct {
	future raft.ApplyFuture
	batch  []*proposal
}

// Stats counts what the proposer handed to raft since Start. Commands /
// Entries is the mean number of commands grouped per log entry.
type Stats struct {
	// Entries is the number of log entries proposed.
	Entries uint64
	// Commands is the number of commands those entries carried.
	Commands uint64
}

// proposer groups concurrent callers' commands into log entries. One batcher
// goroutine builds and proposes entries; one waiter goroutine delivers each
// committed entry's results to its callers, in proposal order.
type proposer struct {
	raft     *raft.Raft
	machine  *store.Machine
	clock    func() time.Time
	maxBatch int
	linger   time.Duration
	timeout  time.Duration
	// feature gives the log feature version a command needs; an entry is
	// stamped with the highest of its commands', so a replica of an older
	// build still applies entries of the commands it knows.
	feature func(*logv1.Command) uint32

	queue   chan *proposal
	pending chan pendingEntry
	// callers counts goroutines inside Propose; when more are in flight than
	// the batch holds, lingering a little yields a bigger entry.
	callers atomic.Int64

	entries  atomic.Uint64
	commands atomic.Uint64

	// lastStamp is the latest time stamped on an entry; touched only by the batcher.
	lastStamp int64
	// metrics observe each entry's size; nil in tests without a Node.
	metrics *nodeMetrics
}

func newProposer(r *raft.Raft, m *store.Machine, cfg Config) *proposer {
	return &proposer{
		raft:     r,
		machine:  m,
		clock:    cfg.Clock,
		maxBatch: cfg.MaxBatch,
		linger:   cfg.Linger,
		timeout:  cfg.ApplyTimeout,
		feature:  cfg.CommandFeature,
		queue:    make(chan *proposal, cfg.QueueSize),
		pending:  make(chan pendingEntry, maxInflightEntries),
	}
}

// propose queues cmd and waits for its result, ctx's end or the node's stop.
func (p *proposer) propose(ctx context.Context, stopped <-chan struct{}, cmd *logv1.Command) (store.Result, error) {
	if err := ctx.Err(); err != nil {
		return store.Result{}, err
	}
	p.callers.Add(1)
	defer p.callers.Add(-1)
	pr := &proposal{ctx: ctx, cmd: cmd, done: make(chan outcome, 1)}
	select {
	case p.queue <- pr:
	default:
		return store.Result{}, fmt.Errorf("propose: %w", ErrQueueFull)
	}
	select {
	case o := <-pr.done:
		return o.res, o.err
	case <-ctx.Done():
		// The command may still be applied; its request id makes a retry safe.
		return store.Result{}, ctx.Err()
	case <-stopped:
		return store.Result{}, fmt.Errorf("propose: %w", ErrStopped)
	}
}

// runBatcher takes the first queued proposal, drains what else is queued,
// lingers for stragglers while more callers are in flight, then stamps and
// proposes one entry. It exits when ctx ends, failing what is still queued,
// and then closes pending so the waiter exits too.
func (p *proposer) runBatcher(ctx context.Context) {
	defer close(p.pending)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	batch := make([]*proposal, 0, p.maxBatch)
	for {
		batch = batch[:0]
		select {
		case pr := <-p.queue:
			batch = append(batch, pr)
		case <-ctx.Done():
			p.failQueued()
			return
		}
		batch = p.fill(ctx, batch, timer)
		if !p.submit(ctx, batch) {
			p.failQueued()
			return
		}
		// The slice now belongs to the waiter.
		batch = make([]*proposal, 0, p.maxBatch)
	}
}

// fill adds queued proposals to batch without blocking, then, if the batch
// is not full and callers are still arriving, waits up to linger for more.
func (p *proposer) fill(ctx context.Context, batch []*proposal, timer *time.Timer) []*proposal {
drain:
	for len(batch) < p.maxBatch {
		select {
		case pr := <-p.queue:
			batch = append(batch, pr)
		default:
			break drain
		}
	}
	if len(batch) >= p.maxBatch || p.linger <= 0 || p.callers.Load() <= int64(len(batch)) {
		return batch
	}
	timer.Reset(p.linger)
	defer timer.Stop()
	for len(batch) < p.maxBatch && p.callers.Load() > int64(len(batch)) {
		select {
		case pr := <-p.queue:
			batch = append(batch, pr)
		case <-timer.C:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}

// submit stamps and proposes batch, then hands the future to the waiter. It
// returns false when the node is stopping (the batch has been answered).
func (p *proposer) submit(ctx context.Context, batch []*proposal) bool {
	// Callers that already gave up are answered and left out: nobody waits for
	// their result, and dropping them keeps "gave up before it was proposed"
	// an honest answer.
	live := batch[:0]
	for _, pr := range batch {
		if err := pr.ctx.Err(); err != nil {
			pr.done <- outcome{err: err}
			continue
		}
		live = append(live, pr)
	}
	batch = live
	if len(batch) == 0 {
		return true
	}
	e := &logv1.Entry{
		TimeUnixNanos: p.stamp(),
		Commands:      make([]*logv1.Command, len(batch)),
	}
	for i, pr := range batch {
		e.Commands[i] = pr.cmd
	}
	e.FeatureVersion = featureOf(e.Commands, p.feature)
	data, err := proto.Marshal(e)
	if err != nil {
		deliverErr(batch, fmt.Errorf("propose: encode entry: %w", err))
		return true
	}
	f := p.raft.Apply(data, p.timeout)
	p.entries.Add(1)
	p.commands.Add(uint64(len(batch)))
	p.metrics.observeBatch(len(batch))
	select {
	case p.pending <- pendingEntry{future: f, batch: batch}:
		return true
	case <-ctx.Done():
		// The waiter may be gone; answer here. raft shuts down next, so the
		// entry's fate is unknown to this node.
		deliverErr(batch, fmt.Errorf("propose: %w", ErrStopped))
		return false
	}
}

// stamp returns the entry's leader time: never before the last applied time
// nor the last stamp, so log time is monotonic even if the clock steps back.
func (p *proposer) stamp() int64 {
	ts := max(int64(p.machine.LastTime()), p.lastStamp, p.clock().UnixNano())
	p.lastStamp = ts
	return ts
}

// failQueued answers every queued proposal with ErrStopped.
func (p *proposer) failQueued() {
	for {
		select {
		case pr := <-p.queue:
			pr.done <- outcome{err: fmt.Errorf("propose: %w", ErrStopped)}
		default:
			return
		}
	}
}

// runWaiter delivers each entry's results in proposal order. raft commits in
// order, so waiting in order adds no latency. It exits when the batcher
// closes pending; raft's shutdown answers every outstanding future, so it
// never waits forever.
func (p *proposer) runWaiter() {
	for pe := range p.pending {
		if err := pe.future.Error(); err != nil {
			deliverErr(pe.batch, translate("propose", err))
			continue
		}
		results, ok := pe.future.Response().([]store.Result)
		if !ok || len(results) != len(pe.batch) {
			deliverErr(pe.batch, fmt.Errorf("propose: entry %d: %d results for %d commands",
				pe.future.Index(), len(results), len(pe.batch)))
			continue
		}
		for i, pr := range pe.batch {
			pr.done <- outcome{res: results[i]}
		}
	}
}

func deliverErr(batch []*proposal, err error) {
	for _, pr := range batch {
		pr.done <- outcome{err: err}
	}
}

func (p *proposer) stats() Stats {
	return Stats{Entries: p.entries.Load(), Commands: p.commands.Load()}
}

// featureOf is the feature version an entry of cmds needs: the highest any
// of them needs, at least 1. Stamping the build's own version instead would
// stop every replica of an older build at the first entry of a newer leader.
func featureOf(cmds []*logv1.Command, feature func(*logv1.Command) uint32) uint32 {
	v := uint32(1)
	for _, c := range cmds {
		v = max(v, feature(c))
	}
	return v
}
