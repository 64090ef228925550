package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/stockdv1"
)

// Synopses of the admin commands, shown with their usage errors.
const (
	locationAddSynopsis    = "ID [--name NAME]"
	locationListSynopsis   = ""
	locationDeleteSynopsis = "ID"
	channelPutSynopsis     = "ID (--locations L1,L2,... | --group G) [--buffer N] [--require-sku-mapping]"
	channelListSynopsis    = ""
	channelDeleteSynopsis  = "ID"
	bufferSetSynopsis      = "--item I [--channel C] [--location L] N"
	bufferListSynopsis     = "[--item I]"
	bufferDeleteSynopsis   = "--item I [--channel C] [--location L]"
)

// locationAdd declares a location, or renames it.
func (s *session) locationAdd(ctx context.Context, args []string) error {
	fs := s.newFlags("location add", locationAddSynopsis)
	name := fs.String("name", "", "display name")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef(fs, locationAddSynopsis, "want exactly one location ID, got %d arguments", len(rest))
	}
	c, err := s.admin()
	if err != nil {
		return err
	}
	resp, err := c.PutLocation(ctx, &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: rest[0], Name: *name}})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	_, err = fmt.Fprintf(s.stdout, "location %s saved, revision %d\n", rest[0], resp.GetRevision())
	return err
}

// locationList prints the declared locations.
func (s *session) locationList(ctx context.Context, args []string) error {
	fs := s.newFlags("location list", locationListSynopsis)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, locationListSynopsis, "unexpected argument %q", rest[0])
	}
	c, err := s.admin()
	if err != nil {
		return err
	}
	resp, err := c.ListLocations(ctx, &stockdv1.ListLocationsRequest{})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	tw := newTable(s.stdout)
	fmt.Fprintln(tw, "ID\tNAME")
	for _, l := range resp.GetLocations() {
		fmt.Fprintf(tw, "%s\t%s\n", l.GetId(), l.GetName())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(s.stdout, "revision %d\n", resp.GetRevision())
	return err
}

// channelPut creates or replaces a channel: the locations it sees, given
// directly or as a location group it follows.
func (s *session) channelPut(ctx context.Context, args []string) error {
	fs := s.newFlags("channel put", channelPutSynopsis)
	locations := fs.String("locations", "", "comma-separated declared locations, highest priority first (this or --group)")
	group := fs.String("group", "", "a location group the channel follows (this or --locations)")
	buffer := fs.Int64("buffer", 0, "default safety buffer per item and location, in base units")
	requireMapping := fs.Bool("require-sku-mapping", false, "a SKU without a mapping (sku put) is NOT_FOUND on this channel "+
		"instead of its own item with factor 1")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef(fs, channelPutSynopsis, "want exactly one channel ID, got %d arguments", len(rest))
	}
	if (*locations == "") == (*group == "") {
		return usagef(fs, channelPutSynopsis, "want exactly one of --locations and --group")
	}
	var locs []string
	if *locations != "" {
		if locs, err = splitList(*locations); err != nil {
			return usagef(fs, channelPutSynopsis, "--locations: %v", err)
		}
	}
	if *buffer < 0 {
		return usagef(fs, channelPutSynopsis, "--buffer must be >= 0, got %d", *buffer)
	}
	c, err := s.admin()
	if err != nil {
		return err
	}
	resp, err := c.PutChannel(ctx, &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{
		Id:                     rest[0],
		Locations:              locs,
		LocationGroup:          *group,
		DefaultBufferBaseUnits: *buffer,
		RequireSkuMapping:      *requireMapping,
	}})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	_, err = fmt.Fprintf(s.stdout, "channel %s saved, revision %d\n", rest[0], resp.GetRevision())
	return err
}

// channelList prints the channels, their locations or group, default
// buffers and whether they require SKU mappings.
func (s *session) channelList(ctx context.Context, args []string) error {
	fs := s.newFlags("channel list", channelListSynopsis)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, channelListSynopsis, "unexpected argument %q", rest[0])
	}
	c, err := s.admin()
	if err != nil {
		return err
	}
	resp, err := c.ListChannels(ctx, &stockdv1.ListChannelsRequest{})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	tw := newTable(s.stdout)
	fmt.Fprintln(tw, "ID\tLOCATIONS\tGROUP\tDEFAULT_BUFFER\tREQUIRE_SKU_MAPPING")
	for _, ch := range resp.GetChannels() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%t\n", ch.GetId(), orDash(strings.Join(ch.GetLocations(), ",")),
			orDash(ch.GetLocationGroup()), ch.GetDefaultBufferBaseUnits(), ch.GetRequireSkuMapping())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(s.stdout, "revision %d\n", resp.GetRevision())
	return err
}

