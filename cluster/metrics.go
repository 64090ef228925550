package cluster

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// batchBuckets are the commands-per-entry buckets: powers of two up to the
// default MaxBatch.
var batchBuckets = prometheus.ExponentialBuckets(1, 2, 10)

// nodeMetrics are the Node's metrics when Config.Registerer is set: the
// proposer's batch sizes, observed as each entry is proposed, and raft's
// figures, read at scrape time.
type nodeMetrics struct {
	batch prometheus.Histogram
}

// registerMetrics builds and registers the node's metrics on reg.
func (n *Node) registerMetrics(reg prometheus.Registerer) error {
	batch := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "stockd_raft_apply_batch_commands",
		Help:    "Commands grouped into each log entry this node proposed as leader.",
		Buckets: batchBuckets,
	})
	for _, c := range []prometheus.Collector{batch, &raftCollector{n: n}} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	n.metrics.batch = batch
	return nil
}

// observeBatch records the size of one proposed entry; a no-op without metrics.
func (m *nodeMetrics) observeBatch(commands int) {
	if m != nil && m.batch != nil {
		m.batch.Observe(float64(commands))
	}
}

// raftStates are the values of stockd_raft_state's state label.
var raftStates = []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown}

var (
	descRaftState = prometheus.NewDesc("stockd_raft_state",
		"1 for the raft state this node is in (follower, candidate, leader, shutdown), 0 for the others.", []string{"state"}, nil)
	descRaftHasLeader = prometheus.NewDesc("stockd_raft_has_leader",
		"1 if this node knows a leader (itself included), else 0.", nil, nil)
	descRaftTerm = prometheus.NewDesc("stockd_raft_term",
		"This node's current raft term.", nil, nil)
	descRaftApplied = prometheus.NewDesc("stockd_raft_applied_index",
		"Index of the last log entry applied on this node (raft's, counting entries without commands).", nil, nil)
	descRaftCommit = prometheus.NewDesc("stockd_raft_commit_index",
		"Index of the last log entry this node knows committed.", nil, nil)
	descRaftContact = prometheus.NewDesc("stockd_raft_last_contact_seconds",
		"Seconds since this follower last heard from the leader; 0 on the leader.", nil, nil)
)

// raftCollector reads raft's figures at scrape time; it sends nothing while
// the node is not running.
type raftCollector struct{ n *Node }

func (c *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRaftState, descRaftHasLeader, descRaftTerm, descRaftApplied, descRaftCommit, descRaftContact} {
		ch <- d
	}
}

func (c *raftCollector) Collect(ch chan<- prometheus.Metric) {
	h, ok := c.n.health()
	if !ok {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range raftStates {
		v := 0.0
		if h.state == s {
			v = 1
		}
		gauge(descRaftState, v, stateLabel(s))
	}
	gauge(descRaftHasLeader, boolGauge(h.leaderID != ""))
	gauge(descRaftTerm, float64(h.term))
	gauge(descRaftApplied, float64(h.applied))
	gauge(descRaftCommit, float64(h.commit))
	gauge(descRaftContact, h.sinceContact.Seconds())
}

func stateLabel(s raft.RaftState) string {
	switch s {
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	case raft.Leader:
		return "leader"
	}
	return "shutdown"
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// raftHealth is one reading of raft's figures.
type raftHealth struct {
	state           raft.RaftState
	leaderID        string
	term            uint64
	applied, commit uint64
	sinceContact    time.Duration // 0 on the leader
	replayed        bool
}

// health reads raft's figures; false if the node is not running.
func (n *Node) health() (raftHealth, bool) {
	rn := n.run.Load()
	if rn == nil {
		return raftHealth{}, false
	}
	h := raftHealth{
		state:   rn.raft.State(),
		term:    rn.raft.CurrentTerm(),
		applied: rn.raft.AppliedIndex(),
		commit:  rn.raft.CommitIndex(),
	}
	_, id := rn.raft.LeaderWithID()
	h.leaderID = string(id)
	if h.state == raft.Leader {
		h.leaderID = n.cfg.NodeID // raft names itself a moment after it leads
	} else if last := rn.raft.LastContact(); !last.IsZero() {
		h.sinceContact = time.Since(last) // raft stamps it with time.Now, not Config.Clock
	} else {
		h.sinceContact = time.Duration(1<<63 - 1) // never heard from a leader
	}
	select {
	case <-n.replayed:
		h.replayed = true
	default:
	}
	return h, true
}

// Readiness says whether this node should take traffic: nil when it has
// replayed its local log, knows a leader, is that leader or heard from it
// within maxSilence, and has applied up to maxLag entries short of the
// commit index it knows. Otherwise the error says, in a few words, which
// check failed. Safe for concurrent use.
func (n *Node) Readiness(maxLag uint64, maxSilence time.Duration) error {
	h, ok := n.health()
	switch {
	case !ok:
		return ErrStopped
	case !h.replayed:
		return fmt.Errorf("replaying the local log (applied index %d)", h.applied)
	case h.leaderID == "":
		return fmt.Errorf("no known leader (%s, term %d)", stateLabel(h.state), h.term)
	case h.state != raft.Leader && h.sinceContact > maxSilence:
		if h.sinceContact == time.Duration(1<<63-1) {
			return fmt.Errorf("never heard from leader %s", h.leaderID)
		}
		return fmt.Errorf("no contact with leader %s for %s", h.leaderID, h.sinceContact.Round(time.Millisecond))
	case h.commit > h.applied && h.commit-h.applied > maxLag:
		return fmt.Errorf("applied index %d is %d entries behind commit index %d (bound %d)",
			h.applied, h.commit-h.applied, h.commit, maxLag)
	}
	return nil
}
