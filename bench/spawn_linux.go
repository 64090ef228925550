package bench

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill a spawned node when stockbench dies
// without running Close (kill -9, a crash), so no node outlives it.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