// bufferSet holds units of an item back from one channel (or all) at one
// location (or all); 0 removes the rule.
func (s *session) bufferSet(ctx context.Context, args []string) error {
	fs := s.newFlags("buffer set", bufferSetSynopsis)
	item := fs.String("item", "", "the item (required)")
	channel := fs.String("channel", "", "the channel (default: every channel)")
	location := fs.String("location", "", "the location (default: every location)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := requireFlags(fs, bufferSetSynopsis, "item"); err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef(fs, bufferSetSynopsis, "want exactly one buffer N in base units, got %d arguments", len(rest))
	}
	n, err := strconv.ParseInt(rest[0], 10, 64)
	if err != nil || n < 0 {
		return usagef(fs, bufferSetSynopsis, "buffer %q must be a whole number >= 0", rest[0])
	}
	c, err := s.admin()
	if err != nil {
		return err
	}
	resp, err := c.SetBuffer(ctx, &stockdv1.SetBufferRequest{
		Item:            *item,
		Channel:         *channel,
		Location:        *location,
		BufferBaseUnits: n,
	})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	_, err = fmt.Fprintf(s.stdout, "buffer of %s for %s at %s set to %d, revision %d\n",
		*item, bufferScope(*channel, "every channel"), bufferScope(*location, "every location"), n, resp.GetRevision())
	return err
}

// bufferList prints the buffer rules, of one item or all; "*" stands for
// every channel or every location.
func (s *session) bufferList(ctx context.Context, args []string) error {
	fs := s.newFlags("buffer list", bufferListSynopsis)
	item := fs.String("item", "", "only this item's rules (default: every item)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, bufferListSynopsis, "unexpected argument %q", rest[0])
	}
	c, err := s.admin()
	if err != nil {
		return err
	}
	resp, err := c.ListBuffers(ctx, &stockdv1.ListBuffersRequest{Item: *item})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	tw := newTable(s.stdout)
	fmt.Fprintln(tw, "ITEM\tCHANNEL\tLOCATION\tBUFFER")
	for _, b := range resp.GetBuffers() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", b.GetItem(), bufferScope(b.GetChannel(), "*"), bufferScope(b.GetLocation(), "*"),
			b.GetBufferBaseUnits())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(s.stdout, "revision %d\n", resp.GetRevision())
	return err
}

// bufferDelete removes one buffer rule: SetBuffer with 0. Channel and
// location name the rule exactly; leaving one out names the rule for every
// channel or location, not each of them.
func (s *session) bufferDelete(ctx context.Context, args []string) error {
	fs := s.newFlags("buffer delete", bufferDeleteSynopsis)
	item := fs.String("item", "", "the item (required)")
	channel := fs.String("channel", "", "the rule's channel (default: the rule for every channel)")
	location := fs.String("location", "", "the rule's location (default: the rule for every location)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := requireFlags(fs, bufferDeleteSynopsis, "item"); err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, bufferDeleteSynopsis, "unexpected argument %q (buffer delete takes no N; use buffer set to change one)", rest[0])
	}
	c, err := s.admin()
	if err != nil {
		return err
	}
	resp, err := c.SetBuffer(ctx, &stockdv1.SetBufferRequest{Item: *item, Channel: *channel, Location: *location})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	_, err = fmt.Fprintf(s.stdout, "buffer of %s for %s at %s removed, revision %d\n",
		*item, bufferScope(*channel, "every channel"), bufferScope(*location, "every location"), resp.GetRevision())
	return err
}

// locationDelete retires a location no channel, group, hold or order uses.
func (s *session) locationDelete(ctx context.Context, args []string) error {
	return s.deleteByID(ctx, args, "location delete", locationDeleteSynopsis, "location ID", "location", func(c stockdv1.AdminClient, id string) (revisioned, error) {
		return c.DeleteLocation(ctx, &stockdv1.DeleteLocationRequest{Id: id})
	})
}

// channelDelete retires a channel without live holds.
func (s *session) channelDelete(ctx context.Context, args []string) error {
	return s.deleteByID(ctx, args, "channel delete", channelDeleteSynopsis, "channel ID", "channel", func(c stockdv1.AdminClient, id string) (revisioned, error) {
		return c.DeleteChannel(ctx, &stockdv1.DeleteChannelRequest{Id: id})
	})
}

// revisioned is a configuration answer: the revision of the change.
type revisioned interface {
	proto.Message
	GetRevision() uint64
}

// deleteByID runs a delete command that takes one argument, what the
// argument is (for the usage error), and prints "NOUN ID deleted, revision R".
func (s *session) deleteByID(ctx context.Context, args []string, name, synopsis, arg, noun string,
	call func(stockdv1.AdminClient, string) (revisioned, error)) error {
	fs := s.newFlags(name, synopsis)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef(fs, synopsis, "want exactly one %s, got %d arguments", arg, len(rest))
	}
	c, err := s.admin()
	if err != nil {
		return err
	}
	resp, err := call(c, rest[0])
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	_, err = fmt.Fprintf(s.stdout, "%s %s deleted, revision %d\n", noun, rest[0], resp.GetRevision())
	return err
}

// bufferScope names a buffer rule's channel or location, all when empty.
func bufferScope(v, all string) string {
	if v == "" {
		return all
	}
	return v
}

// orDash shows an empty table cell as "-".
func orDash(v string) string {
	if v == "" {
		return "-"
	}
	return v
}

// splitList reads a comma-separated list with no empty entries.
func splitList(text string) ([]string, error) {
	parts := strings.Split(text, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("empty entry %d in %q", i+1, text)
		}
		parts[i] = p
	}
	return parts, nil
}
