package cluster

import (
	"fmt"
	"net"
	"strings"
)

// DialMap redirects this node's outgoing peer connections, for fault tests
// only: whenever the node would dial an address that is a key (a peer's raft
// address in the raft stream layer, or a peer's gRPC address for forwarding,
// read index, status and join), it dials the value instead. The fault harness
// (bench/chaos) points each directed link at a proxy it can cut, delay or
// reset. Addresses are compared exactly as written (host:port, no lookup).
// A nil or empty map changes nothing. It is never modified after Start, so
// concurrent reads are safe.
type DialMap map[string]string

// ParseDialMap parses "ADDR=VIA,ADDR=VIA" (spaces around entries ignored)
// into a DialMap. Both sides must be host:port; an ADDR given twice is an
// error. The empty string gives a nil map.
func ParseDialMap(s string) (DialMap, error) {
	var m DialMap
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		addr, via, ok := strings.Cut(e, "=")
		if !ok {
			return nil, fmt.Errorf("dial map entry %q: want ADDR=VIA", e)
		}
		addr, via = strings.TrimSpace(addr), strings.TrimSpace(via)
		for _, a := range []string{addr, via} {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("dial map entry %q: %w", e, err)
			}
		}
		if m == nil {
			m = make(DialMap)
		}
		if _, dup := m[addr]; dup {
			return nil, fmt.Errorf("dial map entry %q: %s given twice", e, addr)
		}
		m[addr] = via
	}
	return m, nil
}

// target is the address to dial for addr: its redirection, or addr itself.
func (m DialMap) target(addr string) string {
	if via, ok := m[addr]; ok {
		return via
	}
	return addr
}
