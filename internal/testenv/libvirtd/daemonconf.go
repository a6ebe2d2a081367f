package libvirtd

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/openvair/openvair/internal/testenv"
)

// ConsoleLogDir is a directory, as the test process sees it, where the daemon can keep the serial console
// logs of its domains (the libvirt driver's console_log_dir option): for a system daemon, its own
// /var/log/libvirt/qemu; for a session daemon, a directory its QEMU processes may write.
func (d *Daemon) ConsoleLogDir() string {
	if d.system {
		return filepath.Join(d.dir, "log/qemu")
	}
	p := filepath.Join(d.dir, "consolelog")
	if err := os.MkdirAll(p, 0o700); err != nil {
		d.t.Fatalf("libvirtd: console log dir: %v", err)
	}
	d.Chown(d.t, p)
	return p
}

// EnsureQEMUUser creates the libvirt-qemu user and group and the kvm group when they are missing, as
// installing libvirt does, for tests of what openvair does on a host that has them. It needs root.
func EnsureQEMUUser(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
	if _, _, err := ensureQEMUUser(t); err != nil {
		t.Fatalf("libvirtd: QEMU user: %v", err)
	}
}

// displayBlock is the number of VNC/SPICE ports each throwaway daemon may hand out.
const displayBlock = 64

// displayPorts is the qemu.conf lines giving a daemon its own block of VNC/SPICE ports. Every libvirtd
// checks only its own allocations, so two daemons of parallel test packages could hand the same port to
// two QEMUs, and the second fails to start. Blocks are picked at random (and never twice in one process)
// from 5900–65535.
func displayPorts() string {
	displayMu.Lock()
	defer displayMu.Unlock()
	const blocks = (65535 - 5900) / displayBlock
	if displayUsed == nil {
		displayUsed = map[int]bool{}
	}
	b := rand.IntN(blocks)
	for displayUsed[b] {
		b = (b + 1) % blocks
	}
	displayUsed[b] = true
	lo := 5900 + b*displayBlock
	return fmt.Sprintf("remote_display_port_min = %d\nremote_display_port_max = %d\n", lo, lo+displayBlock-1)
}

var (
	displayMu   sync.Mutex
	displayUsed map[int]bool
)
