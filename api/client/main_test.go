package client

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: every
// Client is closed and every fake node stopped by then.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
