package client

import (
	"context"

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
