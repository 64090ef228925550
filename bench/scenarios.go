package bench

// ScenarioNames lists every scenario New knows, in the order a run of
// several reports them.
func ScenarioNames() []string {
	return []string{"floor", "storefront", "checkout", "flash-sale", "peak-day", "marketplace", "erp-storm", "backfill", "watch"}
}

// New returns a fresh scenario by its command-line name, or false.
func New(name string) (Scenario, bool) {
	switch name {
	case "floor":
		return NewFloor(), true
	case "storefront":
		return NewStorefront(), true
	case "checkout":
		return NewCheckout(), true
	case "flash-sale":
		return NewFlashSale(), true
	case "peak-day":
		return NewPeakDay(), true
	case "marketplace":
		return NewMarketplace(), true
	case "erp-storm":
		return NewERPStorm(), true
	case "backfill":
		return NewBackfill(), true
	case "watch":
		return NewWatch(), true
	}
	return nil, false
}
