package cluster

import (
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
