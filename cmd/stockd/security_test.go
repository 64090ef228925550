package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
)

// testCA is a certificate authority made at test time.
type testCA struct {
	dir  string
	name string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // PEM of cert
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
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
	ca := &testCA{dir: dir, name: name, cert: cert, key: key, file: filepath.Join(dir, name+"-ca.pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue makes a certificate for name, valid for 127.0.0.1 as server and
// client, and returns its certificate and key files.
func (ca *testCA) issue(t *testing.T, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(ca.dir, ca.name+"-"+name+".pem")
	keyFile = filepath.Join(ca.dir, ca.name+"-"+name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kb)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeAuthFile writes an auth file of name -> (role, channel, token).
func writeAuthFile(t *testing.T, path string, principals [][4]string) {
	t.Helper()
	var ps []map[string]string
	for _, p := range principals {
		sum := sha256.Sum256([]byte(p[3]))
		e := map[string]string{"name": p[0], "role": p[1], "token_sha256": hex.EncodeToString(sum[:])}
		if p[2] != "" {
			e["channel"] = p[2]
		}
		ps = append(ps, e)
	}
	b, err := json.Marshal(map[string]any{"principals": ps})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

var securePrincipals = [][4]string{
	{"shop", "storefront", "web", "tok-shop"},
	{"ops", "admin", "", "tok-ops"},
	{"erp", "erp", "", "tok-erp"},
	{"nodes", "node", "", "tok-node"},
}

// dialTLS dials addr over TLS checking the server against caFile, showing
// the client certificate (when given).
func dialTLS(t *testing.T, addr, caFile, certFile, keyFile string) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}
	b, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RootCAs.AppendCertsFromPEM(b)
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func withToken(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// TestSecureNodeRefusesStrangers: a node with an auth file and mTLS serves a
// client with a certificate from its CA and a valid token, and refuses a
// certificate from another CA, a plaintext client, and a missing token.
func TestSecureNodeRefusesStrangers(t *testing.T) {
	dir := t.TempDir()
	ca, rogue := newTestCA(t, dir, "good"), newTestCA(t, dir, "rogue")
	nodeCert, nodeKey := ca.issue(t, "node1")
	clientCert, clientKey := ca.issue(t, "client")
	rogueCert, rogueKey := rogue.issue(t, "client")
	authFile := filepath.Join(dir, "auth.json")
	writeAuthFile(t, authFile, securePrincipals)
	p := startStockd(t, filepath.Join(dir, "data"), "--auth-file", authFile,
		"--tls-cert", nodeCert, "--tls-key", nodeKey, "--client-ca", ca.file)
	ctx := ctxT(t)

	good := stockdv1.NewAdminClient(dialTLS(t, p.addr, ca.file, clientCert, clientKey))
	if _, err := good.PutLocation(withToken(ctx, "tok-ops"), &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: "WH1", Name: "WH1"}}); err != nil {
		t.Fatalf("PutLocation over mTLS as admin: %v, want OK", err)
	}
	_, err := good.PutLocation(ctx, &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: "WH2", Name: "WH2"}})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("PutLocation over mTLS without a token: %v, want Unauthenticated", err)
	}
	_, err = good.PutLocation(withToken(ctx, "tok-shop"), &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: "WH2", Name: "WH2"}})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("PutLocation as a storefront: %v, want PermissionDenied", err)
	}

	// The HTTP port serves TLS with the same certificate and client CA, and
	// its JSON gateway the same principals.
	httpsGet := func(path, token string) (int, string) {
		t.Helper()
		cfg := &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}
		b, err := os.ReadFile(ca.file)
		if err != nil {
			t.Fatal(err)
		}
		cfg.RootCAs.AppendCertsFromPEM(b)
		cert, err := tls.LoadX509KeyPair(clientCert, clientKey)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		defer hc.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, "GET", "https://"+p.waitLog("http listening", 5*time.Second)["addr"].(string)+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := httpsGet("/v1/channels/web/availability:batchGet?skus=ROSE", ""); code != http.StatusUnauthorized {
		t.Errorf("gateway GET without a token: %d %s, want 401", code, body)
	}
	if code, body := httpsGet("/v1/channels/web/availability:batchGet?skus=ROSE", "tok-shop"); code != http.StatusNotFound || !strings.Contains(body, "channel") {
		t.Errorf("gateway GET as shop of an undeclared channel: %d %s, want 404 naming the channel", code, body)
	}
	if code, body := httpsGet("/healthz", ""); code != http.StatusOK {
		t.Errorf("GET /healthz over TLS: %d %s, want 200", code, body)
	}

	for name, conn := range map[string]*grpc.ClientConn{
		"a client certificate from another CA": dialTLS(t, p.addr, ca.file, rogueCert, rogueKey),
		"no client certificate":                dialTLS(t, p.addr, ca.file, "", ""),
	} {
		_, err := stockdv1.NewAdminClient(conn).ListLocations(withToken(ctx, "tok-ops"), &stockdv1.ListLocationsRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Errorf("ListLocations with %s: %v, want Unavailable (handshake refused)", name, err)
		}
	}
	plain, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := stockdv1.NewAdminClient(plain).ListLocations(withToken(ctx, "tok-ops"), &stockdv1.ListLocationsRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("ListLocations in plaintext: %v, want Unavailable", err)
	}
}

