package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
)

// The catalog of the fake: deletes, location groups, SKU mappings, buffer
// rules and incoming supply.

func (f *fakeAdmin) DeleteLocation(_ context.Context, req *stockdv1.DeleteLocationRequest) (*stockdv1.DeleteLocationResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	id := req.GetId()
	if _, ok := st.locations[id]; !ok {
		return nil, status.Errorf(codes.NotFound, "id: unknown location %q", id)
	}
	for _, chID := range sortedKeys(st.channels) {
		if slices.Contains(st.channels[chID].GetLocations(), id) {
			return nil, status.Errorf(codes.FailedPrecondition, "id: location %q is in use by channel %q", id, chID)
		}
	}
	for _, g := range sortedKeys(st.groups) {
		if slices.Contains(st.groups[g], id) {
			return nil, status.Errorf(codes.FailedPrecondition, "id: location %q is in use by location group %q", id, g)
		}
	}
	delete(st.locations, id)
	st.locOrder = slices.DeleteFunc(st.locOrder, func(l string) bool { return l == id })
	return &stockdv1.DeleteLocationResponse{Revision: st.nextRevision()}, nil
}

func (f *fakeAdmin) DeleteChannel(_ context.Context, req *stockdv1.DeleteChannelRequest) (*stockdv1.DeleteChannelResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	if _, ok := st.channels[req.GetId()]; !ok {
		return nil, status.Errorf(codes.NotFound, "id: unknown channel %q", req.GetId())
	}
	for _, r := range st.reservations {
		if r.GetChannel() == req.GetId() && r.GetState() == stockdv1.ReservationState_RESERVATION_STATE_HELD {
			return nil, status.Errorf(codes.FailedPrecondition, "id: channel %q has live holds", req.GetId())
		}
	}
	delete(st.channels, req.GetId())
	return &stockdv1.DeleteChannelResponse{Revision: st.nextRevision()}, nil
}

func (f *fakeAdmin) PutLocationGroup(_ context.Context, req *stockdv1.PutLocationGroupRequest) (*stockdv1.PutLocationGroupResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	g := req.GetGroup()
	for i, l := range g.GetLocations() {
		if _, ok := st.locations[l]; !ok {
			return nil, status.Errorf(codes.NotFound, "group.locations[%d]: unknown location %q", i, l)
		}
	}
	st.groups[g.GetId()] = g.GetLocations()
	return &stockdv1.PutLocationGroupResponse{Revision: st.nextRevision()}, nil
}

func (f *fakeAdmin) ListLocationGroups(_ context.Context, req *stockdv1.ListLocationGroupsRequest) (*stockdv1.ListLocationGroupsResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	resp := &stockdv1.ListLocationGroupsResponse{Revision: st.revision}
	for _, id := range sortedKeys(st.groups) {
		resp.Groups = append(resp.Groups, &stockdv1.LocationGroup{Id: id, Locations: st.groups[id]})
	}
	return resp, nil
}

func (f *fakeAdmin) DeleteLocationGroup(_ context.Context, req *stockdv1.DeleteLocationGroupRequest) (*stockdv1.DeleteLocationGroupResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	if _, ok := st.groups[req.GetId()]; !ok {
		return nil, status.Errorf(codes.NotFound, "id: unknown location group %q", req.GetId())
	}
	for _, chID := range sortedKeys(st.channels) {
		if st.channels[chID].GetLocationGroup() == req.GetId() {
			return nil, status.Errorf(codes.FailedPrecondition, "id: location group %q is in use by channel %q", req.GetId(), chID)
		}
	}
	delete(st.groups, req.GetId())
	return &stockdv1.DeleteLocationGroupResponse{Revision: st.nextRevision()}, nil
}

func (f *fakeAdmin) PutSku(_ context.Context, req *stockdv1.PutSkuRequest) (*stockdv1.PutSkuResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	st.skus[req.GetSku().GetSku()] = req.GetSku()
	return &stockdv1.PutSkuResponse{Revision: st.nextRevision()}, nil
}

