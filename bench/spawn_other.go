//go:build !linux

package bench

import "os/exec"

// setDeathSignal does nothing where the kernel has no parent-death signal:
// Close must run to stop the nodes.
func setDeathSignal(*exec.Cmd) {}
