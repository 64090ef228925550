package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/stockdv1"
)

const (
	digestN1 = "aa11bb22cc33dd44ee55ff660000000000000000000000000000000000000001"
	digestN2 = "aa11bb22cc33dd44ee55ff660000000000000000000000000000000000000002"
)

func threeMembers() *stockdv1.StatusResponse {
	return &stockdv1.StatusResponse{
		NodeId: "n2", LeaderId: "n1", LeaderRaftAddr: "10.0.0.1:7300", Term: 7, CommitIndex: 905, ClusterFeatureVersion: 2,
		Members: []*stockdv1.Member{
			{NodeId: "n1", RaftAddr: "10.0.0.1:7300", GrpcAddr: "10.0.0.1:7400", Role: "leader", Voter: true,
				AppliedIndex: 905, Term: 7, FeatureVersion: 2, StateDigest: digestN1},
			{NodeId: "n2", RaftAddr: "10.0.0.2:7300", GrpcAddr: "10.0.0.2:7400", Role: "follower", Voter: true,
				AppliedIndex: 900, Lag: 5, Term: 7, FeatureVersion: 2, StateDigest: digestN2},
			{NodeId: "n3", RaftAddr: "10.0.0.3:7300", GrpcAddr: "10.0.0.3:7400", Role: "unreachable", Voter: true},
		},
	}
}

func TestClusterStatus(t *testing.T) {
	st, addr := startFake(t)
	st.mu.Lock()
	st.cluster.status = threeMembers()
	st.mu.Unlock()

	code, out, errOut := runCLI(t, addr, "cluster", "status")
	if code != 0 {
		t.Fatalf("cluster status: got exit %d, stderr %q; want 0", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("cluster status: got %d lines:\n%s\nwant a header, 3 members and a summary", len(lines), out)
	}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "NODE ROLE VOTER RAFT GRPC APPLIED LAG DIGEST" {
		t.Errorf("cluster status: got header %q; want NODE ROLE VOTER RAFT GRPC APPLIED LAG DIGEST", lines[0])
	}
	wantRows := []string{
		"n1 leader yes 10.0.0.1:7300 10.0.0.1:7400 905 0 aa11bb22cc33",
		"n2 follower yes 10.0.0.2:7300 10.0.0.2:7400 900 5 aa11bb22cc33",
		"n3 unreachable yes 10.0.0.3:7300 10.0.0.3:7400 0 0 -",
	}
	for i, want := range wantRows {
		if got := strings.Join(strings.Fields(lines[i+1]), " "); got != want {
			t.Errorf("cluster status: row %d: got %q; want %q", i, got, want)
		}
	}
	if want := "leader n1 (10.0.0.1:7300), term 7, commit index 905, cluster feature version 2; answered by n2"; lines[4] != want {
		t.Errorf("cluster status: got summary %q; want %q", lines[4], want)
	}

	code, out, errOut = runCLI(t, addr, "cluster", "status", "--json")
	if code != 0 {
		t.Fatalf("cluster status --json: got exit %d, stderr %q; want 0", code, errOut)
	}
	var got stockdv1.StatusResponse
	if err := protojson.Unmarshal([]byte(out), &got); err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("cluster status --json: got %q (%v); want one StatusResponse line", out, err)
	}
	if !proto.Equal(&got, threeMembers()) {
		t.Errorf("cluster status --json: got %v; want %v", &got, threeMembers())
	}

	t.Run("no leader is said so", func(t *testing.T) {
		st.mu.Lock()
		st.cluster.status = &stockdv1.StatusResponse{NodeId: "n2", Term: 8}
		st.mu.Unlock()
		code, out, errOut := runCLI(t, addr, "cluster", "status")
		if code != 0 || !strings.Contains(out, "no leader known, term 8") {
			t.Errorf("cluster status without leader: got exit %d, stdout %q, stderr %q; want 0 and \"no leader known, term 8\"", code, out, errOut)
		}
	})
	t.Run("different digests at one applied index fail the command", func(t *testing.T) {
		s := threeMembers()
		s.Members[1].AppliedIndex = 905
		st.mu.Lock()
		st.cluster.status = s
		st.mu.Unlock()
		code, out, errOut := runCLI(t, addr, "cluster", "status")
		if want := "stockctl: state digests differ at applied index 905 among n1, n2\n"; code != 1 || errOut != want {
			t.Errorf("cluster status with diverged n1, n2: got exit %d, stderr %q; want 1 and %q", code, errOut, want)
		}
		if !strings.Contains(out, "NODE") {
			t.Errorf("cluster status with diverged n1, n2: got stdout %q; want the table still", out)
		}
	})
}

