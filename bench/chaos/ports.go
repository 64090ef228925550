package chaos

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// ListenLoopback listens on a free port of 127.0.0.1 below the kernel's
// ephemeral range. Harnesses pick a node's ports this way, close them and
// hand them to stockd to bind; a port from the ephemeral range may meanwhile
// become the source port of any outgoing connection on the machine or
// another listener's port 0 (CI saw "bind: address already in use" so), one
// below it only another harness picking at random. After 50 ports in use it
// falls back to port 0.
func ListenLoopback() (net.Listener, error) {
	start := ephemeralStart()
	span := min(start-1024, 12000)
	for range 50 {
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", start-1-rand.IntN(span))); err == nil {
			return l, nil
		}
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

// ephemeralStart is the first port of the kernel's ephemeral range (Linux's
// ip_local_port_range), or 32768 where it cannot be read: below both Linux's
// default and the 49152 of other systems.
func ephemeralStart() int {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if f := strings.Fields(string(raw)); err == nil && len(f) == 2 {
		if v, err := strconv.Atoi(f[0]); err == nil && v > 2048 {
			return v
		}
	}
	return 32768
}
