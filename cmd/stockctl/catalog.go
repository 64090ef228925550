package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/stockd/stockd/api/stockdv1"
)

// Synopses of the location group and SKU mapping commands, shown with their
// usage errors.
const (
	groupPutSynopsis    = "ID --locations L1,L2,..."
	groupListSynopsis   = ""
	groupDeleteSynopsis = "ID"
	skuPutSynopsis      = "SKU --item I [--factor 1]"
	skuListSynopsis     = "[--item I]"
	skuDeleteSynopsis   = "SKU"
)

// maxFactor is the largest pack factor PutSku accepts.
const maxFactor = 1_000_000

// groupPut creates or replaces a location group; the channels that follow it
// see its new locations.
func (s *session) groupPut(ctx context.Context, args []string) error {
	fs := s.newFlags("group put", groupPutSynopsis)
	locations := fs.String("locations", "", "comma-separated declared locations, highest priority first (required)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef(fs, groupPutSynopsis, "want exactly one group ID, got %d arguments", len(rest))
	}
	if err := requireFlags(fs, groupPutSynopsis, "locations"); err != nil {
		return err
	}
	locs, err := splitList(*locations)
	if err != nil {
		return usagef(fs, groupPutSynopsis, "--locations: %v", err)
	}
	c, err := s.admin()
	if err != nil {
		return err
	}
	resp, err := c.PutLocationGroup(ctx, &stockdv1.PutLocationGroupRequest{Group: &stockdv1.LocationGroup{Id: rest[0], Locations: locs}})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	_, err = fmt.Fprintf(s.stdout, "group %s saved, revision %d\n", rest[0], resp.GetRevision())
	return err
}

// groupList prints the location groups and their locations.
func (s *session) groupList(ctx context.Context, args []string) error {
	fs := s.newFlags("group list", groupListSynopsis)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, groupListSynopsis, "unexpected argument %q", rest[0])
	}
	c, err := s.admin()
	if err != nil {
		return err
	}
	resp, err := c.ListLocationGroups(ctx, &stockdv1.ListLocationGroupsRequest{})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	tw := newTable(s.stdout)
	fmt.Fprintln(tw, "ID\tLOCATIONS")
	for _, g := range resp.GetGroups() {
		fmt.Fprintf(tw, "%s\t%s\n", g.GetId(), strings.Join(g.GetLocations(), ","))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(s.stdout, "revision %d\n", resp.GetRevision())
	return err
}

// groupDelete removes a location group no channel follows.
func (s *session) groupDelete(ctx context.Context, args []string) error {
	return s.deleteByID(ctx, args, "group delete", groupDeleteSynopsis, "group ID", "group", func(c stockdv1.AdminClient, id string) (revisioned, error) {
		return c.DeleteLocationGroup(ctx, &stockdv1.DeleteLocationGroupRequest{Id: id})
	})
}

// skuPut maps a channel SKU to an ERP item with a pack factor.
func (s *session) skuPut(ctx context.Context, args []string) error {
	fs := s.newFlags("sku put", skuPutSynopsis)
	item := fs.String("item", "", "the ERP item the SKU draws from (required)")
	factor := fs.Int64("factor", 1, fmt.Sprintf("base units of the item per SKU unit, 1 to %d", maxFactor))
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef(fs, skuPutSynopsis, "want exactly one SKU, got %d arguments", len(rest))
	}
	if err := requireFlags(fs, skuPutSynopsis, "item"); err != nil {
		return err
	}
	if *factor < 1 || *factor > maxFactor {
		return usagef(fs, skuPutSynopsis, "--factor must be in [1, %d], got %d", maxFactor, *factor)
	}
	c, err := s.admin()
	if err != nil {
		return err
	}
	resp, err := c.PutSku(ctx, &stockdv1.PutSkuRequest{Sku: &stockdv1.Sku{Sku: rest[0], Item: *item, Factor: *factor}})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	_, err = fmt.Fprintf(s.stdout, "SKU %s = %d x %s saved, revision %d\n", rest[0], *factor, *item, resp.GetRevision())
	return err
}

// skuList prints the SKU mappings, of one item or all.
func (s *session) skuList(ctx context.Context, args []string) error {
	fs := s.newFlags("sku list", skuListSynopsis)
	item := fs.String("item", "", "only the SKUs of this item (default: every item)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, skuListSynopsis, "unexpected argument %q", rest[0])
	}
	c, err := s.admin()
	if err != nil {
		return err
	}
	resp, err := c.ListSkus(ctx, &stockdv1.ListSkusRequest{Item: *item})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	tw := newTable(s.stdout)
	fmt.Fprintln(tw, "SKU\tITEM\tFACTOR")
	for _, k := range resp.GetSkus() {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", k.GetSku(), k.GetItem(), k.GetFactor())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(s.stdout, "revision %d\n", resp.GetRevision())
	return err
}

// skuDelete removes a SKU mapping no live hold uses.
func (s *session) skuDelete(ctx context.Context, args []string) error {
	return s.deleteByID(ctx, args, "sku delete", skuDeleteSynopsis, "SKU", "SKU", func(c stockdv1.AdminClient, sku string) (revisioned, error) {
		return c.DeleteSku(ctx, &stockdv1.DeleteSkuRequest{Sku: sku})
	})
}
