// Package vm manages virtual machines on a hypervisor: their definition (CPU, memory, firmware, disks from
// volumes, cdroms from images, network interfaces, graphics), their lifecycle (create, edit while stopped,
// start, stop, reboot, delete) and their power state, kept in step with the hypervisor by events and a
// periodic resync.
package vm

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/fsm"
)

// Status is a VM's management status; PowerState says whether it runs.
type Status string

// VM statuses. The -ing statuses last while an operation is in progress.
const (
	StatusCreating  Status = "creating"
	StatusAvailable Status = "available"
	StatusStarting  Status = "starting"
	StatusStopping  Status = "stopping"
	StatusEditing   Status = "editing"
	StatusDeleting  Status = "deleting"
	StatusError     Status = "error"
)

// transitions is the VM status machine; every status change goes through it. A VM whose creation failed
// is removed rather than kept.
var transitions = fsm.Table[Status]{
	StatusCreating:  {StatusAvailable, StatusError},
	StatusAvailable: {StatusAvailable, StatusStarting, StatusStopping, StatusEditing, StatusDeleting, StatusError},
	StatusStarting:  {StatusAvailable, StatusError},
	StatusStopping:  {StatusAvailable, StatusError},
	StatusEditing:   {StatusAvailable, StatusError},
	StatusDeleting:  {StatusError},
	StatusError:     {StatusAvailable, StatusError, StatusStarting, StatusStopping, StatusEditing, StatusDeleting},
}

// CanTransition reports whether a VM may go from s to to.
func (s Status) CanTransition(to Status) bool { return transitions.Allows(s, to) }

// PowerState is a VM's power state as the hypervisor reports it.
type PowerState = driver.PowerState

// Power states.
const (
	PowerShutOff  = driver.PowerShutOff
	PowerRunning  = driver.PowerRunning
	PowerPaused   = driver.PowerPaused
	PowerStopping = driver.PowerStopping
	PowerCrashed  = driver.PowerCrashed
	PowerMissing  = driver.PowerMissing
)

// PowerReason is why a VM is in its power state, as the hypervisor tells it: for a shut-off VM one of
// shutdown (the guest powered off), destroyed (forced off), crashed, migrated, saved, failed, daemon
// (libvirtd found its process gone) or unknown.
type PowerReason = driver.PowerReason

// CPU modes.
const (
	CPUHostPassthrough = "host-passthrough"
	CPUHostModel       = "host-model"
	CPUCustom          = "custom"
)

// CPU is a VM's CPU topology and mode.
type CPU struct {
	Sockets int    `json:"sockets"`
	Cores   int    `json:"cores"`
	Threads int    `json:"threads"`
	Mode    string `json:"mode"`            // host-passthrough, host-model or custom
	Model   string `json:"model,omitempty"` // for mode custom
}

// VCPUs is the number of virtual CPUs.
func (c CPU) VCPUs() int { return c.Sockets * c.Cores * c.Threads }

// Disk is a volume attached to a VM.
type Disk struct {
	VolumeID  uuid.UUID `json:"volume_id"`
	Bus       string    `json:"bus"`                  // virtio, sata or scsi
	BootOrder int       `json:"boot_order,omitempty"` // 0: not in the per-device boot order
	// I/O limits, 0 for none.
	ReadIOPS   int64 `json:"read_iops,omitempty"`
	WriteIOPS  int64 `json:"write_iops,omitempty"`
	ReadBytes  int64 `json:"read_bytes_sec,omitempty"`
	WriteBytes int64 `json:"write_bytes_sec,omitempty"`
}

// CDROM is an image attached to a VM as a read-only cdrom.
type CDROM struct {
	ImageID   uuid.UUID `json:"image_id"`
	BootOrder int       `json:"boot_order,omitempty"`
}

