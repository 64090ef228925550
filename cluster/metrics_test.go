package cluster

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// gathered is every sample of reg by name and label pairs, e.g.
// `stockd_raft_state{state=leader}`; a histogram gives name_count and name_sum.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			if len(m.GetLabel()) > 0 {
				key += "{"
				for i, l := range m.GetLabel() {
					if i > 0 {
						key += ","
					}
					key += l.GetName() + "=" + l.GetValue()
				}
				key += "}"
			}
			switch {
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
				out[key+"_sum"] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// TestNodeMetricsAndReadiness: the batch histogram counts exactly the
// entries and commands the proposer handed to raft, raft's figures are
// exported, and a leading single node is ready while a closed one is not.
func TestNodeMetricsAndReadiness(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := testConfig(t)
	cfg.Registerer = reg
	n := startNode(t, cfg)
	waitFor(t, "log replayed and ready", func() bool { return n.Readiness(0, time.Second) == nil })
	seed(t, n, 100)

	st := n.Stats()
	got := gathered(t, reg)
	if c, s := got["stockd_raft_apply_batch_commands_count"], got["stockd_raft_apply_batch_commands_sum"]; c != float64(st.Entries) || s != float64(st.Commands) || st.Commands < 3 {
		t.Errorf("batch histogram after seeding: got count %v sum %v, want the proposer's %d entries and %d commands (>= 3)",
			c, s, st.Entries, st.Commands)
	}
	for key, want := range map[string]float64{
		"stockd_raft_has_leader":             1,
		"stockd_raft_state{state=leader}":    1,
		"stockd_raft_state{state=follower}":  0,
		"stockd_raft_state{state=candidate}": 0,
		"stockd_raft_last_contact_seconds":   0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s of a single leading node: got %v (present %v), want %v", key, v, ok, want)
		}
	}
	if a, c := got["stockd_raft_applied_index"], got["stockd_raft_commit_index"]; a < 3 || c < a || got["stockd_raft_term"] < 1 {
		t.Errorf("raft figures after 3 commands: got applied %v commit %v term %v, want applied >= 3, commit >= applied, term >= 1",
			a, c, got["stockd_raft_term"])
	}

	closeNode(t, n)
	if err := n.Readiness(0, time.Second); err == nil {
		t.Error("Readiness of a closed node: got nil, want an error")
	}
	if _, ok := gathered(t, reg)["stockd_raft_term"]; ok {
		t.Error("stockd_raft_term of a closed node: got a series, want none")
	}
}
