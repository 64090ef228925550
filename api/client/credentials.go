package client

import "context"

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
