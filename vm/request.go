package vm

import (
	"crypto/rand"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/secret"
	"github.com/openvair/openvair/internal/validate"
	"github.com/openvair/openvair/volume"
)

// Limits on a VM's shape.
const (
	MaxVCPUs       = 512
	MinMemoryBytes = 16 << 20
	MaxMemoryBytes = 16 << 40
	MaxDisks       = 64
	MaxInterfaces  = 32
)

// DiskRequest attaches an existing volume (VolumeID) or a new one created with the VM (New).
type DiskRequest struct {
	VolumeID   uuid.UUID             `json:"volume_id,omitempty"`
	New        *volume.CreateRequest `json:"new,omitempty"`
	Bus        string                `json:"bus,omitempty"` // default virtio
	BootOrder  int                   `json:"boot_order,omitempty"`
	ReadIOPS   int64                 `json:"read_iops,omitempty"`
	WriteIOPS  int64                 `json:"write_iops,omitempty"`
	ReadBytes  int64                 `json:"read_bytes_sec,omitempty"`
	WriteBytes int64                 `json:"write_bytes_sec,omitempty"`
}

// disk returns the Disk for a resolved volume id.
func (d DiskRequest) disk(id uuid.UUID) Disk {
	return Disk{VolumeID: id, Bus: d.Bus, BootOrder: d.BootOrder, ReadIOPS: d.ReadIOPS, WriteIOPS: d.WriteIOPS,
		ReadBytes: d.ReadBytes, WriteBytes: d.WriteBytes}
}

// CreateRequest asks for a new VM.
type CreateRequest struct {
	Name        string        `json:"name"`
	Description string        `json:"description,omitempty"`
	CPU         CPU           `json:"cpu"`
	MemoryBytes int64         `json:"memory"`
	Firmware    string        `json:"firmware,omitempty"` // default bios
	MachineType string        `json:"machine_type,omitempty"`
	Boot        []string      `json:"boot,omitempty"` // default [hd, cdrom]
	Disks       []DiskRequest `json:"disks,omitempty"`
	CDROMs      []CDROM       `json:"cdroms,omitempty"`
	Interfaces  []Interface   `json:"interfaces,omitempty"`
	// CloudInit, when set, configures the guest with cloud-init (NoCloud): openvair builds the seed ISO
	// on the storage of the first disk and attaches it as a read-only cdrom.
	CloudInit *CloudInitConfig `json:"cloud_init,omitempty"`
	Graphics  Graphics         `json:"graphics"`
}

// EditRequest changes a stopped VM; nil fields stay as they are, lists given replace the current ones.
// A disk list may attach new volumes (New) as on create; volumes no longer listed are detached, not deleted.
type EditRequest struct {
	Name        *string        `json:"name,omitempty"`
	Description *string        `json:"description,omitempty"`
	CPU         *CPU           `json:"cpu,omitempty"`
	MemoryBytes *int64         `json:"memory,omitempty"`
	Firmware    *string        `json:"firmware,omitempty"`
	MachineType *string        `json:"machine_type,omitempty"`
	Boot        *[]string      `json:"boot,omitempty"`
	Disks       *[]DiskRequest `json:"disks,omitempty"`
	CDROMs      *[]CDROM       `json:"cdroms,omitempty"`
	Interfaces  *[]Interface   `json:"interfaces,omitempty"`
	Graphics    *Graphics      `json:"graphics,omitempty"`
	// CloudInit replaces the cloud-init configuration; the seed ISO is rebuilt (the guest reads it at its
	// next boot, and reruns what its cloud-init reruns for a known instance-id).
	CloudInit *CloudInitConfig `json:"cloud_init,omitempty"`
}

var (
	cpuModelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	machineRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	netNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)
	macRE      = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)
)

// spec is the part of a VM a request sets; create and edit both validate it whole.
type spec struct {
	Name, Description     string
	CPU                   CPU
	MemoryBytes           int64
	Firmware, MachineType string
	Boot                  []string
	Disks                 []DiskRequest
	CDROMs                []CDROM
	Interfaces            []Interface
	Graphics              Graphics
	CloudInit             *CloudInitConfig // nil: none, or unchanged by an edit
}