func (f *fakeAdmin) ListSkus(_ context.Context, req *stockdv1.ListSkusRequest) (*stockdv1.ListSkusResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	resp := &stockdv1.ListSkusResponse{Revision: st.revision}
	for _, sku := range sortedKeys(st.skus) {
		if m := st.skus[sku]; req.GetItem() == "" || m.GetItem() == req.GetItem() {
			resp.Skus = append(resp.Skus, m)
		}
	}
	return resp, nil
}

func (f *fakeAdmin) DeleteSku(_ context.Context, req *stockdv1.DeleteSkuRequest) (*stockdv1.DeleteSkuResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	if _, ok := st.skus[req.GetSku()]; !ok {
		return nil, status.Errorf(codes.NotFound, "sku: unknown SKU %q", req.GetSku())
	}
	delete(st.skus, req.GetSku())
	return &stockdv1.DeleteSkuResponse{Revision: st.nextRevision()}, nil
}

// SetBuffer sets or, with 0, removes one rule.
func (f *fakeAdmin) SetBuffer(_ context.Context, req *stockdv1.SetBufferRequest) (*stockdv1.SetBufferResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	k := bufferKey{req.GetItem(), req.GetChannel(), req.GetLocation()}
	if req.GetBufferBaseUnits() == 0 {
		delete(st.buffers, k)
	} else {
		st.buffers[k] = req.GetBufferBaseUnits()
	}
	return &stockdv1.SetBufferResponse{Revision: st.nextRevision()}, nil
}

func (f *fakeAdmin) ListBuffers(_ context.Context, req *stockdv1.ListBuffersRequest) (*stockdv1.ListBuffersResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	resp := &stockdv1.ListBuffersResponse{Revision: st.revision}
	for k, n := range st.buffers {
		if req.GetItem() == "" || k.item == req.GetItem() {
			resp.Buffers = append(resp.Buffers, &stockdv1.Buffer{Item: k.item, Channel: k.channel, Location: k.location, BufferBaseUnits: n})
		}
	}
	slices.SortFunc(resp.Buffers, func(a, b *stockdv1.Buffer) int {
		return cmp.Or(cmp.Compare(a.GetItem(), b.GetItem()), cmp.Compare(a.GetChannel(), b.GetChannel()),
			cmp.Compare(a.GetLocation(), b.GetLocation()))
	})
	return resp, nil
}

// SetIncoming stores each line newer than the one held, at a declared
// location.
func (f *fakeErp) SetIncoming(_ context.Context, req *stockdv1.SetIncomingRequest) (*stockdv1.SetIncomingResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	resp := &stockdv1.SetIncomingResponse{}
	for i, l := range req.GetLines() {
		if _, ok := st.locations[l.GetLocation()]; !ok {
			resp.Rows = append(resp.Rows, &stockdv1.RowResult{
				Status: stockdv1.RowStatus_ROW_STATUS_REJECTED,
				Reason: fmt.Sprintf("lines[%d].location: unknown location %q", i, l.GetLocation()),
			})
			resp.Rejected++
			continue
		}
		if old, ok := st.incoming[l.GetPoLineId()]; ok && l.GetVersion() <= old.GetVersion() {
			resp.Rows = append(resp.Rows, &stockdv1.RowResult{Status: stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE, Version: old.GetVersion()})
			resp.IgnoredStale++
			continue
		}
		st.incoming[l.GetPoLineId()] = l
		resp.Rows = append(resp.Rows, &stockdv1.RowResult{Status: stockdv1.RowStatus_ROW_STATUS_APPLIED, Version: l.GetVersion()})
		resp.Applied++
	}
	resp.Revision = st.nextRevision()
	return resp, nil
}

func (f *fakeErp) ListIncoming(_ context.Context, req *stockdv1.ListIncomingRequest) (*stockdv1.ListIncomingResponse, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.calls = append(st.calls, req)
	resp := &stockdv1.ListIncomingResponse{Revision: st.revision}
	for _, id := range sortedKeys(st.incoming) {
		if l := st.incoming[id]; req.GetItem() == "" || l.GetItem() == req.GetItem() {
			resp.Lines = append(resp.Lines, &stockdv1.IncomingStatus{Line: l, BackorderedBaseUnits: st.backordered[id]})
		}
	}
	return resp, nil
}
