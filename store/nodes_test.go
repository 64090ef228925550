package store_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

func putNode(id, raftAddr, grpcAddr string, version uint32) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_PutNode{PutNode: &logv1.PutNode{
		Id: id, RaftAddr: raftAddr, GrpcAddr: grpcAddr, FeatureVersion: version}}}
}

func TestNodeRecordsSurviveSnapshotAndRemove(t *testing.T) {
	m := store.New(store.DefaultConfig())
	for i, c := range []*logv1.Command{
		putNode("n2", "127.0.0.1:2", "127.0.0.1:12", 1),
		putNode("n1", "127.0.0.1:1", "127.0.0.1:11", 1),
		putNode("n3", "127.0.0.1:3", "127.0.0.1:13", 1),
		{Kind: &logv1.Command_RemoveNode{RemoveNode: &logv1.RemoveNode{Id: "n3"}}},
		{Kind: &logv1.Command_RemoveNode{RemoveNode: &logv1.RemoveNode{Id: "never-joined"}}},
	} {
		if res := m.Apply(store.Revision(i+1), 1, c); res.Err != nil {
			t.Fatalf("command %d %v: got %v, want ok", i, c, res.Err)
		}
	}
	want := []store.Node{
		{ID: "n1", RaftAddr: "127.0.0.1:1", GRPCAddr: "127.0.0.1:11", FeatureVersion: 1},
		{ID: "n2", RaftAddr: "127.0.0.1:2", GRPCAddr: "127.0.0.1:12", FeatureVersion: 1},
	}
	if got := m.Nodes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("nodes: got %v, want %v", got, want)
	}
	r, err := restored(m, store.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Nodes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("nodes after restore: got %v, want %v", got, want)
	}
	if digest(r) != digest(m) {
		t.Fatal("digest after restore differs")
	}
}

func TestPutNodeValidation(t *testing.T) {
	for _, tc := range []struct {
		cmd   *logv1.Command
		field string
	}{
		{putNode("", "a", "b", 1), "node_id"},
		{putNode("n", "", "b", 1), "raft_addr"},
		{putNode("n", "a", "", 1), "grpc_addr"},
		{putNode("n", "a", "b", 0), "feature_version"},
	} {
		err := store.Validate(tc.cmd)
		var rej *store.Rejection
		if !errors.As(err, &rej) || !errors.Is(err, store.ErrInvalid) || rej.Field != tc.field {
			t.Errorf("Validate(%v): got %v, want invalid %s", tc.cmd, err, tc.field)
		}
	}
}

func TestResultRoundTrip(t *testing.T) {
	m := store.New(store.DefaultConfig())
	var results []store.Result
	for i, c := range []*logv1.Command{
		loc("ams"), channel("web", 0, "ams"),
		setStock(row("rose", "ams", 5, 1), row("rose", "nowhere", 5, 1)),
		reserve("web", "r1", 0, line("rose", 2)),
		reserve("web", "r2", 0, line("rose", 9)),
	} {
		results = append(results, m.Apply(store.Revision(i+1), store.Timestamp(i+1), c))
	}
	for i, want := range results {
		got := store.DecodeResult(store.EncodeResult(want))
		if want.Err != nil {
			var gr, wr *store.Rejection
			if !errors.As(got.Err, &gr) || !errors.As(want.Err, &wr) || *gr != *wr {
				t.Fatalf("result %d err: got %#v, want %#v", i, got.Err, want.Err)
			}
			got.Err, want.Err = nil, nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("result %d: got %+v, want %+v", i, got, want)
		}
	}
}

func TestNodeLooksUpOneRecord(t *testing.T) {
	m := store.New(store.DefaultConfig())
	m.Apply(1, 1, putNode("n1", "127.0.0.1:1", "127.0.0.1:11", 1))
	if got, ok := m.Node("n1"); !ok || got.GRPCAddr != "127.0.0.1:11" {
		t.Fatalf("Node(n1) after PutNode: got %+v, %v; want grpc 127.0.0.1:11", got, ok)
	}
	if got, ok := m.Node("n2"); ok {
		t.Fatalf("Node(n2) never put: got %+v, true; want false", got)
	}
}
