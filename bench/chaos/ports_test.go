package chaos

import (
	"net"
	"testing"
)

// TestListenLoopbackAvoidsEphemeralRange: the ports handed to nodes lie below
// the range the kernel takes outgoing connections' ports from.
func TestListenLoopbackAvoidsEphemeralRange(t *testing.T) {
	start := ephemeralStart()
	for range 20 {
		l, err := ListenLoopback()
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if port >= start || port < 1024 {
			t.Fatalf("ListenLoopback: got port %d, want one in [1024, %d)", port, start)
		}
	}
}
