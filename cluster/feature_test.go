package cluster

import (
	"fmt"
	"testing"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// TestEntryFeatureIsWhatItsCommandsNeed: an entry of version-1 commands is
// stamped 1 even by a newer build, so older replicas keep applying it during
// a rolling upgrade; one newer command raises the whole entry.
func TestEntryFeatureIsWhatItsCommandsNeed(t *testing.T) {
	loc := &logv1.Command{Kind: &logv1.Command_PutLocation{PutLocation: &logv1.PutLocation{Id: "L1"}}}
	tick := &logv1.Command{Kind: &logv1.Command_Tick{Tick: &logv1.Tick{}}}
	sku := &logv1.Command{Kind: &logv1.Command_PutSku{PutSku: &logv1.PutSku{Sku: "S", Item: "I", Factor: 2}}}
	for _, tc := range []struct {
		name string
		cmds []*logv1.Command
		want uint32
	}{
		{"no commands", nil, 1},
		{"version-1 commands", []*logv1.Command{loc, tick}, 1},
		{"one version-2 command among them", []*logv1.Command{loc, sku, tick}, 2},
	} {
		if got := featureOf(tc.cmds, store.CommandFeature); got != tc.want {
			t.Errorf("input %s: got feature version %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestFeatureGateAfterRestart: a leader that restarts judges a command's
// feature version by the node records its whole log holds, not by the part
// replayed so far. The node's record says version 1 early in the log and 2
// at its end; a command needing 2 proposed the moment the restarted node
// leads must be accepted (the chaos harness saw one refused after a restart
// of every node).
func TestFeatureGateAfterRestart(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommandFeature = tickIs2
	cfg.FeatureVersion = 1
	n := startNode(t, cfg)
	waitApplied(t, n, "the node's record", func() bool { return len(n.machine.Nodes()) == 1 })
	for i := range 2000 {
		propose(t, n, putLocation(fmt.Sprintf("L%d", i)))
	}
	addr := n.RaftAddr()
	closeNode(t, n)

	restart := func(what string) *Node {
		t.Helper()
		c := cfg
		c.RaftAddr, c.FeatureVersion, c.Machine = addr, 2, store.New(store.DefaultConfig())
		n, err := New(c)
		if err != nil {
			t.Fatalf("New (%s): %v", what, err)
		}
		if err := n.Start(); err != nil {
			t.Fatalf("Start (%s): %v", what, err)
		}
		t.Cleanup(func() { _ = n.Close() })
		return n
	}
	n = restart("to raise the record to 2")
	waitFor(t, "the record at version 2", func() bool { return n.ClusterFeatureVersion() == 2 })
	closeNode(t, n)

	n = restart("with the record at 2 at the log's end")
	tick := &logv1.Command{Kind: &logv1.Command_Tick{Tick: &logv1.Tick{}}}
	res, err := n.Propose(testCtx(t), tick)
	if err != nil || res.Err != nil {
		t.Fatalf("Propose(tick needing 2) right after the restart: %+v, %v; want accepted (the record at 2 is in the log)", res, err)
	}
}
