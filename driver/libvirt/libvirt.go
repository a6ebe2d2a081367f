// Package libvirt is the openvair hypervisor driver for libvirt, spoken over libvirt's RPC protocol with
// github.com/digitalocean/go-libvirt (no cgo). VMs are persistent domains named "openvair-<vm id>" whose
// libvirt UUID is the VM id; their XML is built from libvirt.org/go/libvirtxml structs by BuildDomainXML.
//
// The driver keeps one long-lived connection, opened lazily on the first call and redialled after it is
// lost, with exponential backoff between failed attempts (calls fail fast with driver.ErrUnavailable while
// libvirtd is unreachable). go-libvirt calls take no context, so every call runs under a watchdog: it fails
// with driver.ErrTimeout when its context ends, and a connection that stays wedged is dropped.
//
// It registers itself as "libvirt"; driver.Config.Options:
//
//	uri          libvirt URI (default qemu:///system)
//	socket       unix socket of libvirtd (default: the URI's usual socket)
//	domain_type  "kvm" or "qemu" (default: kvm when libvirtd offers it, else qemu)
//	emulator     QEMU binary (default: libvirt's choice)
//	nvram_dir    directory for UEFI variable stores (default: libvirt's choice)
//	console_log_dir  directory where libvirt keeps each domain's serial console output (default
//	             /var/log/libvirt/qemu for qemu:///system, none otherwise); read with ConsoleLog
//	qemu_uid, qemu_gid  identity QEMU uses on NFS disks (default: detected)
//	dial_timeout, call_timeout  Go durations (defaults 5s, 60s)
package libvirt

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
)

// Name is the name the driver registers under.
const Name = "libvirt"

func init() {
	driver.RegisterHypervisor(Name, func(cfg driver.Config) (driver.Hypervisor, error) {
		d, err := New(cfg)
		if err != nil {
			return nil, err
		}
		return d, nil
	})
}

// Options configure a Driver. Zero values mean the defaults.
type Options struct {
	URI        string // default qemu:///system
	Socket     string // unix socket path; default from the URI
	Dialer     Dialer // transport; default UnixDialer{Socket}
	DomainType string // "kvm" or "qemu"; default detected from the host capabilities
	Emulator   string
	NVRAMDir   string
	// ConsoleLogDir keeps each domain's serial console output (default /var/log/libvirt/qemu for
	// qemu:///system, none for other URIs). The driver reads it locally, so it must be on this host.
	ConsoleLogDir string
	QEMUUID       *int
	QEMUGID       *int

	DialTimeout     time.Duration // opening the transport (default 5s); the handshake is bounded by the call's context
	CallTimeout     time.Duration // applied when a call's context has no deadline (default 60s)
	MinBackoff      time.Duration // first wait after a failed dial (default 100ms)
	MaxBackoff      time.Duration // longest wait between dials (default 500ms: back within about a second of libvirtd)
	WedgeGrace      time.Duration // how long an abandoned call may hang before the connection is dropped (default 5s)
	DeregisterGrace time.Duration // pause between ending event subscriptions and disconnecting (default 100ms)
}

// Driver is the libvirt hypervisor. It implements driver.Hypervisor, driver.StateWatcher,
// driver.StateLister, driver.ConsoleLogger and driver.HostInspector, and driver.Aser and driver.ErrorAser
// (its go-libvirt connection and libvirt's error replies, see As and ErrorAs). It is safe for concurrent use.
type Driver struct {
	opts Options
	c    *connector
}

var (
	_ driver.Hypervisor    = (*Driver)(nil)
	_ driver.StateWatcher  = (*Driver)(nil)
	_ driver.StateLister   = (*Driver)(nil)
	_ driver.ConsoleLogger = (*Driver)(nil)
)

