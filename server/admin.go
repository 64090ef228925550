package server

import (
	"context"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
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
	if err := s.awaitCaughtUp(ctx); err != nil {
		return nil, s.status(ctx, err)
	}
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
		LocationGroup:          ch.GetLocationGroup(),
		RequireSkuMapping:      ch.GetRequireSkuMapping(),
	}}})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &stockdv1.PutChannelResponse{Revision: uint64(res.Revision)}, nil
}

// ListChannels lists channels, stamped with the revision read first.
func (a *admin) ListChannels(ctx context.Context, _ *stockdv1.ListChannelsRequest) (*stockdv1.ListChannelsResponse, error) {
	s := a.s
	if err := s.awaitCaughtUp(ctx); err != nil {
		return nil, s.status(ctx, err)
	}
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

// ListBuffers lists buffer rules of one item or all.
func (a *admin) ListBuffers(ctx context.Context, req *stockdv1.ListBuffersRequest) (*stockdv1.ListBuffersResponse, error) {
	s := a.s
	if err := checkFilter("item", req.GetItem()); err != nil {
		return nil, s.status(ctx, err)
	}
	if err := s.awaitCaughtUp(ctx); err != nil {
		return nil, s.status(ctx, err)
	}
	resp := &stockdv1.ListBuffersResponse{Revision: uint64(s.reader.AppliedIndex())}
	for _, b := range s.reader.Buffers(store.ItemID(req.GetItem())) {
		resp.Buffers = append(resp.Buffers, &stockdv1.Buffer{Item: string(b.Item), Channel: string(b.Channel),
			Location: string(b.Location), BufferBaseUnits: int64(b.Units)})
	}
	return resp, nil
}

// DeleteLocation retires a location no channel, group, hold or order uses.
func (a *admin) DeleteLocation(ctx context.Context, req *stockdv1.DeleteLocationRequest) (*stockdv1.DeleteLocationResponse, error) {
	rev, err := a.s.proposeConfig(ctx, &logv1.Command{Kind: &logv1.Command_DeleteLocation{DeleteLocation: &logv1.DeleteLocation{Id: req.GetId()}}})
	if err != nil {
		return nil, err
	}
	return &stockdv1.DeleteLocationResponse{Revision: rev}, nil
}

// DeleteChannel retires a channel without live holds.
func (a *admin) DeleteChannel(ctx context.Context, req *stockdv1.DeleteChannelRequest) (*stockdv1.DeleteChannelResponse, error) {
	rev, err := a.s.proposeConfig(ctx, &logv1.Command{Kind: &logv1.Command_DeleteChannel{DeleteChannel: &logv1.DeleteChannel{Id: req.GetId()}}})
	if err != nil {
		return nil, err
	}
	return &stockdv1.DeleteChannelResponse{Revision: rev}, nil
}

// PutLocationGroup creates or replaces a location group.
func (a *admin) PutLocationGroup(ctx context.Context, req *stockdv1.PutLocationGroupRequest) (*stockdv1.PutLocationGroupResponse, error) {
	g := req.GetGroup()
	if g == nil {
		return nil, a.s.status(ctx, invalid("group", "is required"))
	}
	rev, err := a.s.proposeConfig(ctx, &logv1.Command{Kind: &logv1.Command_PutLocationGroup{PutLocationGroup: &logv1.PutLocationGroup{
		Id: g.GetId(), Locations: g.GetLocations()}}})
	if err != nil {
		return nil, err
	}
	return &stockdv1.PutLocationGroupResponse{Revision: rev}, nil
}

// ListLocationGroups lists location groups.
func (a *admin) ListLocationGroups(ctx context.Context, _ *stockdv1.ListLocationGroupsRequest) (*stockdv1.ListLocationGroupsResponse, error) {
	s := a.s
	if err := s.awaitCaughtUp(ctx); err != nil {
		return nil, s.status(ctx, err)
	}
	resp := &stockdv1.ListLocationGroupsResponse{Revision: uint64(s.reader.AppliedIndex())}
	for _, g := range s.reader.LocationGroups() {
		resp.Groups = append(resp.Groups, &stockdv1.LocationGroup{Id: g.ID, Locations: locationIDs(g.Locations)})
	}
	return resp, nil
}

// DeleteLocationGroup retires a group no channel uses.
func (a *admin) DeleteLocationGroup(ctx context.Context, req *stockdv1.DeleteLocationGroupRequest) (*stockdv1.DeleteLocationGroupResponse, error) {
	rev, err := a.s.proposeConfig(ctx, &logv1.Command{Kind: &logv1.Command_DeleteLocationGroup{DeleteLocationGroup: &logv1.DeleteLocationGroup{Id: req.GetId()}}})
	if err != nil {
		return nil, err
	}
	return &stockdv1.DeleteLocationGroupResponse{Revision: rev}, nil
}

// PutSku maps a SKU to an item with a pack factor.
func (a *admin) PutSku(ctx context.Context, req *stockdv1.PutSkuRequest) (*stockdv1.PutSkuResponse, error) {
	k := req.GetSku()
	if k == nil {
		return nil, a.s.status(ctx, invalid("sku", "is required"))
	}
	rev, err := a.s.proposeConfig(ctx, &logv1.Command{Kind: &logv1.Command_PutSku{PutSku: &logv1.PutSku{
		Sku: k.GetSku(), Item: k.GetItem(), Factor: k.GetFactor()}}})
	if err != nil {
		return nil, err
	}
	return &stockdv1.PutSkuResponse{Revision: rev}, nil
}

// ListSkus lists SKU mappings of one item or all.
func (a *admin) ListSkus(ctx context.Context, req *stockdv1.ListSkusRequest) (*stockdv1.ListSkusResponse, error) {
	s := a.s
	if err := checkFilter("item", req.GetItem()); err != nil {
		return nil, s.status(ctx, err)
	}
	if err := s.awaitCaughtUp(ctx); err != nil {
		return nil, s.status(ctx, err)
	}
	resp := &stockdv1.ListSkusResponse{Revision: uint64(s.reader.AppliedIndex())}
	for _, k := range s.reader.SKUs(store.ItemID(req.GetItem())) {
		resp.Skus = append(resp.Skus, &stockdv1.Sku{Sku: string(k.SKU), Item: string(k.Item), Factor: int64(k.Factor)})
	}
	return resp, nil
}

// DeleteSku removes a SKU mapping no live hold uses.
func (a *admin) DeleteSku(ctx context.Context, req *stockdv1.DeleteSkuRequest) (*stockdv1.DeleteSkuResponse, error) {
	rev, err := a.s.proposeConfig(ctx, &logv1.Command{Kind: &logv1.Command_DeleteSku{DeleteSku: &logv1.DeleteSku{Sku: req.GetSku()}}})
	if err != nil {
		return nil, err
	}
	return &stockdv1.DeleteSkuResponse{Revision: rev}, nil
}

// proposeConfig proposes a command whose answer is only its revision, and
// returns errors already turned into statuses.
func (s *Server) proposeConfig(ctx context.Context, cmd *logv1.Command) (uint64, error) {
	res, err := s.propose(ctx, cmd)
	if err != nil {
		return 0, s.status(ctx, err)
	}
	return uint64(res.Revision), nil
}