func TestClusterJoinAndLeave(t *testing.T) {
	st, addr := startFake(t)
	code, out, errOut := runCLI(t, addr, "cluster", "join", "--node-id", "n4", "--raft-addr", "10.0.0.4:7300", "--grpc-addr", "10.0.0.4:7400")
	if code != 0 || out != "node n4 joined (raft 10.0.0.4:7300, grpc 10.0.0.4:7400), revision 1\n" {
		t.Fatalf("cluster join n4: got exit %d, stdout %q, stderr %q; want 0 and the join line", code, out, errOut)
	}
	code, out, errOut = runCLI(t, addr, "--json", "cluster", "join", "--node-id", "n5", "--raft-addr", "h5:7300", "--grpc-addr", "h5:7400", "--feature-version", "3")
	var jr stockdv1.JoinResponse
	if code != 0 || protojson.Unmarshal([]byte(out), &jr) != nil || jr.GetRevision() != 2 {
		t.Fatalf("cluster join n5 --json: got exit %d, stdout %q, stderr %q; want 0 and revision 2", code, out, errOut)
	}
	code, out, errOut = runCLI(t, addr, "cluster", "leave", "--node-id", "n4")
	if code != 0 || out != "node n4 left, revision 3\n" {
		t.Fatalf("cluster leave n4: got exit %d, stdout %q, stderr %q; want 0 and the leave line", code, out, errOut)
	}
	code, _, errOut = runCLI(t, addr, "cluster", "leave", "--node-id", "nosuch")
	if want := "stockctl: NOT_FOUND: node_id: unknown node \"nosuch\"\n"; code != 1 || errOut != want {
		t.Errorf("cluster leave nosuch: got exit %d, stderr %q; want 1 and %q", code, errOut, want)
	}

	st.mu.Lock()
	joins, leaves := st.cluster.joins, st.cluster.leaves
	st.mu.Unlock()
	wantJoins := []*stockdv1.JoinRequest{
		{NodeId: "n4", RaftAddr: "10.0.0.4:7300", GrpcAddr: "10.0.0.4:7400", FeatureVersion: 1},
		{NodeId: "n5", RaftAddr: "h5:7300", GrpcAddr: "h5:7400", FeatureVersion: 3},
	}
	if len(joins) != len(wantJoins) {
		t.Fatalf("cluster join: the server got %v; want %v", joins, wantJoins)
	}
	for i := range joins {
		if !proto.Equal(joins[i], wantJoins[i]) {
			t.Errorf("cluster join %d: the server got %v; want %v", i, joins[i], wantJoins[i])
		}
	}
	if len(leaves) != 2 || leaves[0].GetNodeId() != "n4" {
		t.Errorf("cluster leave: the server got %v; want n4 then nosuch", leaves)
	}

	for _, tt := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"join without node id", []string{"cluster", "join", "--raft-addr", "h:1", "--grpc-addr", "h:2"}, "stockctl: cluster join: --node-id is required"},
		{"join without raft address", []string{"cluster", "join", "--node-id", "n", "--grpc-addr", "h:2"}, "--raft-addr is required"},
		{"join without grpc address", []string{"cluster", "join", "--node-id", "n", "--raft-addr", "h:1"}, "--grpc-addr is required"},
		{"join with feature version 0", []string{"cluster", "join", "--node-id", "n", "--raft-addr", "h:1", "--grpc-addr", "h:2", "--feature-version", "0"},
			"--feature-version must be 1 to 4294967295, got 0"},
		{"leave without node id", []string{"cluster", "leave"}, "stockctl: cluster leave: --node-id is required"},
		{"status with an argument", []string{"cluster", "status", "n1"}, `unexpected argument "n1"`},
		{"an unknown cluster verb", []string{"cluster", "explode"}, `cluster: unknown subcommand "explode" (one of: join, leave, status)`},
	} {
		t.Run(tt.name+" is a usage error", func(t *testing.T) {
			code, _, errOut := runCLI(t, addr, tt.args...)
			if code != 2 || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("%v: got exit %d, stderr %q; want 2 and %q", tt.args, code, errOut, tt.wantErr)
			}
		})
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.cluster.joins) != 2 || len(st.cluster.leaves) != 2 {
		t.Errorf("usage errors: the server got %d joins and %d leaves; want no more than 2 and 2", len(st.cluster.joins), len(st.cluster.leaves))
	}
}

// snapshotPayload is 600 KiB of noise: three chunks of at most 256 KiB.
func snapshotPayload(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 600<<10)
	if _, err := rand.NewChaCha8([32]byte{7}).Read(b); err != nil {
		t.Fatalf("random payload: %v", err)
	}
	return b
}

