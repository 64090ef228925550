package cluster

import (
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestParseDialMap(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     DialMap
		wantErr  bool
	}{
		{name: "empty gives no map", in: ""},
		{name: "two entries with spaces", in: " 127.0.0.1:1=127.0.0.1:2 , 127.0.0.1:3=127.0.0.1:4,",
			want: DialMap{"127.0.0.1:1": "127.0.0.1:2", "127.0.0.1:3": "127.0.0.1:4"}},
		{name: "missing equals sign is refused", in: "127.0.0.1:1", wantErr: true},
		{name: "missing port is refused", in: "127.0.0.1=127.0.0.1:2", wantErr: true},
		{name: "an address given twice is refused", in: "a:1=b:2,a:1=c:3", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDialMap(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseDialMap(%q): got error %v, want error %v", tc.in, err, tc.wantErr)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("ParseDialMap(%q): got %v, want %v", tc.in, got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("ParseDialMap(%q)[%s]: got %q, want %q", tc.in, k, got[k], v)
				}
			}
		})
	}
}

// acceptOne returns a channel that receives the first connection lis accepts.
func acceptOne(t *testing.T, lis net.Listener) <-chan net.Conn {
	t.Helper()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := lis.Accept()
		if err == nil {
			ch <- c
		}
	}()
	return ch
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	return lis
}

// expectConn waits for a connection on via and fails if direct got one.
func expectConn(t *testing.T, what string, via, direct <-chan net.Conn) {
	t.Helper()
	select {
	case c := <-via:
		_ = c.Close()
	case c := <-direct:
		_ = c.Close()
		t.Fatalf("%s: dialled the peer's own address, want the dial map's target", what)
	case <-time.After(testDeadline):
		t.Fatalf("%s: no connection on the dial map's target within %v", what, testDeadline)
	}
}

func TestDialMapRedirectsPeerDials(t *testing.T) {
	t.Run("the raft stream layer dials the mapped address", func(t *testing.T) {
		peer, proxy := listen(t), listen(t)
		direct, via := acceptOne(t, peer), acceptOne(t, proxy)
		l := &streamLayer{dialMap: DialMap{peer.Addr().String(): proxy.Addr().String()}}
		c, err := l.Dial(raft.ServerAddress(peer.Addr().String()), time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", peer.Addr(), err)
		}
		defer c.Close()
		expectConn(t, "raft dial", via, direct)
	})
	t.Run("an unmapped raft address is dialled as given", func(t *testing.T) {
		peer := listen(t)
		direct := acceptOne(t, peer)
		l := &streamLayer{dialMap: DialMap{"127.0.0.1:1": "127.0.0.1:2"}}
		c, err := l.Dial(raft.ServerAddress(peer.Addr().String()), time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", peer.Addr(), err)
		}
		defer c.Close()
		expectConn(t, "unmapped raft dial", direct, nil)
	})
	t.Run("the peer gRPC pool dials the mapped address", func(t *testing.T) {
		peer, proxy := listen(t), listen(t)
		direct, via := acceptOne(t, peer), acceptOne(t, proxy)
		p := newPeerPool(DialMap{peer.Addr().String(): proxy.Addr().String()}, nil)
		defer func() { _ = p.close() }()
		if _, err := p.client(peer.Addr().String()); err != nil {
			t.Fatalf("client %s: %v", peer.Addr(), err)
		}
		p.mu.Lock()
		cc := p.conns[peer.Addr().String()]
		p.mu.Unlock()
		cc.Connect()
		expectConn(t, "peer gRPC dial", via, direct)
	})
}
