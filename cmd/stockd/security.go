package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stockd/stockd/api/client"
	"github.com/stockd/stockd/server"
)

// security is what the auth and TLS flags turn into.
type security struct {
	// auth checks every call's token; nil runs open.
	auth *server.Authenticator
	// grpcCreds serves the gRPC port; nil is plaintext. serveTLS is its
	// TLS config, which the HTTP port serves with too.
	grpcCreds credentials.TransportCredentials
	serveTLS  *tls.Config
	// selfTLS is what this node dials its own gRPC port with (the HTTP
	// gateway): its certificate, the peer CA or system roots.
	selfTLS *tls.Config
	// raftTLS secures the raft transport; nil is plaintext.
	raftTLS *tls.Config
	// peerDial are the options this node dials its peers' gRPC port with.
	peerDial []grpc.DialOption
}

// loadSecurity checks the auth and TLS flags and loads their files. Without
// --auth-file a node listening beyond loopback needs --insecure.
func loadSecurity(o options, grpcAddr net.Addr, logger *slog.Logger) (security, error) {
	var sec security
	if o.authFile != "" {
		a, err := server.LoadAuthFile(o.authFile)
		if err != nil {
			return sec, err
		}
		sec.auth = a
	} else {
		if !isLoopback(grpcAddr) && !o.insecure {
			return sec, fmt.Errorf("--grpc-addr %s is reachable from other machines and there is no --auth-file: give one, or pass --insecure to run open anyway", grpcAddr)
		}
		logger.Warn("NO --auth-file: stockd runs OPEN, every caller may read, reserve, set stock and change membership",
			"grpc", grpcAddr.String(), "insecure_flag", o.insecure)
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return sec, errors.New("--tls-cert and --tls-key go together")
	}
	if o.tlsCert == "" && (o.clientCA != "" || o.peerCA != "") {
		return sec, errors.New("--client-ca and --peer-ca need --tls-cert and --tls-key")
	}
	var token string
	if o.peerTokenFile != "" {
		b, err := os.ReadFile(o.peerTokenFile)
		if err != nil {
			return sec, fmt.Errorf("--peer-token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return sec, fmt.Errorf("--peer-token-file %s: empty", o.peerTokenFile)
		}
	}
	sec.peerDial = []grpc.DialOption{grpc.WithChainUnaryInterceptor(server.ForwardPrincipal)}
	if o.tlsCert == "" {
		if token != "" {
			sec.peerDial = append(sec.peerDial, grpc.WithPerRPCCredentials(client.BearerToken(token, false)))
		}
		return sec, nil
	}

	cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
	if err != nil {
		return sec, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	serve := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if o.clientCA != "" {
		pool, err := loadCA(o.clientCA)
		if err != nil {
			return sec, fmt.Errorf("--client-ca: %w", err)
		}
		serve.ClientCAs, serve.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	sec.grpcCreds, sec.serveTLS = credentials.NewTLS(serve), serve

	// Peers: this node dials them over TLS, showing its own certificate (a
	// peer with --client-ca wants one) and checking theirs against
	// --peer-ca, or the system's roots without it.
	dial := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if o.peerCA != "" {
		pool, err := loadCA(o.peerCA)
		if err != nil {
			return sec, fmt.Errorf("--peer-ca: %w", err)
		}
		dial.RootCAs = pool
		// Raft runs over mutual TLS: each side checks the other's
		// certificate against --peer-ca.
		sec.raftTLS = &tls.Config{
			Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
			RootCAs: pool, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
		}
	}
	// The gateway dials this very node: it pins the node's own leaf
	// certificate instead of trusting a CA (there may be no --peer-ca), and
	// shows the node's certificate where --client-ca wants one.
	leaf := cert.Certificate[0]
	sec.selfTLS = &tls.Config{
		Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], leaf) {
				return errors.New("self dial: the server is not this node")
			}
			return nil
		},
	}
	sec.peerDial = append(sec.peerDial, grpc.WithTransportCredentials(credentials.NewTLS(dial)))
	if token != "" {
		sec.peerDial = append(sec.peerDial, grpc.WithPerRPCCredentials(client.BearerToken(token, true)))
	}
	return sec, nil
}

// loadCA reads a PEM bundle of CA certificates.
func loadCA(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

// isLoopback reports whether addr only takes connections from this machine.
func isLoopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// grpcServerCreds is the gRPC server option for sec's credentials.
func (sec security) grpcServerCreds() grpc.ServerOption {
	if sec.grpcCreds == nil {
		return grpc.Creds(insecure.NewCredentials())
	}
	return grpc.Creds(sec.grpcCreds)
}

// selfDialOptions are the options the HTTP gateway dials this node's own
// gRPC port with: plaintext, or TLS pinned to the node's own certificate.
// No node token: each call carries its HTTP caller's.
func (sec security) selfDialOptions() []grpc.DialOption {
	if sec.selfTLS == nil {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(sec.selfTLS))}
}

// selfAddr is the address to dial this node's own listener on: the bound
// address, with 127.0.0.1 for a listener on every interface.
func selfAddr(bound net.Addr) string {
	ta, ok := bound.(*net.TCPAddr)
	if !ok || !ta.IP.IsUnspecified() {
		return bound.String()
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(ta.Port))
}