// dirNames lists dir, to catch temporary files left behind.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestSnapshotSave(t *testing.T) {
	st, addr := startFake(t)
	payload := snapshotPayload(t)
	st.mu.Lock()
	st.cluster.snapshot, st.cluster.snapshotIndex = payload, 77
	st.mu.Unlock()

	t.Run("the file holds exactly the streamed bytes", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "stockd.snap")
		code, out, errOut := runCLI(t, addr, "snapshot", "save", path)
		if want := "snapshot saved to " + path + ": 614400 bytes at index 77\n"; code != 0 || out != want {
			t.Fatalf("snapshot save: got exit %d, stdout %q, stderr %q; want 0 and %q", code, out, errOut, want)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("snapshot save: file has %d bytes that differ from the %d streamed; want the same bytes", len(got), len(payload))
		}
		if names := dirNames(t, dir); len(names) != 1 {
			t.Errorf("snapshot save: got %v in the directory; want only stockd.snap", names)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("snapshot save: got mode %v (%v); want 0600", fi.Mode().Perm(), err)
		}
	})
	t.Run("--json prints the file, size and index", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s.snap")
		code, out, errOut := runCLI(t, addr, "--json", "snapshot", "save", path)
		var got struct {
			File  string `json:"file"`
			Bytes int64  `json:"bytes"`
			Index uint64 `json:"index"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.File != path || got.Bytes != 614400 || got.Index != 77 {
			t.Fatalf("snapshot save --json: got exit %d, stdout %q, stderr %q; want 0 and file, 614400 bytes, index 77", code, out, errOut)
		}
	})

	failures := []struct {
		name    string
		set     func(c *fakeClusterState)
		wantErr string
	}{
		{"a stream that breaks after a chunk", func(c *fakeClusterState) {
			c.failAfter, c.failErr = 1, status.Error(codes.Unavailable, "not leader")
		}, "stockctl: UNAVAILABLE: not leader\n"},
		{"a stream whose index changes", func(c *fakeClusterState) { c.indexDrift = true }, "stockctl: snapshot chunk 1: index 78, want 77 as in the chunks before\n"},
		{"an empty stream", func(c *fakeClusterState) { c.snapshot = nil }, "stockctl: the server sent an empty snapshot\n"},
	}
	for _, tt := range failures {
		t.Run(tt.name+" leaves no file", func(t *testing.T) {
			st.mu.Lock()
			saved := st.cluster
			tt.set(&st.cluster)
			st.mu.Unlock()
			t.Cleanup(func() {
				st.mu.Lock()
				st.cluster = saved
				st.mu.Unlock()
			})
			dir := t.TempDir()
			path := filepath.Join(dir, "stockd.snap")
			code, _, errOut := runCLI(t, addr, "snapshot", "save", path)
			if code != 1 || errOut != tt.wantErr {
				t.Errorf("snapshot save with %s: got exit %d, stderr %q; want 1 and %q", tt.name, code, errOut, tt.wantErr)
			}
			if names := dirNames(t, dir); len(names) != 0 {
				t.Errorf("snapshot save with %s: got %v in the directory; want nothing", tt.name, names)
			}

			// An existing file is left as it was.
			if err := os.WriteFile(path, []byte("older snapshot"), 0o600); err != nil {
				t.Fatalf("write %s: %v", path, err)
			}
			if code, _, _ := runCLI(t, addr, "snapshot", "save", path); code != 1 {
				t.Errorf("snapshot save over an existing file with %s: got exit %d; want 1", tt.name, code)
			}
			if got, err := os.ReadFile(path); err != nil || string(got) != "older snapshot" {
				t.Errorf("snapshot save over an existing file with %s: file now %q (%v); want it untouched", tt.name, got, err)
			}
			if names := dirNames(t, dir); len(names) != 1 {
				t.Errorf("snapshot save over an existing file with %s: got %v; want only stockd.snap", tt.name, names)
			}
		})
	}

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no file", []string{"snapshot", "save"}, "stockctl: snapshot save: want exactly one FILE, got 0 arguments"},
		{"two files", []string{"snapshot", "save", "a", "b"}, "want exactly one FILE, got 2 arguments"},
		{"no verb", []string{"snapshot"}, "snapshot: missing subcommand (one of: save)"},
	} {
		t.Run(tt.name+" is a usage error", func(t *testing.T) {
			code, _, errOut := runCLI(t, addr, tt.args...)
			if code != 2 || !strings.Contains(errOut, tt.want) {
				t.Errorf("%v: got exit %d, stderr %q; want 2 and %q", tt.args, code, errOut, tt.want)
			}
		})
	}
}

func TestLinearizableFlag(t *testing.T) {
	st, addr := startFake(t)
	if code, _, errOut := runCLI(t, addr, "demo", "--skus", "3"); code != 0 {
		t.Fatalf("demo: got exit %d, stderr %q; want 0", code, errOut)
	}
	st.mu.Lock()
	holdID := st.reserves[0].GetReservationId()
	st.mu.Unlock()
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{[]string{"avail", "--channel", "web", "SKU-0001"}, false},
		{[]string{"avail", "--channel", "web", "--linearizable", "SKU-0001"}, true},
		{[]string{"reservation", "--channel", "web", "--id", holdID}, false},
		{[]string{"reservation", "--channel", "web", "--id", holdID, "--linearizable"}, true},
	} {
		code, _, errOut := runCLI(t, addr, tt.args...)
		if code != 0 {
			t.Fatalf("%v: got exit %d, stderr %q; want 0", tt.args, code, errOut)
		}
		st.mu.Lock()
		var got bool
		if tt.args[0] == "avail" {
			got = st.availRequests[len(st.availRequests)-1].GetLinearizable()
		} else {
			got = st.resRequests[len(st.resRequests)-1].GetLinearizable()
		}
		st.mu.Unlock()
		if got != tt.want {
			t.Errorf("%v: the server got linearizable %v; want %v", tt.args, got, tt.want)
		}
	}
}
