package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stockd/stockd/api/client"
)

// dialOptions are the transport credentials and the token of o: plaintext
// without --tls-ca or --tls-cert, TLS with them.
func (o options) dialOptions() ([]grpc.DialOption, error) {
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return nil, &usageError{msg: "--tls-cert and --tls-key go together"}
	}
	useTLS := o.tlsCA != "" || o.tlsCert != ""
	var opts []grpc.DialOption
	if !useTLS {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		cfg, err := client.LoadTLS(o.tlsCA, o.tlsCert, o.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca/--tls-cert/--tls-key: %w", err)
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	}
	if o.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(client.BearerToken(o.token, useTLS)))
	}
	return opts, nil
}

// authHash prints the token_sha256 an auth file lists for a token: of the
// argument, or of the first line of stdin.
func (s *session) authHash(_ context.Context, args []string) error {
	var token string
	switch len(args) {
	case 0:
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("read token from stdin: %w", err)
		}
		token = strings.TrimRight(line, "\r\n")
	case 1:
		token = args[0]
	default:
		return &usageError{msg: "auth hash: one TOKEN at most"}
	}
	if token == "" {
		return errors.New("auth hash: empty token")
	}
	fmt.Fprintln(s.stdout, hashToken(token))
	return nil
}

// authNew prints a new random token (32 bytes, base64url) and its hash.
func (s *session) authNew(_ context.Context, args []string) error {
	if len(args) > 0 {
		return &usageError{msg: "auth new: no arguments"}
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("random token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	fmt.Fprintf(s.stdout, "token:        %s\ntoken_sha256: %s\n", token, hashToken(token))
	return nil
}

// hashToken is the hex SHA-256 of token, as server.HashToken computes it.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
