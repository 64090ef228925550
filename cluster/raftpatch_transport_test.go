package cluster

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// restartableStream is a raft.StreamLayer whose Close also closes the
// connections it accepted, as a process exit does (raft's own Close leaves
// them open).
type restartableStream struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (s *restartableStream) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err == nil {
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
	}
	return c, err
}

func (s *restartableStream) Close() error {
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	return s.Listener.Close()
}

func (s *restartableStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

// voter starts a transport on addr that grants every vote it is asked for,
// until the test ends or it is closed.
func voter(t *testing.T, addr string) *raft.NetworkTransport {
	t.Helper()
	var lis net.Listener
	waitFor(t, "listen on "+addr, func() bool {
		var err error
		lis, err = net.Listen("tcp", addr)
		return err == nil
	})
	tr := raft.NewNetworkTransportWithLogger(&restartableStream{Listener: lis}, 3, 2*time.Second, hclog.NewNullLogger())
	done, answered := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(answered)
		for {
			select {
			case rpc := <-tr.Consumer():
				rpc.Respond(&raft.RequestVoteResponse{Granted: true}, nil)
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() {
		tr.Close()
		close(done)
		<-answered
	})
	return tr
}

// TestTransportRedialsAPooledConnectionItsPeerClosed pins the transport
// patch (PATCHED.md). A peer that restarts leaves every connection pooled to
// it dead; upstream, the next RPC on each fails (EOF or a reset), and a vote
// request that fails loses the election it was for: a leadership transfer in
// a chaos run failed that way. The patched transport drops the address's
// pooled connections and retries once on a new one.
func TestTransportRedialsAPooledConnectionItsPeerClosed(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	peer := voter(t, addr)

	client := raft.NewNetworkTransportWithLogger(&restartableStream{Listener: mustListen(t)}, 3, 2*time.Second, hclog.NewNullLogger())
	t.Cleanup(func() { client.Close() })
	// ask runs on other goroutines too, so it reports rather than fails.
	ask := func() error {
		var resp raft.RequestVoteResponse
		err := client.RequestVote("peer", raft.ServerAddress(addr), &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte("me"), Addr: []byte("me")}, Term: 2}, &resp)
		if err == nil && !resp.Granted {
			err = errors.New("vote not granted")
		}
		return err
	}
	// Three at once, so the pool usually holds more than one connection;
	// one is enough for the first request after the restart to fail
	// upstream.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := ask(); err != nil {
				t.Errorf("vote request before the restart: %v", err)
			}
		})
	}
	wg.Wait()

	peer.Close() // the peer's process exits: its connections close
	voter(t, addr)
	for i := range 3 {
		if err := ask(); err != nil {
			t.Fatalf("vote request %d after the peer restarted: %v", i+1, err)
		}
	}
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}
