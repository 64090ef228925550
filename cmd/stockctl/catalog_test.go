package main

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/stockdv1"
)

func TestCatalogCommandsSendAndPrint(t *testing.T) {
	revision51 := func(m proto.Message) bool { return m.(revisioned).GetRevision() == 51 }
	runCommandCases(t, []commandCase{
		{
			name:     "location delete retires an unused location",
			args:     []string{"location", "delete", "lyon"},
			want:     &stockdv1.DeleteLocationRequest{Id: "lyon"},
			wantOut:  []string{"location lyon deleted, revision 51\n"},
			resp:     func() proto.Message { return &stockdv1.DeleteLocationResponse{} },
			jsonOK:   revision51,
			jsonWant: "revision 51",
		},
		{
			name: "channel put with --group follows a location group",
			args: []string{"channel", "put", "outlet", "--group", "eu", "--require-sku-mapping", "--buffer", "1"},
			want: &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: "outlet", LocationGroup: "eu",
				RequireSkuMapping: true, DefaultBufferBaseUnits: 1}},
			wantOut:  []string{"channel outlet saved, revision 51\n"},
			resp:     func() proto.Message { return &stockdv1.PutChannelResponse{} },
			jsonOK:   revision51,
			jsonWant: "revision 51",
		},
		{
			name: "channel put with --locations keeps their order",
			args: []string{"channel", "put", "reps", "--locations", "fra,ams"},
			want: &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: "reps", Locations: []string{"fra", "ams"}}},
			resp: func() proto.Message { return &stockdv1.PutChannelResponse{} },
		},
		{
			name: "channel list shows locations, group and mapping rule",
			args: []string{"channel", "list"},
			want: &stockdv1.ListChannelsRequest{},
			wantRows: [][]string{
				{"ID", "LOCATIONS", "GROUP", "DEFAULT_BUFFER", "REQUIRE_SKU_MAPPING"},
				{"web", "ams,fra", "-", "0", "false"},
			},
			wantOut: []string{"revision 50\n"},
			resp:    func() proto.Message { return &stockdv1.ListChannelsResponse{} },
			jsonOK: func(m proto.Message) bool {
				return len(m.(*stockdv1.ListChannelsResponse).GetChannels()) == 1
			},
			jsonWant: "one channel",
		},
		{
			name: "channel delete retires a channel without live holds",
			seed: func(st *fakeState) {
				st.channels["old"] = &stockdv1.Channel{Id: "old", Locations: []string{"lyon"}}
			},
			args:     []string{"channel", "delete", "old"},
			want:     &stockdv1.DeleteChannelRequest{Id: "old"},
			wantOut:  []string{"channel old deleted, revision 51\n"},
			resp:     func() proto.Message { return &stockdv1.DeleteChannelResponse{} },
			jsonOK:   revision51,
			jsonWant: "revision 51",
		},
		{
			name:     "group put sends the locations in order",
			args:     []string{"group", "put", "west", "--locations", "lyon, ams"},
			want:     &stockdv1.PutLocationGroupRequest{Group: &stockdv1.LocationGroup{Id: "west", Locations: []string{"lyon", "ams"}}},
			wantOut:  []string{"group west saved, revision 51\n"},
			resp:     func() proto.Message { return &stockdv1.PutLocationGroupResponse{} },
			jsonOK:   revision51,
			jsonWant: "revision 51",
		},
		{
			name:     "group list prints each group's locations",
			args:     []string{"group", "list"},
			want:     &stockdv1.ListLocationGroupsRequest{},
			wantRows: [][]string{{"ID", "LOCATIONS"}, {"eu", "fra,ams"}},
			wantOut:  []string{"revision 50\n"},
			resp:     func() proto.Message { return &stockdv1.ListLocationGroupsResponse{} },
			jsonOK: func(m proto.Message) bool {
				g := m.(*stockdv1.ListLocationGroupsResponse).GetGroups()
				return len(g) == 1 && g[0].GetId() == "eu"
			},
			jsonWant: "group eu",
		},
		{
			name:     "group delete removes an unused group",
			args:     []string{"group", "delete", "eu"},
			want:     &stockdv1.DeleteLocationGroupRequest{Id: "eu"},
			wantOut:  []string{"group eu deleted, revision 51\n"},
			resp:     func() proto.Message { return &stockdv1.DeleteLocationGroupResponse{} },
			jsonOK:   revision51,
			jsonWant: "revision 51",
		},
		{
			name:     "sku put maps a SKU to an item and factor",
			args:     []string{"sku", "put", "ROSE-CASE24", "--item", "ROSE", "--factor", "24"},
			want:     &stockdv1.PutSkuRequest{Sku: &stockdv1.Sku{Sku: "ROSE-CASE24", Item: "ROSE", Factor: 24}},
			wantOut:  []string{"SKU ROSE-CASE24 = 24 x ROSE saved, revision 51\n"},
			resp:     func() proto.Message { return &stockdv1.PutSkuResponse{} },
			jsonOK:   revision51,
			jsonWant: "revision 51",
		},
		{
			name: "sku put defaults the factor to 1",
			args: []string{"sku", "put", "ROSE-EACH", "--item", "ROSE"},
			want: &stockdv1.PutSkuRequest{Sku: &stockdv1.Sku{Sku: "ROSE-EACH", Item: "ROSE", Factor: 1}},
			resp: func() proto.Message { return &stockdv1.PutSkuResponse{} },
		},
		{
			name:     "sku list of one item",
			args:     []string{"sku", "list", "--item", "ROSE"},
			want:     &stockdv1.ListSkusRequest{Item: "ROSE"},
			wantRows: [][]string{{"SKU", "ITEM", "FACTOR"}, {"ROSE-CASE12", "ROSE", "12"}},
			wantOut:  []string{"revision 50\n"},
			resp:     func() proto.Message { return &stockdv1.ListSkusResponse{} },
			jsonOK: func(m proto.Message) bool {
				k := m.(*stockdv1.ListSkusResponse).GetSkus()
				return len(k) == 1 && k[0].GetFactor() == 12
			},
			jsonWant: "ROSE-CASE12 with factor 12",
		},
		{
			name:     "sku delete removes a mapping",
			args:     []string{"sku", "delete", "ROSE-CASE12"},
			want:     &stockdv1.DeleteSkuRequest{Sku: "ROSE-CASE12"},
			wantOut:  []string{"SKU ROSE-CASE12 deleted, revision 51\n"},
			resp:     func() proto.Message { return &stockdv1.DeleteSkuResponse{} },
			jsonOK:   revision51,
			jsonWant: "revision 51",
		},
		{
			name: "buffer list shows * for every channel or location",
			args: []string{"buffer", "list", "--item", "ROSE"},
			want: &stockdv1.ListBuffersRequest{Item: "ROSE"},
			wantRows: [][]string{
				{"ITEM", "CHANNEL", "LOCATION", "BUFFER"},
				{"ROSE", "*", "*", "2"},
				{"ROSE", "web", "ams", "6"},
			},
			wantOut: []string{"revision 50\n"},
			resp:    func() proto.Message { return &stockdv1.ListBuffersResponse{} },
			jsonOK: func(m proto.Message) bool {
				return len(m.(*stockdv1.ListBuffersResponse).GetBuffers()) == 2
			},
			jsonWant: "two rules",
		},
		{
			name:     "buffer delete sets the rule to 0",
			args:     []string{"buffer", "delete", "--item", "ROSE", "--channel", "web", "--location", "ams"},
			want:     &stockdv1.SetBufferRequest{Item: "ROSE", Channel: "web", Location: "ams"},
			wantOut:  []string{"buffer of ROSE for web at ams removed, revision 51\n"},
			resp:     func() proto.Message { return &stockdv1.SetBufferResponse{} },
			jsonOK:   revision51,
			jsonWant: "revision 51",
		},
		{
			name:    "buffer delete of the item-wide rule",
			args:    []string{"buffer", "delete", "--item", "ROSE"},
			want:    &stockdv1.SetBufferRequest{Item: "ROSE"},
			wantOut: []string{"buffer of ROSE for every channel at every location removed, revision 51\n"},
			resp:    func() proto.Message { return &stockdv1.SetBufferResponse{} },
		},
	})
}