// normalize fills defaults and puts the name in its stored form.
func (s *spec) normalize() {
	validate.NormalizeName(&s.Name)
	if s.CPU.Mode == "" {
		s.CPU.Mode = CPUHostModel
	}
	if s.Firmware == "" {
		s.Firmware = "bios"
	}
	if s.Boot == nil && !s.perDeviceBoot() {
		s.Boot = []string{"hd", "cdrom"}
	}
	for i := range s.Disks {
		if s.Disks[i].Bus == "" {
			s.Disks[i].Bus = "virtio"
		}
	}
	for i := range s.Interfaces {
		s.Interfaces[i].MAC = strings.ToLower(s.Interfaces[i].MAC)
		if s.Interfaces[i].Model == "" {
			s.Interfaces[i].Model = "virtio"
		}
	}
	if s.Graphics.Type == "" {
		s.Graphics.Type = "vnc"
	}
	if s.Graphics.Listen == "" && s.Graphics.Type != "none" {
		s.Graphics.Listen = "127.0.0.1"
	}
}

// perDeviceBoot reports whether a disk or cdrom sets its own boot order.
func (s *spec) perDeviceBoot() bool {
	for _, d := range s.Disks {
		if d.BootOrder > 0 {
			return true
		}
	}
	for _, c := range s.CDROMs {
		if c.BootOrder > 0 {
			return true
		}
	}
	return false
}

