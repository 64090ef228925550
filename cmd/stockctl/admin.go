package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/stockd/stockd/api/stockdv1"
)

// Synopses of the admin commands, shown with their usage errors.
const (
	locationAddSynopsis  = "ID [--name NAME]"
	locationListSynopsis = ""
	channelPutSynopsis   = "ID --locations L1,L2,... [--buffer N]"
	channelListSynopsis  = ""
	bufferSetSynopsis    = "--item I [--channel C] [--location L] N"
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

// channelPut creates or replaces a channel.
func (s *session) channelPut(ctx context.Context, args []string) error {
	fs := s.newFlags("channel put", channelPutSynopsis)
	locations := fs.String("locations", "", "comma-separated declared locations, highest priority first (required)")
	buffer := fs.Int64("buffer", 0, "default safety buffer per item and location, in base units")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef(fs, channelPutSynopsis, "want exactly one channel ID, got %d arguments", len(rest))
	}
	if err := requireFlags(fs, channelPutSynopsis, "locations"); err != nil {
		return err
	}
	locs, err := splitList(*locations)
	if err != nil {
		return usagef(fs, channelPutSynopsis, "--locations: %v", err)
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
		DefaultBufferBaseUnits: *buffer,
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

// channelList prints the channels, their locations and default buffers.
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
	fmt.Fprintln(tw, "ID\tLOCATIONS\tDEFAULT_BUFFER")
	for _, ch := range resp.GetChannels() {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", ch.GetId(), strings.Join(ch.GetLocations(), ","), ch.GetDefaultBufferBaseUnits())
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
	scope := func(v, all string) string {
		if v == "" {
			return all
		}
		return v
	}
	_, err = fmt.Fprintf(s.stdout, "buffer of %s for %s at %s set to %d, revision %d\n",
		*item, scope(*channel, "every channel"), scope(*location, "every location"), n, resp.GetRevision())
	return err
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
