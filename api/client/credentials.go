package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/credentials"
)

// bearer is the per-RPC credential that sends Config.Token.
type bearer struct {
	token string
	// secure: refuse to send the token over a connection without transport
	// security (Config.InsecureToken unset).
	secure bool
}

// GetRequestMetadata returns the authorization header for every call.
func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is true unless Config.InsecureToken allowed
// plaintext.
func (b bearer) RequireTransportSecurity() bool { return b.secure }

// BearerToken returns per-RPC credentials that send token as
// "authorization: Bearer <token>" on every call, as Config.Token does;
// with requireTLS they refuse to go out over a plaintext connection. For
// callers that dial with grpc.WithPerRPCCredentials themselves.
func BearerToken(token string, requireTLS bool) credentials.PerRPCCredentials {
	return bearer{token: token, secure: requireTLS}
}

// LoadTLS builds a client TLS config from PEM files: caFile (the CA to check
// the server's certificate against; empty means the system's roots) and,
// for a server that wants mTLS, certFile and keyFile (both or neither).
func LoadTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a client certificate and its key go together")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("ca %s: no PEM certificate in it", caFile)
		}
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
