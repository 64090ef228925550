package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// tlsPeer returns a raft TLS config (mutual, as cmd/stockd builds it from
// --peer-ca) whose own certificate signer signed; trusted is the CA every
// peer's certificate is checked against.
func tlsPeer(t *testing.T, signer *x509.Certificate, signerKey *ecdsa.PrivateKey, trusted *x509.Certificate) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "peer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(trusted)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      pool, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	}
}

func testCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func tlsTransport(t *testing.T, cfg *tls.Config) *raft.NetworkTransport {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: lis, advertise: lis.Addr(), tls: cfg},
		MaxPool: 1, Timeout: 5 * time.Second, Logger: hclog.NewNullLogger(),
	})
	// CloseStreams closes pooled outbound connections, so the peer's handler
	// for each sees EOF and exits.
	t.Cleanup(func() { tr.CloseStreams(); _ = tr.Close() })
	return tr
}

// TestRaftTLSRefusesAPeerWithAWrongCertificate: over the TLS stream layer a
// peer whose certificate the cluster's CA signed appends entries; one whose
// certificate another CA signed cannot, nor can one dialling in plaintext,
// and the receiver never sees their requests.
func TestRaftTLSRefusesAPeerWithAWrongCertificate(t *testing.T) {
	ca, caKey := testCA(t)
	rogue, rogueKey := testCA(t)
	receiver := tlsTransport(t, tlsPeer(t, ca, caKey, ca))
	got := make(chan *raft.AppendEntriesRequest, 4)
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case rpc := <-receiver.Consumer():
				if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok {
					got <- req
				}
				rpc.Respond(&raft.AppendEntriesResponse{Success: true}, nil)
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() { close(done); <-exited })
	target := raft.ServerAddress(receiver.LocalAddr())
	appendFrom := func(tr *raft.NetworkTransport, term uint64) error {
		var resp raft.AppendEntriesResponse
		return tr.AppendEntries("receiver", target, &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("sender")}, Term: term}, &resp)
	}

	if err := appendFrom(tlsTransport(t, tlsPeer(t, ca, caKey, ca)), 7); err != nil {
		t.Fatalf("append from a peer of the same CA: %v, want OK", err)
	}
	if req := <-got; req.Term != 7 {
		t.Fatalf("receiver got term %d, want 7", req.Term)
	}
	if err := appendFrom(tlsTransport(t, tlsPeer(t, rogue, rogueKey, ca)), 8); err == nil {
		t.Errorf("append from a peer whose certificate another CA signed: OK, want a refusal")
	}
	if err := appendFrom(tlsTransport(t, nil), 9); err == nil {
		t.Errorf("append from a plaintext peer: OK, want a refusal")
	}
	select {
	case req := <-got:
		t.Errorf("receiver took an append (term %d) from a refused peer", req.Term)
	default:
	}
}