// New opens the driver from a driver.Config (see the package documentation for the options). It does not
// connect: the first call does.
func New(cfg driver.Config) (*Driver, error) {
	o := Options{URI: cfg.Options["uri"], Socket: cfg.Options["socket"], DomainType: cfg.Options["domain_type"],
		Emulator: cfg.Options["emulator"], NVRAMDir: cfg.Options["nvram_dir"], ConsoleLogDir: cfg.Options["console_log_dir"]}
	v := &errkind.Validator{Entity: "libvirt options"}
	for key, dst := range map[string]*time.Duration{"dial_timeout": &o.DialTimeout, "call_timeout": &o.CallTimeout} {
		if s := cfg.Options[key]; s != "" {
			d, err := time.ParseDuration(s)
			v.Check(err == nil && d > 0, key, "not a positive duration: %q", s)
			*dst = d
		}
	}
	for key, dst := range map[string]**int{"qemu_uid": &o.QEMUUID, "qemu_gid": &o.QEMUGID} {
		if s := cfg.Options[key]; s != "" {
			n, err := strconv.Atoi(s)
			v.Check(err == nil && n >= 0, key, "not a uid/gid: %q", s)
			*dst = &n
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	return Open(o)
}

// Open opens the driver with explicit options. It does not connect: the first call does.
func Open(o Options) (*Driver, error) {
	if o.URI == "" {
		o.URI = "qemu:///system"
	}
	if !strings.Contains(o.URI, "://") {
		return nil, errkind.New(driver.ErrInvalid, entity, "", "invalid libvirt URI %q", o.URI)
	}
	if o.DomainType != "" && o.DomainType != "kvm" && o.DomainType != "qemu" {
		return nil, errkind.New(driver.ErrInvalid, entity, "", "domain_type must be kvm or qemu, got %q", o.DomainType)
	}
	if o.Socket == "" {
		o.Socket = defaultSocket(o.URI)
	}
	if o.ConsoleLogDir == "" && o.URI == "qemu:///system" {
		o.ConsoleLogDir = "/var/log/libvirt/qemu"
	}
	if o.ConsoleLogDir != "" && !filepath.IsAbs(o.ConsoleLogDir) {
		return nil, errkind.New(driver.ErrInvalid, entity, "", "console_log_dir must be an absolute path, got %q", o.ConsoleLogDir)
	}
	if o.Dialer == nil {
		o.Dialer = UnixDialer{Path: o.Socket}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.DialTimeout, 5*time.Second)
	def(&o.CallTimeout, 60*time.Second)
	def(&o.MinBackoff, 100*time.Millisecond)
	def(&o.MaxBackoff, 500*time.Millisecond)
	def(&o.WedgeGrace, 5*time.Second)
	def(&o.DeregisterGrace, 100*time.Millisecond)
	return &Driver{opts: o, c: &connector{uri: o.URI, dialer: o.Dialer, opts: o}}, nil
}

// Close ends event subscriptions (their channels close) and closes the connection, waiting for a dial in
// progress; domains are left as they are. Later calls fail with driver.ErrUnavailable. It is idempotent, and
// does nothing more on a driver that never connected or whose dial failed.
func (d *Driver) Close() error { return d.c.close() }

// String describes the connection, for logs.
func (d *Driver) String() string { return "libvirt " + d.c.String() }

// Info names the driver and its capabilities. It does not dial: the domain type and UEFI come from the
// live connection when there is one (UEFI from the daemon's domain capabilities), else from the options and
// the local host (/dev/kvm usable, a QEMU firmware descriptor for UEFI installed).
func (d *Driver) Info() driver.HypervisorInfo {
	domType := d.opts.DomainType
	var uefi *bool
	d.c.mu.Lock()
	if d.c.cur != nil {
		if domType == "" {
			domType = d.c.cur.caps.DomainType
		}
		uefi = d.c.cur.caps.UEFI
	}
	d.c.mu.Unlock()
	if uefi == nil {
		local := uefiFirmwareInstalled()
		uefi = &local
	}
	if domType == "" {
		domType = "qemu"
		if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
			f.Close()
			domType = "kvm"
		}
	}
	return driver.HypervisorInfo{
		Name: Name,
		Capabilities: driver.HypervisorCapabilities{
			UEFI:       *uefi,
			NFSDisks:   nfsBlockDriverInstalled(),
			Graphics:   []string{"vnc", "spice"},
			DomainType: domType,
		},
	}
}

// uefiFirmwareInstalled reports whether a QEMU firmware descriptor for UEFI exists (package ovmf).
func uefiFirmwareInstalled() bool {
	files, _ := filepath.Glob("/usr/share/qemu/firmware/*.json")
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), `"uefi"`) {
			return true
		}
	}
	return false
}

// nfsBlockDriverInstalled reports whether QEMU's NFS block driver is installed (package qemu-block-extra).
func nfsBlockDriverInstalled() bool {
	for _, pat := range []string{"/usr/lib/*/qemu/block-nfs.so", "/usr/lib/qemu/block-nfs.so", "/usr/lib64/qemu/block-nfs.so"} {
		if m, _ := filepath.Glob(pat); len(m) > 0 {
			return true
		}
	}
	return false
}
