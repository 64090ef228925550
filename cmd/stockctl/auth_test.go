package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/server"
)

// TestAuthHashMatchesTheServer: the hash stockctl prints is the one the
// server compares tokens against.
func TestAuthHashMatchesTheServer(t *testing.T) {
	code, out, errOut := runCLI(t, "127.0.0.1:1", "auth", "hash", "s3cret")
	if code != 0 {
		t.Fatalf("auth hash: exit %d, stderr %q", code, errOut)
	}
	if got, want := strings.TrimSpace(out), server.HashToken("s3cret"); got != want {
		t.Errorf("auth hash s3cret: %q, want %q", got, want)
	}
	code, out, _ = runCLI(t, "127.0.0.1:1", "auth", "new")
	var token, hash string
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "token:"); ok {
			token = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "token_sha256:"); ok {
			hash = strings.TrimSpace(v)
		}
	}
	if code != 0 || len(token) < 40 || hash != server.HashToken(token) {
		t.Errorf("auth new: exit %d, token %q, hash %q; want a long token and its hash", code, token, hash)
	}
}

// TestTokenIsSent: --token and $STOCKD_TOKEN reach the server as a bearer
// authorization header, the flag winning.
func TestTokenIsSent(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		mu.Lock()
		seen = append(seen, strings.Join(metadata.ValueFromIncomingContext(ctx, "authorization"), ","))
		mu.Unlock()
		return h(ctx, req)
	}))
	stockdv1.RegisterAdminServer(srv, stockdv1.UnimplementedAdminServer{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	defer func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("serve: %v", err)
		}
	}()
	addr := lis.Addr().String()
	t.Setenv("STOCKD_TOKEN", "from-env")
	runCLI(t, addr, "location", "list")
	runCLI(t, addr, "--token", "from-flag", "location", "list")
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"Bearer from-env", "Bearer from-flag"}; strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Errorf("authorization seen by the server: %q, want %q", seen, want)
	}
}
