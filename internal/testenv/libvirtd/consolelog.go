package libvirtd

import (
	"os"
	"path/filepath"
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
