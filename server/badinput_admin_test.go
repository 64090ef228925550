package server

import (
	"context"
	"fmt"
	"math"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/stockd/stockd/api/stockdv1"
)

// TestBadInputAdmin covers every field of the Admin and Cluster RPCs.
func TestBadInputAdmin(t *testing.T) {
	b := newBadServer(t)
	b.seedBad(t)

	putLocation := func(l *stockdv1.Location) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			_, err := b.adm.PutLocation(ctx, &stockdv1.PutLocationRequest{Location: l})
			return err
		}
	}
	putChannel := func(edit func(c *stockdv1.Channel)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			c := &stockdv1.Channel{Id: "shop", Locations: []string{"WH1", "WH2"}}
			if edit == nil {
				c = nil
			} else {
				edit(c)
			}
			_, err := b.adm.PutChannel(ctx, &stockdv1.PutChannelRequest{Channel: c})
			return err
		}
	}
	setBuffer := func(edit func(r *stockdv1.SetBufferRequest)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			r := &stockdv1.SetBufferRequest{Item: "ROSE", Channel: "web", Location: "WH1", BufferBaseUnits: 3}
			edit(r)
			_, err := b.adm.SetBuffer(ctx, r)
			return err
		}
	}
	putGroup := func(edit func(g *stockdv1.LocationGroup)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			g := &stockdv1.LocationGroup{Id: "south", Locations: []string{"WH2", "WH1"}}
			if edit == nil {
				g = nil
			} else {
				edit(g)
			}
			_, err := b.adm.PutLocationGroup(ctx, &stockdv1.PutLocationGroupRequest{Group: g})
			return err
		}
	}
	putSku := func(edit func(k *stockdv1.Sku)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			k := &stockdv1.Sku{Sku: "TULIP-10", Item: "TULIP", Factor: 10}
			if edit == nil {
				k = nil
			} else {
				edit(k)
			}
			_, err := b.adm.PutSku(ctx, &stockdv1.PutSkuRequest{Sku: k})
			return err
		}
	}
	deleteLocation := func(id string) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			_, err := b.adm.DeleteLocation(ctx, &stockdv1.DeleteLocationRequest{Id: id})
			return err
		}
	}
	deleteChannel := func(id string) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			_, err := b.adm.DeleteChannel(ctx, &stockdv1.DeleteChannelRequest{Id: id})
			return err
		}
	}
	deleteGroup := func(id string) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			_, err := b.adm.DeleteLocationGroup(ctx, &stockdv1.DeleteLocationGroupRequest{Id: id})
			return err
		}
	}
	deleteSku := func(sku string) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			_, err := b.adm.DeleteSku(ctx, &stockdv1.DeleteSkuRequest{Sku: sku})
			return err
		}
	}
	join := func(edit func(r *stockdv1.JoinRequest)) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			r := &stockdv1.JoinRequest{NodeId: "n2", RaftAddr: "127.0.0.1:7301", GrpcAddr: "127.0.0.1:7401", FeatureVersion: 2}
			edit(r)
			_, err := b.clu.Join(ctx, r)
			return err
		}
	}
	many := make([]string, 65)
	for i := range many {
		many[i] = fmt.Sprintf("L%d", i)
	}
	str := func(f func(string) func(context.Context, *badServer) error) func(string) func(context.Context, *badServer) error {
		return f
	}

	var cases []badCase
	add := func(cs ...badCase) { cases = append(cases, cs...) }

	// PutLocation
	add(badCase{"PutLocation without a location is invalid", putLocation(nil), codes.InvalidArgument, "location", beforeLog})
	add(idCases("PutLocation", "location.id", str(func(v string) func(context.Context, *badServer) error {
		return putLocation(&stockdv1.Location{Id: v, Name: "x"})
	}))...)
	add(textCases("PutLocation", "location.name", str(func(v string) func(context.Context, *badServer) error {
		return putLocation(&stockdv1.Location{Id: "WH4", Name: v})
	}))...)

	// PutChannel
	add(badCase{"PutChannel without a channel is invalid", putChannel(nil), codes.InvalidArgument, "channel", beforeLog})
	add(idCases("PutChannel", "channel.id", str(func(v string) func(context.Context, *badServer) error {
		return putChannel(func(c *stockdv1.Channel) { c.Id = v })
	}))...)
	add(idCases("PutChannel", "channel.locations[1]", str(func(v string) func(context.Context, *badServer) error {
		return putChannel(func(c *stockdv1.Channel) { c.Locations[1] = v })
	}))...)
	add(textCases("PutChannel", "channel.location_group", str(func(v string) func(context.Context, *badServer) error {
		return putChannel(func(c *stockdv1.Channel) { c.Locations, c.LocationGroup = nil, v })
	}))...)
	add(
		badCase{"PutChannel without locations or group is invalid", putChannel(func(c *stockdv1.Channel) { c.Locations = nil }), codes.InvalidArgument, "channel.locations", beforeLog},
		badCase{"PutChannel with 65 locations is invalid", putChannel(func(c *stockdv1.Channel) { c.Locations = many }), codes.InvalidArgument, "channel.locations", beforeLog},
		badCase{"PutChannel listing a location twice is invalid", putChannel(func(c *stockdv1.Channel) { c.Locations = []string{"WH1", "WH2", "WH1"} }), codes.InvalidArgument, "channel.locations[2]", beforeLog},
		badCase{"PutChannel at an undeclared location is not found", putChannel(func(c *stockdv1.Channel) { c.Locations[1] = "WH9" }), codes.NotFound, "channel.locations[1]", inLog},
		badCase{"PutChannel with both locations and a group is invalid", putChannel(func(c *stockdv1.Channel) { c.LocationGroup = "north" }), codes.InvalidArgument, "channel.location_group", beforeLog},
		badCase{"PutChannel following an undeclared group is not found", putChannel(func(c *stockdv1.Channel) { c.Locations, c.LocationGroup = nil, "west" }), codes.NotFound, "channel.location_group", inLog},
		badCase{"PutChannel with a negative default buffer is invalid", putChannel(func(c *stockdv1.Channel) { c.DefaultBufferBaseUnits = -1 }), codes.InvalidArgument, "channel.default_buffer_base_units", beforeLog},
		badCase{"PutChannel with the most negative default buffer is invalid", putChannel(func(c *stockdv1.Channel) { c.DefaultBufferBaseUnits = math.MinInt64 }), codes.InvalidArgument, "channel.default_buffer_base_units", beforeLog},
	)

	// SetBuffer
	add(idCases("SetBuffer", "item", str(func(v string) func(context.Context, *badServer) error {
		return setBuffer(func(r *stockdv1.SetBufferRequest) { r.Item = v })
	}))...)
	add(textCases("SetBuffer", "channel", str(func(v string) func(context.Context, *badServer) error {
		return setBuffer(func(r *stockdv1.SetBufferRequest) { r.Channel = v })
	}))...)
	add(textCases("SetBuffer", "location", str(func(v string) func(context.Context, *badServer) error {
		return setBuffer(func(r *stockdv1.SetBufferRequest) { r.Location = v })
	}))...)
	add(
		badCase{"SetBuffer of a negative buffer is invalid", setBuffer(func(r *stockdv1.SetBufferRequest) { r.BufferBaseUnits = -1 }), codes.InvalidArgument, "buffer_base_units", beforeLog},
		badCase{"SetBuffer of the most negative buffer is invalid", setBuffer(func(r *stockdv1.SetBufferRequest) { r.BufferBaseUnits = math.MinInt64 }), codes.InvalidArgument, "buffer_base_units", beforeLog},
		badCase{"SetBuffer for an unknown channel is not found", setBuffer(func(r *stockdv1.SetBufferRequest) { r.Channel = "nope" }), codes.NotFound, "channel", inLog},
		badCase{"SetBuffer at an undeclared location is not found", setBuffer(func(r *stockdv1.SetBufferRequest) { r.Location = "WH9" }), codes.NotFound, "location", inLog},
	)

	// List filters
	for _, v := range []struct{ what, v string }{{"a 257-byte", tooLong}, {"a control character in the", ctrlID}} {
		add(
			badCase{"ListBuffers with " + v.what + " item is invalid", func(ctx context.Context, b *badServer) error {
				_, err := b.adm.ListBuffers(ctx, &stockdv1.ListBuffersRequest{Item: v.v})
				return err
			}, codes.InvalidArgument, "item", beforeLog},
			badCase{"ListSkus with " + v.what + " item is invalid", func(ctx context.Context, b *badServer) error {
				_, err := b.adm.ListSkus(ctx, &stockdv1.ListSkusRequest{Item: v.v})
				return err
			}, codes.InvalidArgument, "item", beforeLog},
		)
	}

	// Deletes
	add(idCases("DeleteLocation", "id", str(deleteLocation))...)
	add(idCases("DeleteChannel", "id", str(deleteChannel))...)
	add(idCases("DeleteLocationGroup", "id", str(deleteGroup))...)
	add(idCases("DeleteSku", "sku", str(deleteSku))...)
	add(
		badCase{"DeleteLocation of an undeclared location is not found", deleteLocation("WH9"), codes.NotFound, "id", inLog},
		badCase{"DeleteLocation of a location a channel sells from is refused", deleteLocation("WH1"), codes.FailedPrecondition, "id", inLog},
		badCase{"DeleteChannel of an unknown channel is not found", deleteChannel("nope"), codes.NotFound, "id", inLog},
		badCase{"DeleteChannel of a channel with live holds is refused", deleteChannel("web"), codes.FailedPrecondition, "id", inLog},
		badCase{"DeleteLocationGroup of an unknown group is not found", deleteGroup("west"), codes.NotFound, "id", inLog},
		badCase{"DeleteLocationGroup of a group a channel follows is refused", deleteGroup("north"), codes.FailedPrecondition, "id", inLog},
		badCase{"DeleteSku of an unmapped sku is not found", deleteSku("TULIP"), codes.NotFound, "sku", inLog},
		badCase{"DeleteSku of a sku a live hold uses is refused", deleteSku(caseSKU), codes.FailedPrecondition, "sku", inLog},
	)

	// PutLocationGroup
	add(badCase{"PutLocationGroup without a group is invalid", putGroup(nil), codes.InvalidArgument, "group", beforeLog})
	add(idCases("PutLocationGroup", "group.id", str(func(v string) func(context.Context, *badServer) error {
		return putGroup(func(g *stockdv1.LocationGroup) { g.Id = v })
	}))...)
	add(idCases("PutLocationGroup", "group.locations[0]", str(func(v string) func(context.Context, *badServer) error {
		return putGroup(func(g *stockdv1.LocationGroup) { g.Locations[0] = v })
	}))...)
	add(
		badCase{"PutLocationGroup without locations is invalid", putGroup(func(g *stockdv1.LocationGroup) { g.Locations = nil }), codes.InvalidArgument, "group.locations", beforeLog},
		badCase{"PutLocationGroup of 65 locations is invalid", putGroup(func(g *stockdv1.LocationGroup) { g.Locations = many }), codes.InvalidArgument, "group.locations", beforeLog},
		badCase{"PutLocationGroup listing a location twice is invalid", putGroup(func(g *stockdv1.LocationGroup) { g.Locations = []string{"WH2", "WH2"} }), codes.InvalidArgument, "group.locations[1]", beforeLog},
		badCase{"PutLocationGroup of an undeclared location is not found", putGroup(func(g *stockdv1.LocationGroup) { g.Locations[1] = "WH9" }), codes.NotFound, "group.locations[1]", inLog},
	)

	// PutSku
	add(badCase{"PutSku without a sku is invalid", putSku(nil), codes.InvalidArgument, "sku", beforeLog})
	add(idCases("PutSku", "sku.sku", str(func(v string) func(context.Context, *badServer) error {
		return putSku(func(k *stockdv1.Sku) { k.Sku = v })
	}))...)
	add(idCases("PutSku", "sku.item", str(func(v string) func(context.Context, *badServer) error {
		return putSku(func(k *stockdv1.Sku) { k.Item = v })
	}))...)
	for _, f := range []int64{0, -1, 1_000_001, math.MaxInt64, math.MinInt64} {
		add(badCase{fmt.Sprintf("PutSku with factor %d is invalid", f), putSku(func(k *stockdv1.Sku) { k.Factor = f }), codes.InvalidArgument, "sku.factor", beforeLog})
	}

	// Cluster: refused before the Cluster is asked (checked below).
	add(idCases("Join", "node_id", str(func(v string) func(context.Context, *badServer) error {
		return join(func(r *stockdv1.JoinRequest) { r.NodeId = v })
	}))...)
	add(idCases("Join", "raft_addr", str(func(v string) func(context.Context, *badServer) error {
		return join(func(r *stockdv1.JoinRequest) { r.RaftAddr = v })
	}))...)
	add(idCases("Join", "grpc_addr", str(func(v string) func(context.Context, *badServer) error {
		return join(func(r *stockdv1.JoinRequest) { r.GrpcAddr = v })
	}))...)
	add(
		badCase{"Join with a raft address without port is invalid", join(func(r *stockdv1.JoinRequest) { r.RaftAddr = "127.0.0.1" }), codes.InvalidArgument, "raft_addr", beforeLog},
		badCase{"Join with a grpc address without host is invalid", join(func(r *stockdv1.JoinRequest) { r.GrpcAddr = ":7401" }), codes.InvalidArgument, "grpc_addr", beforeLog},
		badCase{"Join with feature version 0 is invalid", join(func(r *stockdv1.JoinRequest) { r.FeatureVersion = 0 }), codes.InvalidArgument, "feature_version", beforeLog},
	)
	add(idCases("Leave", "node_id", str(func(v string) func(context.Context, *badServer) error {
		return func(ctx context.Context, b *badServer) error {
			_, err := b.clu.Leave(ctx, &stockdv1.LeaveRequest{NodeId: v})
			return err
		}
	}))...)

	runBadCases(t, b, cases)
	if joins, leaves, _ := b.fc.calls(); len(joins) != 0 || len(leaves) != 0 {
		t.Errorf("after refused Join and Leave calls: the cluster was asked to join %v and leave %v, want nothing", joins, leaves)
	}
}