// validate reports every bad field at once.
func (s *spec) validate() error {
	v := &errkind.Validator{Entity: "vm"}
	validate.Name(v, "name", s.Name)
	validate.Description(v, "description", s.Description)
	s.CloudInit.Check(v)
	c := s.CPU
	v.Check(c.Sockets >= 1, "cpu.sockets", "must be at least 1")
	v.Check(c.Cores >= 1, "cpu.cores", "must be at least 1")
	v.Check(c.Threads >= 1, "cpu.threads", "must be at least 1")
	if c.Sockets >= 1 && c.Cores >= 1 && c.Threads >= 1 {
		v.Check(c.Sockets <= MaxVCPUs && c.Cores <= MaxVCPUs && c.Threads <= MaxVCPUs && c.VCPUs() <= MaxVCPUs,
			"cpu", "sockets*cores*threads must be at most %d", MaxVCPUs)
	}
	checkCPUMode(v, "cpu", c.Mode, c.Model)
	v.Check(s.MemoryBytes >= MinMemoryBytes && s.MemoryBytes <= MaxMemoryBytes && s.MemoryBytes%(1<<20) == 0,
		"memory", "must be a whole number of MiB between 16 MiB and 16 TiB")
	v.Check(s.Firmware == "bios" || s.Firmware == "uefi", "firmware", "must be bios or uefi")
	v.Check(s.MachineType == "" || machineRE.MatchString(s.MachineType), "machine_type", "is not a machine type name")
	seenBoot := map[string]bool{}
	for i, b := range s.Boot {
		v.Check(b == "hd" || b == "cdrom" || b == "network", fmt.Sprintf("boot[%d]", i), "must be hd, cdrom or network")
		v.Check(!seenBoot[b], fmt.Sprintf("boot[%d]", i), "%q is listed twice", b)
		seenBoot[b] = true
	}
	v.Check(len(s.Boot) == 0 || !s.perDeviceBoot(), "boot", "give either a boot device list or per-disk boot_order, not both")
	v.Check(len(s.Disks) <= MaxDisks, "disks", "at most %d disks", MaxDisks)
	seenVol := map[uuid.UUID]bool{}
	for i, d := range s.Disks {
		f := fmt.Sprintf("disks[%d]", i)
		switch {
		case d.VolumeID != uuid.Nil && d.New != nil:
			v.Add(f, "give volume_id or new, not both")
		case d.VolumeID == uuid.Nil && d.New == nil:
			v.Add(f, "give volume_id (an existing volume) or new (a volume to create)")
		case d.New != nil:
			d.New.ValidateAs(v, f+".new.")
		default:
			v.Check(!seenVol[d.VolumeID], f+".volume_id", "volume is attached twice")
			seenVol[d.VolumeID] = true
		}
		v.Check(d.Bus == "virtio" || d.Bus == "sata" || d.Bus == "scsi", f+".bus", "must be virtio, sata or scsi")
		v.Check(d.BootOrder >= 0 && d.ReadIOPS >= 0 && d.WriteIOPS >= 0 && d.ReadBytes >= 0 && d.WriteBytes >= 0,
			f, "boot order and I/O limits must not be negative")
	}
	seenImg := map[uuid.UUID]bool{}
	for i, c := range s.CDROMs {
		f := fmt.Sprintf("cdroms[%d].image_id", i)
		v.Check(c.ImageID != uuid.Nil, f, "is required")
		v.Check(!seenImg[c.ImageID], f, "image is attached twice")
		v.Check(c.BootOrder >= 0, fmt.Sprintf("cdroms[%d].boot_order", i), "must not be negative")
		seenImg[c.ImageID] = true
	}
	v.Check(len(s.Interfaces) <= MaxInterfaces, "interfaces", "at most %d interfaces", MaxInterfaces)
	seenMAC := map[string]bool{}
	for i, n := range s.Interfaces {
		f := fmt.Sprintf("interfaces[%d]", i)
		v.Check(n.Type == "bridge" || n.Type == "network", f+".type", "must be bridge or network")
		v.Check(netNameRE.MatchString(n.Source), f+".source", "must name a bridge or network (letters, digits, '.', '_', '-', at most 15)")
		v.Check(n.Model == "virtio" || n.Model == "e1000" || n.Model == "rtl8139", f+".model", "must be virtio, e1000 or rtl8139")
		if n.MAC != "" {
			if !macRE.MatchString(n.MAC) {
				v.Add(f+".mac", "must look like 52:54:00:12:34:56")
			} else if hw, _ := net.ParseMAC(n.MAC); hw[0]&1 == 1 {
				v.Add(f+".mac", "must be a unicast address")
			}
			v.Check(!seenMAC[n.MAC], f+".mac", "is used twice")
			seenMAC[n.MAC] = true
		}
	}
	g := s.Graphics
	switch g.Type {
	case "vnc", "spice":
		v.Check(net.ParseIP(g.Listen) != nil, "graphics.listen", "must be an IP address")
		if !secret.IsSealed(g.Password) { // a stored password was checked when it was set
			v.Check(g.Type != "vnc" || len(g.Password) <= 8, "graphics.password", "VNC passwords are at most 8 characters")
			v.Check(!strings.ContainsAny(g.Password, "\x00\n\r"), "graphics.password", "must not contain control characters")
		}
	case "none":
		v.Check(g.Listen == "" && g.Password == "", "graphics", "listen and password need a graphics type")
	default:
		v.Add("graphics.type", "must be vnc, spice or none")
	}
	return v.Err()
}

// newMAC returns a random locally administered unicast MAC in QEMU's 52:54:00 range.
func newMAC() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
}

func (r *CreateRequest) spec() spec {
	return spec{Name: r.Name, Description: r.Description, CPU: r.CPU, MemoryBytes: r.MemoryBytes, Firmware: r.Firmware,
		MachineType: r.MachineType, Boot: r.Boot, Disks: append([]DiskRequest(nil), r.Disks...),
		CDROMs: append([]CDROM(nil), r.CDROMs...), Interfaces: append([]Interface(nil), r.Interfaces...), Graphics: r.Graphics,
		CloudInit: r.CloudInit}
}

// Validate reports every bad field at once (after filling defaults in a copy).
func (r *CreateRequest) Validate() error {
	s := r.spec()
	s.normalize()
	return s.validate()
}

// specOf returns the spec of an existing VM, with its disks as requests for the volumes it has.
func specOf(v *VM) spec {
	s := spec{Name: v.Name, Description: v.Description, CPU: v.CPU, MemoryBytes: v.MemoryBytes, Firmware: v.Firmware,
		MachineType: v.MachineType, Boot: append([]string(nil), v.Boot...), CDROMs: append([]CDROM(nil), v.CDROMs...),
		Interfaces: append([]Interface(nil), v.Interfaces...), Graphics: v.Graphics}
	for _, d := range v.Disks {
		s.Disks = append(s.Disks, DiskRequest{VolumeID: d.VolumeID, Bus: d.Bus, BootOrder: d.BootOrder, ReadIOPS: d.ReadIOPS,
			WriteIOPS: d.WriteIOPS, ReadBytes: d.ReadBytes, WriteBytes: d.WriteBytes})
	}
	return s
}