// TestOpenNodeStaysOnLoopback: without --auth-file a node that would listen
// beyond loopback refuses to start unless told --insecure.
func TestOpenNodeStaysOnLoopback(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command(stockdBin, "--data-dir", dir, "--grpc-addr", "0.0.0.0:0", "--raft-addr", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--insecure") {
		t.Fatalf("stockd on 0.0.0.0 without --auth-file: err %v, output %q; want a refusal naming --insecure", err, out)
	}
	// With --insecure it starts (and says it runs open); the env form works too.
	t.Setenv("STOCKD_INSECURE", "true")
	p := startStockd(t, filepath.Join(dir, "ok"), "--grpc-addr", "0.0.0.0:0")
	p.waitLog("NO --auth-file: stockd runs OPEN, every caller may read, reserve, set stock and change membership", 5*time.Second)
}

// TestSecureClusterFormsAndRefusesAWrongCertificate: three nodes on mutual
// TLS (gRPC and raft) with an auth file form a cluster (joins carry the
// node token); a write sent to a follower is forwarded with its principal
// named in the leader's log; a fourth node whose certificate another CA
// signed, even with the right node token, is never admitted.
func TestSecureClusterFormsAndRefusesAWrongCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, rogue := newTestCA(t, dir, "good"), newTestCA(t, dir, "rogue")
	clientCert, clientKey := ca.issue(t, "client")
	authFile := filepath.Join(dir, "auth.json")
	writeAuthFile(t, authFile, securePrincipals)
	tokenFile := filepath.Join(dir, "node-token")
	if err := os.WriteFile(tokenFile, []byte("tok-node\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 8)
	start := func(i int, signer *testCA, join string) *proc {
		id := fmt.Sprintf("node%d", i+1)
		cert, key := signer.issue(t, id)
		args := []string{"--node-id", id, "--grpc-addr", ports[2*i], "--raft-addr", ports[2*i+1],
			"--auth-file", authFile, "--peer-token-file", tokenFile, "--log-level", "debug",
			"--tls-cert", cert, "--tls-key", key, "--client-ca", ca.file, "--peer-ca", ca.file}
		if join != "" {
			args = append(args, "--join", join)
		}
		return startStockd(t, filepath.Join(dir, id), args...)
	}
	n1 := start(0, ca, "")
	admin := stockdv1.NewClusterClient(dialTLS(t, n1.addr, ca.file, clientCert, clientKey))
	waitVoters := func(want int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			st, err := admin.Status(withToken(ctxT(t), "tok-ops"), &stockdv1.StatusRequest{})
			voters := 0
			if err == nil && st.GetLeaderId() != "" {
				voters = reachableVoters(st)
			}
			if voters == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster status: %v (err %v), want %d reachable voters", st, err, want)
			}
			time.Sleep(50 * time.Millisecond) // poll interval of a condition with a deadline
		}
	}
	waitVoters(1)
	n2, n3 := start(1, ca, n1.addr), start(2, ca, n1.addr)
	waitVoters(3)

	// A reservation sent to node2 (a follower: node1 bootstrapped and leads
	// unless an election moved it) is forwarded.
	ctx := ctxT(t)
	a1 := stockdv1.NewAdminClient(dialTLS(t, n1.addr, ca.file, clientCert, clientKey))
	if _, err := a1.PutLocation(withToken(ctx, "tok-ops"), &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: "WH1", Name: "WH1"}}); err != nil {
		t.Fatalf("PutLocation: %v", err)
	}
	if _, err := a1.PutChannel(withToken(ctx, "tok-ops"), &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: "web", Locations: []string{"WH1"}}}); err != nil {
		t.Fatalf("PutChannel: %v", err)
	}
	e1 := stockdv1.NewErpClient(dialTLS(t, n1.addr, ca.file, clientCert, clientKey))
	if _, err := e1.SetStock(withToken(ctx, "tok-erp"), &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 5, Version: 1}}}); err != nil {
		t.Fatalf("SetStock: %v", err)
	}
	st, err := admin.Status(withToken(ctx, "tok-ops"), &stockdv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	procs := map[string]*proc{"node1": n1, "node2": n2, "node3": n3}
	leader := procs[st.GetLeaderId()]
	if leader == nil {
		t.Fatalf("leader %q is none of node1..3", st.GetLeaderId())
	}
	follower := n2
	if leader == n2 {
		follower = n3
	}
	inv := stockdv1.NewInventoryClient(dialTLS(t, follower.addr, ca.file, clientCert, clientKey))
	if _, err := inv.Reserve(withToken(ctx, "tok-shop"), &stockdv1.ReserveRequest{Channel: "web", ReservationId: "r1",
		Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 2}}, Ttl: durationpb.New(time.Minute)}); err != nil {
		t.Fatalf("Reserve on a follower: %v", err)
	}
	leader.waitLogWith("finished call", "principal", "nodes for shop", 10*time.Second)

	// node4's certificate comes from another CA: node1 refuses the TLS
	// handshake of its join, so it keeps failing and is never a member.
	n4 := start(3, rogue, n1.addr)
	n4.waitLog("join attempt failed", 20*time.Second)
	st, err = admin.Status(withToken(ctx, "tok-ops"), &stockdv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.GetMembers() {
		if m.GetNodeId() == "node4" {
			t.Fatalf("node4 with a rogue certificate is a member: %v", st)
		}
	}
}
