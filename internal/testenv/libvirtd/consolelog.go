package libvirtd

import (
	"os"
	"path/filepath"
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
