package server

import (
	"context"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
)

// admin serves stockdv1.Admin: locations, channels and safety buffers.
type admin struct {
	stockdv1.UnimplementedAdminServer
	s *Server
}

// PutLocation declares or renames a location.
func (a *admin) PutLocation(ctx context.Context, req *stockdv1.PutLocationRequest) (*stockdv1.PutLocationResponse, error) {
	s := a.s
	loc := req.GetLocation()
	if loc == nil {
		return nil, s.status(ctx, invalid("location", "is required"))
	}
	res, err := s.propose(ctx, &logv1.Command{Kind: &logv1.Command_PutLocation{PutLocation: &logv1.PutLocation{
		Id:   loc.GetId(),
		Name: loc.GetName(),
	}}})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &stockdv1.PutLocationResponse{Revision: uint64(res.Revision)}, nil
}

// ListLocations lists declared locations, stamped with the revision read first.
func (a *admin) ListLocations(ctx context.Context, _ *stockdv1.ListLocationsRequest) (*stockdv1.ListLocationsResponse, error) {
	s := a.s
	resp := &stockdv1.ListLocationsResponse{Revision: uint64(s.reader.AppliedIndex())}
	locs := s.reader.Locations()
	resp.Locations = make([]*stockdv1.Location, len(locs))
	for i, l := range locs {
		resp.Locations[i] = locationToProto(l)
	}
	return resp, nil
}

// PutChannel creates or replaces a channel.
func (a *admin) PutChannel(ctx context.Context, req *stockdv1.PutChannelRequest) (*stockdv1.PutChannelResponse, error) {
	s := a.s
	ch := req.GetChannel()
	if ch == nil {
		return nil, s.status(ctx, invalid("channel", "is required"))
	}
	res, err := s.propose(ctx, &logv1.Command{Kind: &logv1.Command_PutChannel{PutChannel: &logv1.PutChannel{
		Id:                     ch.GetId(),
		Locations:              ch.GetLocations(),
		DefaultBufferBaseUnits: ch.GetDefaultBufferBaseUnits(),
	}}})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &stockdv1.PutChannelResponse{Revision: uint64(res.Revision)}, nil
}

// ListChannels lists channels, stamped with the revision read first.
func (a *admin) ListChannels(ctx context.Context, _ *stockdv1.ListChannelsRequest) (*stockdv1.ListChannelsResponse, error) {
	s := a.s
	resp := &stockdv1.ListChannelsResponse{Revision: uint64(s.reader.AppliedIndex())}
	chs := s.reader.Channels()
	resp.Channels = make([]*stockdv1.Channel, len(chs))
	for i, c := range chs {
		resp.Channels[i] = channelToProto(c)
	}
	return resp, nil
}

// SetBuffer sets or (with 0) removes a safety-buffer rule.
func (a *admin) SetBuffer(ctx context.Context, req *stockdv1.SetBufferRequest) (*stockdv1.SetBufferResponse, error) {
	s := a.s
	res, err := s.propose(ctx, &logv1.Command{Kind: &logv1.Command_SetBuffer{SetBuffer: &logv1.SetBuffer{
		Item:            req.GetItem(),
		Channel:         req.GetChannel(),
		Location:        req.GetLocation(),
		BufferBaseUnits: req.GetBufferBaseUnits(),
	}}})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &stockdv1.SetBufferResponse{Revision: uint64(res.Revision)}, nil
}
