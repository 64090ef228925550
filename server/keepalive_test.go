package server

import (
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/stockd/stockd/store"
)

// A client that pings more often than every 10 s is told to calm down and
// cut off: the server answers its third early ping with GOAWAY
// ENHANCE_YOUR_CALM "too_many_pings" (ServerOptionsFor's enforcement
// policy). The client here is a bare HTTP/2 framer, since grpc-go's own
// client never pings more often than every 10 s.
func TestKeepaliveEnforcementCutsOffPingFloods(t *testing.T) {
	m := store.New(store.DefaultConfig())
	srv := New(Config{Proposer: newFakeProposer(m), Reader: m})
	addr := serveTCP(t, srv, ServerOptionsFor(ChainConfig{})...)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := fr.WritePing(false, [8]byte{byte(i)}); err != nil {
			break // the server may already have closed the connection
		}
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read: %v before a GOAWAY", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					t.Fatal(err)
				}
			}
		case *http2.GoAwayFrame:
			if f.ErrCode != http2.ErrCodeEnhanceYourCalm || string(f.DebugData()) != "too_many_pings" {
				t.Fatalf("GOAWAY %v %q, want ENHANCE_YOUR_CALM too_many_pings", f.ErrCode, f.DebugData())
			}
			return
		}
	}
}