// apply overlays the edit on s.
func (r *EditRequest) apply(s *spec) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&s.Name, r.Name)
	set(&s.Description, r.Description)
	if r.CloudInit != nil {
		s.CloudInit = r.CloudInit
	}
	set(&s.Firmware, r.Firmware)
	set(&s.MachineType, r.MachineType)
	if r.CPU != nil {
		s.CPU = *r.CPU
	}
	if r.MemoryBytes != nil {
		s.MemoryBytes = *r.MemoryBytes
	}
	if r.Boot != nil {
		s.Boot = append([]string{}, (*r.Boot)...)
	}
	if r.Disks != nil {
		s.Disks = append([]DiskRequest{}, (*r.Disks)...)
	}
	if r.CDROMs != nil {
		s.CDROMs = append([]CDROM{}, (*r.CDROMs)...)
	}
	if r.Interfaces != nil {
		s.Interfaces = append([]Interface{}, (*r.Interfaces)...)
	}
	if r.Graphics != nil {
		s.Graphics = *r.Graphics
	}
}

// StopOptions says how to stop a VM.
type StopOptions struct {
	// Force powers the VM off at once instead of asking the guest to shut down.
	Force bool `json:"force,omitempty"`
	// Timeout is how long a graceful stop waits for the guest (0: the default, 60 s; negative: ErrInvalid);
	// when it passes the VM keeps running and Stop returns an error wrapping errkind.Timeout, unless
	// ForceAfterTimeout is set.
	Timeout           time.Duration `json:"timeout,omitempty"`
	ForceAfterTimeout bool          `json:"force_after_timeout,omitempty"`
}

// DeleteOptions says what else to delete with a VM.
type DeleteOptions struct {
	// DeleteVolumes deletes the VM's volumes that no other VM uses.
	DeleteVolumes bool `json:"delete_volumes,omitempty"`
}

// ListOptions filters and pages a list of VMs.
type ListOptions struct {
	Limit      int        // 1..1000, default 100
	Cursor     string     // from the previous page's NextCursor
	Status     Status     // "" for any
	PowerState PowerState // "" for any
	Name       string     // exact name, "" for any
}

// validate checks the filters (ErrInvalid naming each bad one) and normalizes the name filter.
func (o *ListOptions) validate() error {
	v := &errkind.Validator{Entity: "vm list"}
	validate.ListFilters(v, &o.Name, o.Cursor, o.Status, transitions)
	validate.Known(v, "power_state", o.PowerState, PowerShutOff, PowerRunning, PowerPaused, PowerStopping, PowerCrashed, PowerMissing)
	return v.Err()
}

// Page is one page of VMs; NextCursor is empty on the last page.
type Page struct {
	Items      []*VM  `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// checkCPUMode checks a CPU mode and model; prefix names their fields.
func checkCPUMode(v *errkind.Validator, prefix, mode, model string) {
	switch mode {
	case CPUHostPassthrough, CPUHostModel:
		v.Check(model == "", prefix+".model", "is only for mode custom")
	case CPUCustom:
		v.Check(cpuModelRE.MatchString(model), prefix+".model", "must name a CPU model for mode custom")
	default:
		v.Add(prefix+".mode", "must be host-passthrough, host-model or custom")
	}
}

// SetDefaultCPU sets the CPU mode and model of VMs created without a mode (host-model unless set), after
// checking them. Hosts whose QEMU cannot run host-model (some nested virtualization) set custom and a
// model the host offers (see Host).
func (s *Service) SetDefaultCPU(mode, model string) error {
	v := &errkind.Validator{Entity: "default cpu"}
	checkCPUMode(v, "default_cpu", mode, model)
	if err := v.Err(); err != nil {
		return err
	}
	s.defaultCPU.Mode, s.defaultCPU.Model = mode, model
	return nil
}
