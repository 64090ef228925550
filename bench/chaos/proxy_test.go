package chaos

import (
	"io"
	"net"
	"testing"
	"time"
)

// listenEcho starts an echo server that t.Cleanup stops.
func listenEcho(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() { _ = lis.Close(); <-done })
	return lis.Addr().String()
}

// roundTrip sends "ping" through addr and returns what comes back within a
// second ("" when the link is cut).
func roundTrip(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return ""
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return ""
	}
	return string(buf)
}

func TestProxyLimitsBandwidth(t *testing.T) {
	echo := listenEcho(t)
	p, err := newProxy("test", echo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	const size, rate = 64 << 10, 256 << 10 // a quarter of a second each way at least
	p.setRate(linkUp, 0, rate)
	c, err := net.DialTimeout("tcp", p.addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	go func() { _, _ = c.Write(make([]byte, size)) }()
	if _, err := io.ReadFull(c, make([]byte, size)); err != nil {
		t.Fatalf("echo of %d bytes through a %d B/s link: %v", size, rate, err)
	}
	// Each direction sleeps size/rate in all before it has forwarded size.
	if got, want := time.Since(start), time.Duration(size)*time.Second/rate; got < want {
		t.Fatalf("echo of %d bytes through a %d B/s link: took %v, want at least %v", size, rate, got, want)
	}
	p.set(linkUp, 0)
	if got := roundTrip(t, p.addr()); got != "ping" {
		t.Fatalf("round trip after the limit is lifted: got %q, want ping", got)
	}
}