func TestCatalogUsageAndServerErrors(t *testing.T) {
	runUsageCases(t, []usageCase{
		{"location delete needs an ID", []string{"location", "delete"}, 2,
			"stockctl: location delete: want exactly one location ID, got 0 arguments\nusage: stockctl location delete ID\n"},
		{"location delete takes one ID", []string{"location", "delete", "ams", "fra"}, 2, "want exactly one location ID, got 2 arguments"},
		{"channel put needs locations or a group", []string{"channel", "put", "x"}, 2,
			"channel put: want exactly one of --locations and --group"},
		{"channel put refuses both", []string{"channel", "put", "x", "--locations", "ams", "--group", "eu"}, 2,
			"want exactly one of --locations and --group"},
		{"channel delete needs an ID", []string{"channel", "delete"}, 2, "want exactly one channel ID"},
		{"group put needs locations", []string{"group", "put", "g"}, 2, "group put: --locations is required"},
		{"group put refuses an empty entry", []string{"group", "put", "g", "--locations", "ams,,fra"}, 2, `--locations: empty entry 2 in "ams,,fra"`},
		{"group put needs an ID", []string{"group", "put", "--locations", "ams"}, 2, "want exactly one group ID, got 0 arguments"},
		{"group list takes no arguments", []string{"group", "list", "eu"}, 2, `group list: unexpected argument "eu"`},
		{"group delete needs an ID", []string{"group", "delete"}, 2, "want exactly one group ID"},
		{"sku put needs an item", []string{"sku", "put", "ROSE-CASE24"}, 2, "sku put: --item is required"},
		{"sku put refuses factor 0", []string{"sku", "put", "X", "--item", "I", "--factor", "0"}, 2, "--factor must be in [1, 1000000], got 0"},
		{"sku put refuses a huge factor", []string{"sku", "put", "X", "--item", "I", "--factor", "1000001"}, 2, "--factor must be in [1, 1000000]"},
		{"sku put needs one SKU", []string{"sku", "put", "--item", "I"}, 2, "want exactly one SKU, got 0 arguments"},
		{"sku list takes no arguments", []string{"sku", "list", "ROSE"}, 2, `sku list: unexpected argument "ROSE"`},
		{"sku delete needs a SKU", []string{"sku", "delete"}, 2, "sku delete: want exactly one SKU, got 0 arguments"},
		{"buffer list takes no arguments", []string{"buffer", "list", "ROSE"}, 2, `unexpected argument "ROSE"`},
		{"buffer delete needs an item", []string{"buffer", "delete", "--channel", "web"}, 2, "buffer delete: --item is required"},
		{"buffer delete takes no N", []string{"buffer", "delete", "--item", "ROSE", "0"}, 2, "buffer delete takes no N"},
		{"an unknown sku verb", []string{"sku", "rename"}, 2, `sku: unknown subcommand "rename" (one of: delete, list, put)`},
		{"group without verb", []string{"group"}, 2, "group: missing subcommand (one of: delete, list, put)"},
		{"deleting a location a channel sees", []string{"location", "delete", "ams"}, 1,
			"stockctl: FAILED_PRECONDITION: id: location \"ams\" is in use by channel \"web\"\n"},
		{"deleting a channel with live holds", []string{"channel", "delete", "web"}, 1,
			"stockctl: FAILED_PRECONDITION: id: channel \"web\" has live holds\n"},
		{"deleting an unknown SKU mapping", []string{"sku", "delete", "TULIP"}, 1,
			"stockctl: NOT_FOUND: sku: unknown SKU \"TULIP\"\n"},
		{"a channel following an unknown group", []string{"channel", "put", "x", "--group", "asia"}, 1,
			"stockctl: NOT_FOUND: channel.location_group: unknown location group \"asia\"\n"},
	})
}
