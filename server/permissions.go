package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
)

// rule is who may call one method: any caller without a token (health), any
// principal (reflection), or the listed roles.
type rule struct {
	open  bool
	any   bool
	roles []Role
}

var (
	channelRoles = []Role{RoleStorefront, RoleRep, RoleMarketplace}
	// sellerWrite: the channel-scoped roles, for their own channel.
	sellerWrite = rule{roles: channelRoles}
	// sellerRead: those, plus admin for any channel.
	sellerRead  = rule{roles: append(append([]Role(nil), channelRoles...), RoleAdmin)}
	erpOnly     = rule{roles: []Role{RoleERP}}
	adminOnly   = rule{roles: []Role{RoleAdmin}}
	configRead  = rule{roles: []Role{RoleAdmin, RoleERP}}
	nodeOnly    = rule{roles: []Role{RoleNode}}
	anyoneOpen  = rule{open: true}
	anyCallerOK = rule{any: true}
)

// serviceRules gives a service's methods the same rule; methodRules names
// single methods and wins. A method in neither is denied to everyone, so a
// new RPC is closed until it is listed here (TestEveryMethodHasARule).
var serviceRules = map[string]rule{
	stockdv1.Erp_ServiceDesc.ServiceName:       erpOnly,
	stockdv1.Cluster_ServiceDesc.ServiceName:   adminOnly,
	"stockd.peer.v1.Peer":                      nodeOnly,
	"grpc.health.v1.Health":                    anyoneOpen,
	"grpc.reflection.v1.ServerReflection":      anyCallerOK,
	"grpc.reflection.v1alpha.ServerReflection": anyCallerOK,
}

var methodRules = map[string]rule{
	stockdv1.Inventory_GetAvailability_FullMethodName:  sellerRead,
	stockdv1.Inventory_GetReservation_FullMethodName:   sellerRead,
	stockdv1.Inventory_ListReservations_FullMethodName: sellerRead,
	stockdv1.Inventory_GetOrder_FullMethodName:         sellerRead,
	stockdv1.Inventory_ListChanges_FullMethodName:      sellerRead,
	stockdv1.Inventory_ListAvailability_FullMethodName: sellerRead,
	stockdv1.Inventory_Watch_FullMethodName:            sellerRead,
	stockdv1.Inventory_Reserve_FullMethodName:          sellerWrite,
	stockdv1.Inventory_Confirm_FullMethodName:          sellerWrite,
	stockdv1.Inventory_Release_FullMethodName:          sellerWrite,
	stockdv1.Inventory_Extend_FullMethodName:           sellerWrite,
	stockdv1.Inventory_CancelOrder_FullMethodName:      sellerWrite,
	stockdv1.Inventory_ReleaseAll_FullMethodName:       sellerWrite,
	stockdv1.Inventory_ReserveStream_FullMethodName:    sellerWrite,
	stockdv1.Admin_ListLocations_FullMethodName:        configRead,
	stockdv1.Admin_ListChannels_FullMethodName:         configRead,
	stockdv1.Admin_ListBuffers_FullMethodName:          configRead,
	stockdv1.Admin_ListLocationGroups_FullMethodName:   configRead,
	stockdv1.Admin_ListSkus_FullMethodName:             configRead,
	stockdv1.Admin_PutLocation_FullMethodName:          adminOnly,
	stockdv1.Admin_PutChannel_FullMethodName:           adminOnly,
	stockdv1.Admin_SetBuffer_FullMethodName:            adminOnly,
	stockdv1.Admin_DeleteLocation_FullMethodName:       adminOnly,
	stockdv1.Admin_DeleteChannel_FullMethodName:        adminOnly,
	stockdv1.Admin_PutLocationGroup_FullMethodName:     adminOnly,
	stockdv1.Admin_DeleteLocationGroup_FullMethodName:  adminOnly,
	stockdv1.Admin_PutSku_FullMethodName:               adminOnly,
	stockdv1.Admin_DeleteSku_FullMethodName:            adminOnly,
}

// ruleFor returns the rule of a full method name and whether one exists.
func ruleFor(method string) (rule, bool) {
	if r, ok := methodRules[method]; ok {
		return r, true
	}
	svc, _, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok {
		return rule{}, false
	}
	r, ok := serviceRules[svc]
	return r, ok
}

