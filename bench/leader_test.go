package bench

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
)

// fakeStatus answers Cluster.Status with a fixed reply or error.
type fakeStatus struct {
	stockdv1.UnimplementedClusterServer
	reply func() (*stockdv1.StatusResponse, error)
}

func (f *fakeStatus) Status(context.Context, *stockdv1.StatusRequest) (*stockdv1.StatusResponse, error) {
	return f.reply()
}

// fakeNodes starts n gRPC servers on 127.0.0.1 whose Cluster.Status answers
// what reply(addrs) gives, and returns an Env dialled to them.
func fakeNodes(t *testing.T, n int, toLeader bool, reply func(addrs []string) (*stockdv1.StatusResponse, error)) *Env {
	t.Helper()
	env := &Env{Opts: Options{WritesToLeader: toLeader}}
	// The servers read the addresses under mu: they learn them after they start.
	var (
		mu    sync.Mutex
		addrs []string
	)
	fake := &fakeStatus{reply: func() (*stockdv1.StatusResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		return reply(addrs)
	}}
	for range n {
		addr, conn := serveFake(t, func(srv *grpc.Server) { stockdv1.RegisterClusterServer(srv, fake) })
		mu.Lock()
		addrs = append(addrs, addr)
		mu.Unlock()
		env.Conns = append(env.Conns, conn)
	}
	return env
}

// ledBy is a Status reply naming member i of addrs (ids n1, n2, ...) leader.
func ledBy(i int) func([]string) (*stockdv1.StatusResponse, error) {
	return func(addrs []string) (*stockdv1.StatusResponse, error) {
		st := &stockdv1.StatusResponse{LeaderId: "n" + string(rune('1'+i))}
		for j, a := range addrs {
			st.Members = append(st.Members, &stockdv1.Member{NodeId: "n" + string(rune('1'+j)), GrpcAddr: a})
		}
		return st, nil
	}
}

func TestFindLeaderRoutesWritesToTheLeader(t *testing.T) {
	env := fakeNodes(t, 3, true, ledBy(1))
	ctx := testContext(t, 10*time.Second)
	leader := env.Conns[1].Target()
	if got, want := findLeader(ctx, env), "leader "+leader; got != want {
		t.Fatalf("findLeader: got %q, want %q", got, want)
	}
	for w := range 6 {
		if env.WriteConn(w) != env.Conns[1] {
			t.Errorf("WriteConn(%d): got another connection than the leader's (%s)", w, leader)
		}
		if env.Conn(w) != env.Conns[w%3] {
			t.Errorf("Conn(%d): reads must still spread over every node", w)
		}
	}
}

func TestFindLeaderFallsBackToAnyNode(t *testing.T) {
	refused := func([]string) (*stockdv1.StatusResponse, error) {
		return nil, status.Error(codes.PermissionDenied, "role storefront may not call Cluster.Status")
	}
	elsewhere := func(addrs []string) (*stockdv1.StatusResponse, error) {
		return &stockdv1.StatusResponse{LeaderId: "n9", Members: []*stockdv1.Member{{NodeId: "n9", GrpcAddr: "10.0.0.9:7400"}}}, nil
	}
	noLeader := func([]string) (*stockdv1.StatusResponse, error) { return &stockdv1.StatusResponse{}, nil }
	for _, tc := range []struct {
		name     string
		nodes    int
		toLeader bool
		reply    func([]string) (*stockdv1.StatusResponse, error)
		want     string
		prefix   bool // want is a prefix: the rest is the nodes' error
	}{
		{"writes any", 3, false, ledBy(1), "any node", false},
		{"one node", 1, true, ledBy(0), "", false},
		{"status refused", 3, true, refused, "any node (no leader found: ask ", true},
		{"no leader", 3, true, noLeader, "any node (no leader found: ", true},
		{"leader not dialled", 3, true, elsewhere, "any node (leader 10.0.0.9:7400 is not one of the addresses dialled)", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := fakeNodes(t, tc.nodes, tc.toLeader, tc.reply)
			env.leader.Store(1) // a stale choice from an earlier run must be dropped
			got := findLeader(testContext(t, 10*time.Second), env)
			if ok := got == tc.want || tc.prefix && strings.HasPrefix(got, tc.want); !ok {
				t.Errorf("findLeader: got %q, want %q (prefix %v)", got, tc.want, tc.prefix)
			}
			for w := range 4 {
				if env.WriteConn(w) != env.Conn(w) {
					t.Errorf("WriteConn(%d): got a fixed node, want Conn(%d) when the leader is not routed to", w, w)
				}
			}
		})
	}
}