// Interface is a VM's network interface.
type Interface struct {
	Type   string `json:"type"`   // bridge or network
	Source string `json:"source"` // bridge or libvirt network name
	Model  string `json:"model"`  // virtio, e1000 or rtl8139
	MAC    string `json:"mac"`    // generated when empty on create
}

// Graphics is a VM's remote console.
type Graphics struct {
	Type     string `json:"type"`   // vnc, spice or none
	Listen   string `json:"listen"` // IP address to listen on
	Password string `json:"-"`      // never returned
}

// MarshalJSON encodes the graphics without the password, saying whether one is set (password_set), as
// events carry it.
func (g Graphics) MarshalJSON() ([]byte, error) {
	type plain Graphics
	return json.Marshal(struct {
		plain
		PasswordSet bool `json:"password_set"`
	}{plain(g), g.Password != ""})
}

// VM is a virtual machine.
type VM struct {
	ID          uuid.UUID   `json:"id"`
	Name        string      `json:"name"`
	Description string      `json:"description"`
	CPU         CPU         `json:"cpu"`
	MemoryBytes int64       `json:"memory"`
	Firmware    string      `json:"firmware"` // bios or uefi
	MachineType string      `json:"machine_type,omitempty"`
	Boot        []string    `json:"boot"` // hd, cdrom, network
	Disks       []Disk      `json:"disks"`
	CDROMs      []CDROM     `json:"cdroms"`
	Interfaces  []Interface `json:"interfaces"`
	Graphics    Graphics    `json:"graphics"`
	// CloudInit, when set, is the VM's cloud-init configuration and where its seed ISO is.
	CloudInit    *CloudInit `json:"cloud_init,omitempty"`
	Status       Status     `json:"status"`
	StatusReason string     `json:"status_reason,omitempty"`
	PowerState   PowerState `json:"power_state"`
	// PowerStateReason is the hypervisor's reason for PowerState ("" when not known).
	PowerStateReason PowerReason `json:"power_state_reason,omitempty"`
	// PowerStateObservedAt is when the hypervisor last confirmed PowerState: the last event, operation or
	// resync that saw it.
	PowerStateObservedAt time.Time `json:"power_state_observed_at"`
	// PowerStateStale is set on reads while the hypervisor cannot be followed (libvirtd unreachable): the
	// power state is then the last one observed, at PowerStateObservedAt, and may no longer be true. It
	// is not stored.
	PowerStateStale bool      `json:"power_state_stale"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
	// Version increases with every update; repositories refuse an update based on a stale version.
	Version int64 `json:"version"`
}

// SetStatus moves the VM to status to, checking the transition table; reason explains an error status and
// is cleared otherwise.
func (v *VM) SetStatus(to Status, reason string) error {
	return transitions.Move("vm", v.ID.String(), &v.Status, &v.StatusReason, to, StatusError, reason)
}

// observe records a power state the hypervisor reported at time at.
func (v *VM) observe(st driver.DomainState, at time.Time) {
	v.PowerState, v.PowerStateReason = st.Power, st.Reason
	if at.After(v.PowerStateObservedAt) {
		v.PowerStateObservedAt = at
	}
}

// Clone returns a deep copy.
func (v *VM) Clone() *VM {
	c := *v
	c.Boot = append([]string(nil), v.Boot...)
	c.Disks = append([]Disk(nil), v.Disks...)
	c.CloudInit = v.CloudInit.clone()
	c.CDROMs = append([]CDROM(nil), v.CDROMs...)
	c.Interfaces = append([]Interface(nil), v.Interfaces...)
	return &c
}

// HasVolume reports whether the VM uses the volume.
func (v *VM) HasVolume(id uuid.UUID) bool {
	for _, d := range v.Disks {
		if d.VolumeID == id {
			return true
		}
	}
	return false
}

// EntityID returns the vm's id (operation results and events name entities by it).
func (x *VM) EntityID() uuid.UUID { return x.ID }

// EntityVersion returns the vm's version.
func (x *VM) EntityVersion() int64 { return x.Version }