// authenticate is the go-grpc-middleware auth function: it finds the
// caller's principal by bearer token (UNAUTHENTICATED without a valid one)
// and checks the method's rule for its role (PERMISSION_DENIED). The
// principal goes into the returned context for the interceptors after it.
func (a *Authenticator) authenticate(ctx context.Context) (context.Context, error) {
	method, _ := grpc.Method(ctx)
	r, ok := ruleFor(method)
	if ok && r.open {
		return ctx, nil
	}
	token, err := bearer(ctx)
	if err != nil {
		return nil, err
	}
	e := a.lookup(token)
	if e == nil {
		return nil, status.Error(codes.Unauthenticated, "authorization: unknown token")
	}
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "%s: no role may call it", method)
	}
	allowed := r.any
	for _, role := range r.roles {
		allowed = allowed || role == e.p.Role
	}
	if !allowed {
		return nil, status.Errorf(codes.PermissionDenied, "%s: principal %q has role %s; allowed: %v", method, e.p.Name, e.p.Role, r.roles)
	}
	return context.WithValue(ctx, principalKey{}, e), nil
}

// checkChannel refuses a request that acts for another channel than its
// channel-scoped principal's. Requests without a channel field pass: the
// role rule already decided for them.
func checkChannel(ctx context.Context, req any) error {
	e, ok := ctx.Value(principalKey{}).(*authEntry)
	if !ok || !e.p.Role.channelScoped() {
		return nil
	}
	var ch string
	switch m := req.(type) {
	case *stockdv1.ReserveStreamRequest:
		c, ok := reserveStreamOp(m)
		if !ok {
			return nil // no op: validation answers it
		}
		ch = c
	case interface{ GetChannel() string }:
		ch = m.GetChannel()
	default:
		return nil
	}
	if ch != e.p.Channel {
		return status.Errorf(codes.PermissionDenied, "channel: principal %q acts for channel %q, not %q", e.p.Name, e.p.Channel, ch)
	}
	return nil
}

// reserveStreamOp returns the channel of a ReserveStream message's op.
func reserveStreamOp(m *stockdv1.ReserveStreamRequest) (string, bool) {
	switch {
	case m.GetReserve() != nil:
		return m.GetReserve().GetChannel(), true
	case m.GetConfirm() != nil:
		return m.GetConfirm().GetChannel(), true
	case m.GetRelease() != nil:
		return m.GetRelease().GetChannel(), true
	}
	return "", false
}

// allow takes one call from ctx's principal's rate limit, or answers
// RESOURCE_EXHAUSTED with a google.rpc.RetryInfo saying when to retry.
func allow(ctx context.Context) error {
	e, ok := ctx.Value(principalKey{}).(*authEntry)
	if !ok || e.limiter == nil || e.limiter.Allow() {
		return nil
	}
	r := e.limiter.Reserve()
	wait := r.Delay()
	r.Cancel()
	if wait <= 0 || wait == rate.InfDuration {
		wait = time.Second
	}
	st := status.New(codes.ResourceExhausted, fmt.Sprintf("rate limit: principal %q is over its rate_limit; retry after %v", e.p.Name, wait.Round(time.Millisecond)))
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); err == nil {
		st = d
	}
	return st.Err()
}

// authInterceptors returns, for a, the auth, rate limit and channel check
// interceptors, in that order.
func authInterceptors(a *Authenticator) ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	unary := []grpc.UnaryServerInterceptor{
		auth.UnaryServerInterceptor(a.authenticate),
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := allow(ctx); err != nil {
				return nil, err
			}
			if err := checkChannel(ctx, req); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		},
	}
	stream := []grpc.StreamServerInterceptor{
		auth.StreamServerInterceptor(a.authenticate),
		func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if err := allow(ss.Context()); err != nil {
				return err
			}
			return handler(srv, &channelCheckedStream{ServerStream: ss})
		},
	}
	return unary, stream
}

// channelCheckedStream checks each message a client sends for its channel;
// a message for another channel ends the stream with PERMISSION_DENIED.
// ReserveStream's requests are checked one by one by its handler instead,
// which answers a refused one and goes on.
type channelCheckedStream struct {
	grpc.ServerStream
}

func (s *channelCheckedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if _, ok := m.(*stockdv1.ReserveStreamRequest); ok {
		return nil // answered one by one in the stream (stream.go)
	}
	return checkChannel(s.Context(), m)
}
