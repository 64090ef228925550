package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Role is what a principal may do (DESIGN.md, channels and trust).
type Role string

// The roles. Storefront, rep and marketplace read and reserve for their own
// channel; erp writes stock and reads the outbox; admin changes config and
// membership; node is another stockd node (peer calls, joins, forwarding).
const (
	RoleStorefront  Role = "storefront"
	RoleRep         Role = "rep"
	RoleMarketplace Role = "marketplace"
	RoleERP         Role = "erp"
	RoleAdmin       Role = "admin"
	RoleNode        Role = "node"
)

// Roles lists every role, in the order the auth file documents them.
var Roles = []Role{RoleStorefront, RoleRep, RoleMarketplace, RoleERP, RoleAdmin, RoleNode}

// channelScoped reports whether r acts for exactly one channel.
func (r Role) channelScoped() bool {
	return r == RoleStorefront || r == RoleRep || r == RoleMarketplace
}

// Principal is an authenticated caller. Channel is set for the
// channel-scoped roles only.
type Principal struct {
	Name    string
	Role    Role
	Channel string
}

// RateLimit caps one principal's calls: PerSecond calls a second on average,
// bursts of up to Burst. A zero PerSecond means no limit.
type RateLimit struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
}

// AuthFile is the --auth-file format (JSON): the principals allowed to call.
type AuthFile struct {
	Principals []AuthPrincipal `json:"principals"`
}

// AuthPrincipal is one principal in an auth file. TokenSHA256 is the
// lowercase hex SHA-256 of its bearer token (stockctl auth hash).
type AuthPrincipal struct {
	Name        string    `json:"name"`
	Role        Role      `json:"role"`
	Channel     string    `json:"channel,omitempty"`
	TokenSHA256 string    `json:"token_sha256"`
	RateLimit   RateLimit `json:"rate_limit"`
}

// HashToken returns the hex SHA-256 of token, the form an auth file stores.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Authenticator maps bearer tokens to principals and enforces their roles,
// channels and rate limits. Safe for concurrent use.
type Authenticator struct {
	byHash map[[sha256.Size]byte]*authEntry
	// known caches token -> entry for tokens that matched, so a token is
	// hashed once, not per call. Only valid tokens enter, so it is bounded by
	// what the auth file names.
	known sync.Map // string -> *authEntry
}

type authEntry struct {
	p       Principal
	limiter *rate.Limiter // nil: unlimited
}

// LoadAuthFile reads and checks an auth file.
func LoadAuthFile(path string) (*Authenticator, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	var f AuthFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	a, err := NewAuthenticator(f)
	if err != nil {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	return a, nil
}

// NewAuthenticator checks f and returns its Authenticator: names unique and
// non-empty, known roles, a channel for exactly the channel-scoped roles,
// hashes of 64 hex digits and none twice.
func NewAuthenticator(f AuthFile) (*Authenticator, error) {
	if len(f.Principals) == 0 {
		return nil, errors.New("principals: none listed")
	}
	a := &Authenticator{byHash: make(map[[sha256.Size]byte]*authEntry)}
	names := make(map[string]bool)
	for i, p := range f.Principals {
		field := fmt.Sprintf("principals[%d]", i)
		if p.Name == "" {
			return nil, fmt.Errorf("%s.name: empty", field)
		}
		if names[p.Name] {
			return nil, fmt.Errorf("%s.name: %q listed twice", field, p.Name)
		}
		names[p.Name] = true
		known := false
		for _, r := range Roles {
			known = known || p.Role == r
		}
		if !known {
			return nil, fmt.Errorf("%s.role: %q is not one of %v", field, p.Role, Roles)
		}
		if p.Role.channelScoped() != (p.Channel != "") {
			if p.Channel == "" {
				return nil, fmt.Errorf("%s.channel: a %s acts for one channel: name it", field, p.Role)
			}
			return nil, fmt.Errorf("%s.channel: a %s acts for no single channel: leave it out", field, p.Role)
		}
		raw, err := hex.DecodeString(strings.ToLower(p.TokenSHA256))
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("%s.token_sha256: want 64 hex digits (stockctl auth hash)", field)
		}
		h := [sha256.Size]byte(raw)
		if _, dup := a.byHash[h]; dup {
			return nil, fmt.Errorf("%s.token_sha256: the same token as another principal", field)
		}
		if p.RateLimit.PerSecond < 0 || p.RateLimit.Burst < 0 {
			return nil, fmt.Errorf("%s.rate_limit: must not be negative", field)
		}
		e := &authEntry{p: Principal{Name: p.Name, Role: p.Role, Channel: p.Channel}}
		if p.RateLimit.PerSecond > 0 {
			burst := p.RateLimit.Burst
			if burst == 0 {
				burst = max(1, int(p.RateLimit.PerSecond))
			}
			e.limiter = rate.NewLimiter(rate.Limit(p.RateLimit.PerSecond), burst)
		}
		a.byHash[h] = e
	}
	return a, nil
}

// lookup returns the entry whose token is token, or nil.
func (a *Authenticator) lookup(token string) *authEntry {
	if e, ok := a.known.Load(token); ok {
		return e.(*authEntry)
	}
	// A map lookup by hash: timing can tell at most something about the
	// hash of a guess, which says nothing useful about a valid token.
	e, ok := a.byHash[sha256.Sum256([]byte(token))]
	if !ok {
		return nil
	}
	a.known.Store(token, e)
	return e
}

// bearer returns the token of ctx's "authorization: Bearer <token>" header.
func bearer(ctx context.Context) (string, error) {
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(vals) == 0 {
		return "", status.Error(codes.Unauthenticated, "authorization: missing bearer token")
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
		return "", status.Error(codes.Unauthenticated, `authorization: want "Bearer <token>"`)
	}
	return token, nil
}

type principalKey struct{}

// PrincipalFrom returns the principal the auth interceptor put in ctx, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	e, ok := ctx.Value(principalKey{}).(*authEntry)
	if !ok {
		return Principal{}, false
	}
	return e.p, true
}

// OnBehalfOfKey is the metadata key a node sets, when it forwards a call, to
// the name of the principal that made it; the receiving node logs it.
const OnBehalfOfKey = "x-stockd-on-behalf-of"

// ForwardPrincipal is a client interceptor for node-to-node connections: it
// names the principal of ctx (if any) in OnBehalfOfKey, so a forwarded write
// carries its original principal.
func ForwardPrincipal(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if p, ok := PrincipalFrom(ctx); ok {
		ctx = metadata.AppendToOutgoingContext(ctx, OnBehalfOfKey, p.Name)
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// callerName is the name logged for ctx's caller: its principal by token,
// "node-2 for web" on a call a node forwarded, or "" when a is nil or the
// token is unknown. It runs before authentication, so it reads the token.
func (a *Authenticator) callerName(ctx context.Context) string {
	if a == nil {
		return ""
	}
	token, err := bearer(ctx)
	if err != nil {
		return ""
	}
	e := a.lookup(token)
	if e == nil {
		return ""
	}
	if e.p.Role == RoleNode {
		if v := metadata.ValueFromIncomingContext(ctx, OnBehalfOfKey); len(v) > 0 {
			return e.p.Name + " for " + v[0]
		}
	}
	return e.p.Name
}
