package refserver

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/google/uuid"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// The JSON shapes of the API. They mirror the SDK's entities and requests field by field (snake_case,
// sizes in bytes, UUID ids); conversions are plain copies. The SDK validates every request.

// Storage is a place where volumes and images live.
type Storage struct {
	ID           uuid.UUID      `json:"id" format:"uuid"`
	Name         string         `json:"name"`
	Description  string         `json:"description"`
	Type         string         `json:"type" doc:"The storage type: the name of a storage backend of the server (GET /api/v1/storage-types)."`
	Config       map[string]any `json:"config" doc:"The configuration the type's backend accepted, normalized; its schema is the type's (StorageCreateBody)."`
	State        map[string]any `json:"state,omitempty" doc:"What the backend keeps with the storage (a filesystem UUID, whether it created the directory); read-only."`
	Location     string         `json:"location" doc:"The key no two storages share, given by the backend: dir:<path>, dev:<device>, nfs:<server>:<export>."`
	Status       storage.Status `json:"status" enum:"creating,available,deleting,error"`
	StatusReason string         `json:"status_reason,omitempty"`
	Capacity     int64          `json:"capacity" doc:"Bytes."`
	Available    int64          `json:"available" doc:"Bytes free for new volumes and images."`
	MountPoint   string         `json:"mount_point,omitempty"`
	CreatedAt    time.Time      `json:"created_at"`
	UpdatedAt    time.Time      `json:"updated_at"`
	Version      int64          `json:"version"`
}

// storageFields are the JSON names of Storage's fields: a storage type with one of these names gets no
// shorthand in responses.
var storageFields = jsonFields(reflect.TypeFor[Storage]())

// MarshalJSON adds the shorthand of earlier versions: the configuration and state merged under a key named
// after the type ("localfs": {...}), deprecated in the OpenAPI document.
func (s Storage) MarshalJSON() ([]byte, error) {
	type plain Storage
	b, err := json.Marshal(plain(s))
	if err != nil || s.Type == "" || storageFields[s.Type] {
		return b, err
	}
	legacy := make(map[string]any, len(s.Config)+len(s.State))
	for k, v := range s.Config {
		legacy[k] = v
	}
	for k, v := range s.State {
		legacy[k] = v
	}
	extra, err := json.Marshal(map[string]any{s.Type: legacy})
	if err != nil {
		return nil, err
	}
	// {...plain fields...} + {"<type>": {...}}: splice the second object's member into the first.
	return append(append(b[:len(b)-1], ','), extra[1:]...), nil
}

// StorageCreateBody is the body of createStorage as the server reads it. The document publishes the typed
// StorageCreate schema (one variant per storage type, told apart by type); this type only reads it, keeping the shorthand of
// earlier versions ("localfs": {...} for "config": {...}), and lets the SDK and the type's backend report
// every bad field.
type StorageCreateBody struct {
	req storage.CreateRequest
	err error // a malformed request, reported by the handler with its fields
	// shorthand is the key that held the configuration when the request used the shorthand ("localfs"):
	// errors then name its fields as the client sent them.
	shorthand string
}

// UnmarshalJSON reads the request (see storage.CreateRequest.UnmarshalJSON).
func (c *StorageCreateBody) UnmarshalJSON(b []byte) error {
	c.err = c.req.UnmarshalJSON(b)
	var keys map[string]json.RawMessage
	if c.err == nil && json.Unmarshal(b, &keys) == nil {
		if _, ok := keys[string(c.req.Type)]; ok {
			c.shorthand = string(c.req.Type)
		}
	}
	return nil
}

// locate names a field of the request as the client sent it: body.<field>, with config.<x> as
// <type>.<x> when the request used the shorthand.
func (c *StorageCreateBody) locate(field string) string {
	if c.shorthand != "" {
		if rest, ok := strings.CutPrefix(field, "config"); ok && (rest == "" || rest[0] == '.') {
			field = c.shorthand + rest
		}
	}
	return "body." + field
}

// Schema is the loose schema the request is validated with before the SDK and the backend check it (an
// object with a name and a type), so that every bad field is reported by name; the document publishes the
// typed StorageCreate for createStorage.
func (c StorageCreateBody) Schema(huma.Registry) *huma.Schema {
	return &huma.Schema{Type: huma.TypeObject, Required: []string{"name", "type"}, AdditionalProperties: true,
		Properties: map[string]*huma.Schema{"name": {Type: huma.TypeString}, "type": {Type: huma.TypeString},
			"description": {Type: huma.TypeString}, "config": {Type: huma.TypeObject, AdditionalProperties: true}}}
}

// MetaEdit changes a storage's or an image's name or description; absent fields stay as they are.
type MetaEdit struct {
	Name        *string `json:"name,omitempty" minLength:"1" maxLength:"255" doc:"Printable text of at most 255 characters, without a slash or a backslash; leading and trailing white space is dropped."`
	Description *string `json:"description,omitempty" maxLength:"255" doc:"At most 255 characters, no control characters."`
}

func storageOut(s *storage.Storage) *Storage {
	return &Storage{ID: s.ID, Name: s.Name, Description: s.Description, Type: string(s.Type),
		Config: jsonObject(s.Config), State: jsonObject(s.State), Location: s.Location,
		Status: s.Status, StatusReason: s.StatusReason, Capacity: s.Capacity, Available: s.Available,
		MountPoint: s.MountPoint, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, Version: s.Version}
}

// jsonObject decodes a JSON object; nil for nothing, null or anything that is not an object.
func jsonObject(b json.RawMessage) map[string]any {
	var m map[string]any
	if len(b) == 0 || json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}

// jsonFields returns the JSON names of a struct type's fields.
func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			out[name] = true
		}
	}
	return out
}

// VolumeAttachment is a VM that uses a volume.
type VolumeAttachment struct {
	VMID   uuid.UUID `json:"vm_id" format:"uuid"`
	VMName string    `json:"vm_name"`
	Active bool      `json:"active" doc:"True unless the VM is shut off."`
}

// Volume is a virtual disk on a storage.
type Volume struct {
	ID           uuid.UUID          `json:"id" format:"uuid"`
	Name         string             `json:"name"`
	Description  string             `json:"description"`
	StorageID    uuid.UUID          `json:"storage_id" format:"uuid"`
	Format       volume.Format      `json:"format" enum:"qcow2,raw"`
	Size         int64              `json:"size" doc:"Virtual size in bytes."`
	Allocated    int64              `json:"allocated" doc:"Bytes used on the storage."`
	ReadOnly     bool               `json:"read_only"`
	Shareable    bool               `json:"shareable"`
	Status       volume.Status      `json:"status" enum:"creating,available,extending,reverting,deleting,error"`
	StatusReason string             `json:"status_reason,omitempty"`
	Attachments  []VolumeAttachment `json:"attachments" nullable:"false"`
	Backing      *VolumeBacking     `json:"backing,omitempty" doc:"For a linked volume: the image or volume its unallocated clusters read from."`
	Linked       []LinkedVolume     `json:"linked,omitempty" doc:"The linked volumes that use this one as their backing file; it cannot be deleted while there are any."`
	CreatedAt    time.Time          `json:"created_at"`
	UpdatedAt    time.Time          `json:"updated_at"`
	Version      int64              `json:"version"`
}

// VolumeCreate asks for a new volume.
type VolumeCreate struct {
	Name        string        `json:"name" minLength:"1" maxLength:"255" doc:"Printable text of at most 255 characters, without a slash or a backslash; leading and trailing white space is dropped."`
	Description string        `json:"description,omitempty" maxLength:"255" doc:"At most 255 characters, no control characters."`
	StorageID   uuid.UUID     `json:"storage_id,omitempty" format:"uuid" doc:"Required without source; with one it defaults to the source's storage."`
	Format      volume.Format `json:"format,omitempty" enum:"qcow2,raw" doc:"qcow2 or raw. Required without source; with one it defaults to the source's (qcow2 for a linked volume)."`
	Size        int64         `json:"size,omitempty" minimum:"1" doc:"Virtual size in bytes. Required without source; with one it defaults to the source's, and may be larger."`
	ReadOnly    bool          `json:"read_only,omitempty"`
	Shareable   bool          `json:"shareable,omitempty"`
	Source      *VolumeSource `json:"source,omitempty" doc:"What the volume's content starts from: an image (qcow2 or raw) or another volume."`
}

// VolumeSource is what a new volume's content starts from; give exactly one of image_id, volume_id and
// snapshot_id.
type VolumeSource struct {
	ImageID    uuid.UUID `json:"image_id,omitempty" format:"uuid" doc:"A qcow2 or raw image (an ISO is refused: attach it as a cdrom)."`
	VolumeID   uuid.UUID `json:"volume_id,omitempty" format:"uuid" doc:"Another volume (a clone); for copy and instant, no running VM may be writing to it."`
	SnapshotID uuid.UUID `json:"snapshot_id,omitempty" format:"uuid" doc:"A volume's snapshot (copy or instant)."`
	Mode       string    `json:"mode,omitempty" enum:"copy,linked,instant" doc:"copy (default): an independent copy, streamed and sparse, converted to the volume's format, on any storage, with progress; linked: a qcow2 overlay whose backing file is the source on the same storage, made at once, the source then cannot be deleted; instant: an independent reflink copy on the same storage, for storages with instant_clone."`
}

// VolumeBacking is the backing file of a linked volume.
type VolumeBacking struct {
	Kind string    `json:"kind" enum:"image,volume"`
	ID   uuid.UUID `json:"id" format:"uuid"`
}

// LinkedVolume is a volume that uses an image or a volume as its backing file.
type LinkedVolume struct {
	VolumeID   uuid.UUID `json:"volume_id" format:"uuid"`
	VolumeName string    `json:"volume_name"`
}

// VolumeEdit changes a volume's metadata; absent fields stay as they are.
type VolumeEdit struct {
	Name        *string `json:"name,omitempty" minLength:"1" maxLength:"255" doc:"Printable text of at most 255 characters, without a slash or a backslash; leading and trailing white space is dropped."`
	Description *string `json:"description,omitempty" maxLength:"255" doc:"At most 255 characters, no control characters."`
	ReadOnly    *bool   `json:"read_only,omitempty"`
	Shareable   *bool   `json:"shareable,omitempty"`
}

// VolumeExtend grows a volume.
type VolumeExtend struct {
	Size int64 `json:"size" minimum:"1" doc:"New virtual size in bytes; volumes only grow."`
}

func (c *VolumeCreate) request() volume.CreateRequest {
	r := volume.CreateRequest{Name: c.Name, Description: c.Description, StorageID: c.StorageID, Format: c.Format,
		Size: c.Size, ReadOnly: c.ReadOnly, Shareable: c.Shareable}
	if c.Source != nil {
		r.Source = &volume.Source{ImageID: c.Source.ImageID, VolumeID: c.Source.VolumeID, SnapshotID: c.Source.SnapshotID,
			Mode: volume.CloneMode(c.Source.Mode)}
	}
	return r
}

func volumeOut(v *volume.Volume) *Volume {
	out := &Volume{ID: v.ID, Name: v.Name, Description: v.Description, StorageID: v.StorageID, Format: v.Format,
		Size: v.Size, Allocated: v.Allocated, ReadOnly: v.ReadOnly, Shareable: v.Shareable, Status: v.Status,
		StatusReason: v.StatusReason, Attachments: make([]VolumeAttachment, 0, len(v.Attachments)),
		CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt, Version: v.Version}
	for _, a := range v.Attachments {
		out.Attachments = append(out.Attachments, VolumeAttachment{VMID: a.VMID, VMName: a.VMName, Active: a.Active})
	}
	if v.Backing != nil {
		out.Backing = &VolumeBacking{Kind: string(v.Backing.Kind), ID: v.Backing.ID}
	}
	for _, l := range v.Linked {
		out.Linked = append(out.Linked, LinkedVolume{VolumeID: l.VolumeID, VolumeName: l.VolumeName})
	}
	return out
}

// ImageAttachment is a VM that uses an image as a cdrom.
type ImageAttachment struct {
	VMID   uuid.UUID `json:"vm_id" format:"uuid"`
	VMName string    `json:"vm_name"`
}

// Image is an uploaded ISO or disk image.
type Image struct {
	ID           uuid.UUID         `json:"id" format:"uuid"`
	Name         string            `json:"name"`
	Description  string            `json:"description"`
	StorageID    uuid.UUID         `json:"storage_id" format:"uuid"`
	Format       image.Format      `json:"format" doc:"Detected from the content: iso, qcow2 or raw."`
	Size         int64             `json:"size" doc:"Bytes."`
	SHA256       string            `json:"sha256" doc:"Hex SHA-256 of the content, computed while uploading."`
	Status       image.Status      `json:"status" enum:"uploading,available,deleting,error"`
	StatusReason string            `json:"status_reason,omitempty"`
	Attachments  []ImageAttachment `json:"attachments" nullable:"false"`
	Linked       []LinkedVolume    `json:"linked,omitempty" doc:"The linked volumes whose backing file is this image; it cannot be deleted while there are any."`
	CreatedAt    time.Time         `json:"created_at"`
	UpdatedAt    time.Time         `json:"updated_at"`
	Version      int64             `json:"version"`
}

func imageOut(i *image.Image) *Image {
	out := &Image{ID: i.ID, Name: i.Name, Description: i.Description, StorageID: i.StorageID, Format: i.Format,
		Size: i.Size, SHA256: i.SHA256, Status: i.Status, StatusReason: i.StatusReason,
		Attachments: make([]ImageAttachment, 0, len(i.Attachments)), CreatedAt: i.CreatedAt, UpdatedAt: i.UpdatedAt,
		Version: i.Version}
	for _, a := range i.Attachments {
		out.Attachments = append(out.Attachments, ImageAttachment{VMID: a.VMID, VMName: a.VMName})
	}
	for _, l := range i.Linked {
		out.Linked = append(out.Linked, LinkedVolume{VolumeID: l.VolumeID, VolumeName: l.VolumeName})
	}
	return out
}

// CPU is a VM's CPU topology and mode.
type CPU struct {
	Sockets int    `json:"sockets" minimum:"1" maximum:"512"`
	Cores   int    `json:"cores" minimum:"1" maximum:"512"`
	Threads int    `json:"threads" minimum:"1" maximum:"512"`
	Mode    string `json:"mode,omitempty" enum:"host-passthrough,host-model,custom" doc:"host-passthrough, host-model or custom; the server's configured default (cpu_mode, host-model unless set) when absent. GET /api/v1/host lists what the host supports."`
	Model   string `json:"model,omitempty" maxLength:"255" doc:"CPU model, for mode custom (for example qemu64 or Skylake-Client; see GET /api/v1/host)."`
}

// Disk is a volume attached to a VM.
type Disk struct {
	VolumeID   uuid.UUID `json:"volume_id" format:"uuid"`
	Bus        string    `json:"bus" enum:"virtio,sata,scsi" doc:"virtio, sata or scsi."`
	BootOrder  int       `json:"boot_order,omitempty" minimum:"0"`
	ReadIOPS   int64     `json:"read_iops,omitempty" minimum:"0"`
	WriteIOPS  int64     `json:"write_iops,omitempty" minimum:"0"`
	ReadBytes  int64     `json:"read_bytes_sec,omitempty" minimum:"0"`
	WriteBytes int64     `json:"write_bytes_sec,omitempty" minimum:"0"`
}

// DiskRequest attaches an existing volume (volume_id) or a new one created with the VM (new).
type DiskRequest struct {
	VolumeID   *uuid.UUID    `json:"volume_id,omitempty" format:"uuid"`
	New        *VolumeCreate `json:"new,omitempty"`
	Bus        string        `json:"bus,omitempty" enum:"virtio,sata,scsi" doc:"virtio (default), sata or scsi."`
	BootOrder  int           `json:"boot_order,omitempty" minimum:"0"`
	ReadIOPS   int64         `json:"read_iops,omitempty" minimum:"0"`
	WriteIOPS  int64         `json:"write_iops,omitempty" minimum:"0"`
	ReadBytes  int64         `json:"read_bytes_sec,omitempty" minimum:"0"`
	WriteBytes int64         `json:"write_bytes_sec,omitempty" minimum:"0"`
}

// CDROM is an image attached to a VM as a read-only cdrom.
type CDROM struct {
	ImageID   uuid.UUID `json:"image_id" format:"uuid"`
	BootOrder int       `json:"boot_order,omitempty" minimum:"0"`
}

// Interface is a VM's network interface.
type Interface struct {
	Type   string `json:"type" enum:"bridge,network" doc:"bridge or network."`
	Source string `json:"source" maxLength:"15" doc:"Bridge or libvirt network name."`
	Model  string `json:"model,omitempty" enum:"virtio,e1000,rtl8139" doc:"virtio (default), e1000 or rtl8139."`
	MAC    string `json:"mac,omitempty" maxLength:"17" doc:"Generated when absent."`
}

// Graphics is a VM's remote console as the API shows it: the password is never returned.
type Graphics struct {
	Type        string `json:"type" enum:"vnc,spice,none"`
	Listen      string `json:"listen"`
	PasswordSet bool   `json:"password_set"`
}

// GraphicsRequest sets a VM's remote console.
type GraphicsRequest struct {
	Type     string `json:"type,omitempty" enum:"vnc,spice,none" doc:"vnc (default), spice or none."`
	Listen   string `json:"listen,omitempty" maxLength:"45" doc:"IP address to listen on (default 127.0.0.1)."`
	Password string `json:"password,omitempty" maxLength:"255" doc:"Console password; write-only (VNC: at most 8 characters)."`
}

// VM is a virtual machine.
type VM struct {
	ID           uuid.UUID     `json:"id" format:"uuid"`
	Name         string        `json:"name"`
	Description  string        `json:"description"`
	CPU          CPU           `json:"cpu"`
	Memory       int64         `json:"memory" doc:"Bytes."`
	Firmware     string        `json:"firmware"`
	MachineType  string        `json:"machine_type,omitempty"`
	Boot         []string      `json:"boot" nullable:"false" enum:"hd,cdrom,network"`
	Disks        []Disk        `json:"disks" nullable:"false"`
	CDROMs       []CDROM       `json:"cdroms" nullable:"false"`
	Interfaces   []Interface   `json:"interfaces" nullable:"false"`
	Graphics     Graphics      `json:"graphics"`
	CloudInit    *CloudInit    `json:"cloud_init,omitempty" doc:"The VM's cloud-init configuration, with user_data and network_config redacted (they may hold secrets): write-only through the API."`
	Status       vm.Status     `json:"status" enum:"creating,available,starting,stopping,editing,deleting,error"`
	StatusReason string        `json:"status_reason,omitempty"`
	PowerState   vm.PowerState `json:"power_state" enum:"shut_off,running,paused,shutting_down,crashed,missing"`
	// PowerStateReason is why the VM is in its power state.
	PowerStateReason     vm.PowerReason `json:"power_state_reason,omitempty" doc:"Why the VM is in its power state, as the hypervisor says: for shut_off, shutdown (the guest powered off), destroyed (forced off), crashed, migrated, saved, failed, daemon (libvirtd found QEMU gone) or unknown; for running, booted, unpaused, restored, migrated, ..."`
	PowerStateObservedAt time.Time      `json:"power_state_observed_at" doc:"When the hypervisor last confirmed power_state (an event, an operation or a resync)."`
	PowerStateStale      bool           `json:"power_state_stale" doc:"True while the hypervisor cannot be reached: power_state is the last one observed, at power_state_observed_at, and may no longer be true."`
	CreatedAt            time.Time      `json:"created_at"`
	UpdatedAt            time.Time      `json:"updated_at"`
	Version              int64          `json:"version"`
}

// VMCreate asks for a new VM.
type VMCreate struct {
	Name        string           `json:"name" minLength:"1" maxLength:"255" doc:"Printable text of at most 255 characters, without a slash or a backslash; leading and trailing white space is dropped."`
	Description string           `json:"description,omitempty" maxLength:"255" doc:"At most 255 characters, no control characters."`
	CPU         CPU              `json:"cpu"`
	Memory      int64            `json:"memory" minimum:"16777216" maximum:"17592186044416" multipleOf:"1048576" doc:"Bytes, a whole number of MiB from 16 MiB to 16 TiB."`
	Firmware    string           `json:"firmware,omitempty" enum:"bios,uefi" doc:"bios (default) or uefi."`
	MachineType string           `json:"machine_type,omitempty" maxLength:"255"`
	Boot        []string         `json:"boot,omitempty" enum:"hd,cdrom,network" maxItems:"3" doc:"Boot order: hd, cdrom, network (default [hd, cdrom])."`
	Disks       []DiskRequest    `json:"disks,omitempty" maxItems:"64"`
	CDROMs      []CDROM          `json:"cdroms,omitempty" maxItems:"64"`
	Interfaces  []Interface      `json:"interfaces,omitempty" maxItems:"32"`
	Graphics    *GraphicsRequest `json:"graphics,omitempty"`
	CloudInit   *CloudInit       `json:"cloud_init,omitempty" doc:"Configure the guest with cloud-init (NoCloud): openvair builds the seed ISO (label cidata) on the storage of the first disk and attaches it as a read-only cdrom."`
}

// CloudInit is a VM's cloud-init (NoCloud) configuration.
type CloudInit struct {
	UserData          string   `json:"user_data,omitempty" maxLength:"65536" doc:"A #cloud-config YAML document, a script starting with #!, or MIME multipart."`
	MetaData          string   `json:"meta_data,omitempty" maxLength:"65536" doc:"YAML mapping; instance-id (the VM's id) and local-hostname are filled in."`
	NetworkConfig     string   `json:"network_config,omitempty" maxLength:"65536" doc:"Network config version 1 or 2 (YAML)."`
	SSHAuthorizedKeys []string `json:"ssh_authorized_keys,omitempty" maxItems:"100" doc:"OpenSSH public keys, given to the guest as public-keys."`
	Hostname          string   `json:"hostname,omitempty" maxLength:"253"`
}

func cloudInitIn(c *CloudInit) *vm.CloudInitConfig {
	if c == nil {
		return nil
	}
	return &vm.CloudInitConfig{UserData: c.UserData, MetaData: c.MetaData, NetworkConfig: c.NetworkConfig,
		SSHAuthorizedKeys: c.SSHAuthorizedKeys, Hostname: c.Hostname}
}

// VMEdit changes a stopped VM; absent fields stay as they are, lists given replace the current ones.
type VMEdit struct {
	Name        *string          `json:"name,omitempty" minLength:"1" maxLength:"255" doc:"Printable text of at most 255 characters, without a slash or a backslash; leading and trailing white space is dropped."`
	Description *string          `json:"description,omitempty" maxLength:"255" doc:"At most 255 characters, no control characters."`
	CPU         *CPU             `json:"cpu,omitempty"`
	Memory      *int64           `json:"memory,omitempty" minimum:"16777216" maximum:"17592186044416" multipleOf:"1048576" doc:"Bytes, a whole number of MiB from 16 MiB to 16 TiB."`
	Firmware    *string          `json:"firmware,omitempty" enum:"bios,uefi" doc:"bios or uefi."`
	MachineType *string          `json:"machine_type,omitempty" maxLength:"255"`
	Boot        *[]string        `json:"boot,omitempty" enum:"hd,cdrom,network" maxItems:"3" doc:"Boot order: hd, cdrom, network."`
	Disks       *[]DiskRequest   `json:"disks,omitempty" maxItems:"64"`
	CDROMs      *[]CDROM         `json:"cdroms,omitempty" maxItems:"64"`
	Interfaces  *[]Interface     `json:"interfaces,omitempty" maxItems:"32"`
	Graphics    *GraphicsRequest `json:"graphics,omitempty"`
	CloudInit   *CloudInit       `json:"cloud_init,omitempty" doc:"Replaces the cloud-init configuration; the seed ISO is rebuilt."`
}

// VMStop says how to stop a VM.
type VMStop struct {
	Force             bool `json:"force,omitempty" doc:"Power off at once instead of asking the guest to shut down."`
	Timeout           int  `json:"timeout,omitempty" minimum:"0" maximum:"3600" doc:"Seconds a graceful stop waits for the guest (default 60); then 504 and the VM keeps running, unless force_after_timeout."`
	ForceAfterTimeout bool `json:"force_after_timeout,omitempty"`
}

// VolumeAttach attaches an existing volume to a stopped VM.
type VolumeAttach struct {
	VolumeID uuid.UUID `json:"volume_id" format:"uuid"`
	Bus      string    `json:"bus,omitempty" enum:"virtio,sata,scsi" doc:"virtio (default), sata or scsi."`
}

func vmOut(v *vm.VM) *VM {
	out := &VM{ID: v.ID, Name: v.Name, Description: v.Description,
		CPU:    CPU{Sockets: v.CPU.Sockets, Cores: v.CPU.Cores, Threads: v.CPU.Threads, Mode: v.CPU.Mode, Model: v.CPU.Model},
		Memory: v.MemoryBytes, Firmware: v.Firmware, MachineType: v.MachineType, Boot: append([]string{}, v.Boot...),
		Disks: make([]Disk, 0, len(v.Disks)), CDROMs: make([]CDROM, 0, len(v.CDROMs)),
		Interfaces: make([]Interface, 0, len(v.Interfaces)),
		Graphics:   Graphics{Type: v.Graphics.Type, Listen: v.Graphics.Listen, PasswordSet: v.Graphics.Password != ""},
		Status:     v.Status, StatusReason: v.StatusReason, PowerState: v.PowerState, PowerStateReason: v.PowerStateReason,
		PowerStateObservedAt: v.PowerStateObservedAt, PowerStateStale: v.PowerStateStale, CreatedAt: v.CreatedAt,
		UpdatedAt: v.UpdatedAt, Version: v.Version}
	for _, d := range v.Disks {
		out.Disks = append(out.Disks, Disk(d))
	}
	for _, c := range v.CDROMs {
		out.CDROMs = append(out.CDROMs, CDROM(c))
	}
	for _, n := range v.Interfaces {
		out.Interfaces = append(out.Interfaces, Interface(n))
	}
	if v.CloudInit != nil {
		c := v.CloudInit.Config.Redacted()
		out.CloudInit = &CloudInit{UserData: c.UserData, MetaData: c.MetaData, NetworkConfig: c.NetworkConfig,
			SSHAuthorizedKeys: c.SSHAuthorizedKeys, Hostname: c.Hostname}
	}
	return out
}

func cpuIn(c CPU) vm.CPU { return vm.CPU(c) }

func disksIn(ds []DiskRequest) []vm.DiskRequest {
	if ds == nil {
		return nil
	}
	out := make([]vm.DiskRequest, 0, len(ds))
	for _, d := range ds {
		r := vm.DiskRequest{Bus: d.Bus, BootOrder: d.BootOrder, ReadIOPS: d.ReadIOPS, WriteIOPS: d.WriteIOPS,
			ReadBytes: d.ReadBytes, WriteBytes: d.WriteBytes}
		if d.VolumeID != nil {
			r.VolumeID = *d.VolumeID
		}
		if d.New != nil {
			nr := d.New.request()
			r.New = &nr
		}
		out = append(out, r)
	}
	return out
}

func cdromsIn(cs []CDROM) []vm.CDROM {
	if cs == nil {
		return nil
	}
	out := make([]vm.CDROM, 0, len(cs))
	for _, c := range cs {
		out = append(out, vm.CDROM(c))
	}
	return out
}

func interfacesIn(ns []Interface) []vm.Interface {
	if ns == nil {
		return nil
	}
	out := make([]vm.Interface, 0, len(ns))
	for _, n := range ns {
		out = append(out, vm.Interface(n))
	}
	return out
}

func graphicsIn(g *GraphicsRequest) vm.Graphics {
	if g == nil {
		return vm.Graphics{}
	}
	return vm.Graphics{Type: g.Type, Listen: g.Listen, Password: g.Password}
}

func (c *VMCreate) request() vm.CreateRequest {
	return vm.CreateRequest{Name: c.Name, Description: c.Description, CPU: cpuIn(c.CPU), MemoryBytes: c.Memory,
		Firmware: c.Firmware, MachineType: c.MachineType, Boot: c.Boot, Disks: disksIn(c.Disks),
		CDROMs: cdromsIn(c.CDROMs), Interfaces: interfacesIn(c.Interfaces), Graphics: graphicsIn(c.Graphics),
		CloudInit: cloudInitIn(c.CloudInit)}
}

func (e *VMEdit) request() vm.EditRequest {
	r := vm.EditRequest{Name: e.Name, Description: e.Description, MemoryBytes: e.Memory, Firmware: e.Firmware,
		MachineType: e.MachineType, Boot: e.Boot, CloudInit: cloudInitIn(e.CloudInit)}
	if e.CPU != nil {
		c := cpuIn(*e.CPU)
		r.CPU = &c
	}
	if e.Disks != nil {
		d := disksIn(*e.Disks)
		if d == nil {
			d = []vm.DiskRequest{}
		}
		r.Disks = &d
	}
	if e.CDROMs != nil {
		c := cdromsIn(*e.CDROMs)
		if c == nil {
			c = []vm.CDROM{}
		}
		r.CDROMs = &c
	}
	if e.Interfaces != nil {
		n := interfacesIn(*e.Interfaces)
		if n == nil {
			n = []vm.Interface{}
		}
		r.Interfaces = &n
	}
	if e.Graphics != nil {
		g := graphicsIn(e.Graphics)
		r.Graphics = &g
	}
	return r
}

// Console is how to reach a VM's graphical console.
type Console struct {
	Type        string `json:"type" enum:"vnc,spice" doc:"vnc or spice."`
	Host        string `json:"host"`
	Port        int    `json:"port"`
	PasswordSet bool   `json:"password_set" doc:"The console asks for the VM's graphics password."`
}

// Operation is one piece of work of the SDK: every create, change, delete and action is one, recorded with
// its status, progress, requester and outcome. An asynchronous request (Prefer: respond-async) answers 202
// with its operation; follow it with GET /api/v1/operations/{id} or .../wait.
type Operation struct {
	ID              uuid.UUID         `json:"id" format:"uuid"`
	Kind            string            `json:"kind" doc:"<resource>.<verb>: storage.create, volume.extend, image.upload, vm.stop, ..."`
	TargetType      string            `json:"target_type" doc:"The kind of entity the operation acts on: storage, volume, image or vm."`
	TargetID        *uuid.UUID        `json:"target_id,omitempty" format:"uuid" doc:"The entity acted on; absent until a create has chosen its id."`
	Status          operation.Status  `json:"status" enum:"pending,running,succeeded,failed,cancelled" doc:"pending (waits for a worker), running, or final: succeeded, failed, cancelled."`
	Progress        OperationProgress `json:"progress"`
	Requester       string            `json:"requester,omitempty" doc:"The name of the token whose request started the operation."`
	RequestID       string            `json:"request_id,omitempty" doc:"The X-Request-Id of that request."`
	Cancellable     bool              `json:"cancellable" doc:"A running operation of this kind stops when cancelled (a pending one always can be)."`
	CancelRequested bool              `json:"cancel_requested" doc:"Somebody asked to cancel it."`
	Error           *OperationError   `json:"error,omitempty" doc:"Why it failed or was cancelled (status failed or cancelled)."`
	Result          *OperationResult  `json:"result,omitempty" doc:"The entity it produced or changed (status succeeded)."`
	Owner           string            `json:"owner,omitempty" doc:"The server process running it."`
	LeaseUntil      *time.Time        `json:"lease_until,omitempty" doc:"Until when the owner's claim lasts unless renewed; an operation whose owner stopped renewing is failed by recovery."`
	CreatedAt       time.Time         `json:"created_at"`
	StartedAt       *time.Time        `json:"started_at,omitempty"`
	FinishedAt      *time.Time        `json:"finished_at,omitempty"`
	UpdatedAt       time.Time         `json:"updated_at"`
	Version         int64             `json:"version"`
}

// OperationProgress is how far an operation is: bytes for copies and uploads, steps for multi-step work.
type OperationProgress struct {
	BytesDone  int64  `json:"bytes_done,omitempty"`
	BytesTotal int64  `json:"bytes_total,omitempty"`
	Step       int    `json:"step,omitempty"`
	Steps      int    `json:"steps,omitempty"`
	Message    string `json:"message,omitempty"`
}

// OperationError is why an operation failed, shaped like the problem a synchronous request would have
// answered.
type OperationError struct {
	Type   string `json:"type" doc:"A URI reference to the problem type (about:blank)."`
	Title  string `json:"title" doc:"The HTTP status text of the kind (Cancelled for a cancelled operation)."`
	Status int    `json:"status,omitempty" doc:"The HTTP status a synchronous request would have answered."`
	Kind   string `json:"kind" doc:"The error kind, as in problems (not_found, in_use, timeout, ...), or cancelled."`
	Detail string `json:"detail" doc:"What went wrong."`
}

// OperationResult names the entity an operation produced or changed, at the version it left it.
type OperationResult struct {
	ID      uuid.UUID `json:"id" format:"uuid"`
	Version int64     `json:"version,omitempty" doc:"The entity's version when the operation ended (absent when unknown)."`
}

func operationOut(op *operation.Operation) *Operation {
	out := &Operation{ID: op.ID, Kind: op.Kind, TargetType: op.TargetType, Status: op.Status,
		Progress: OperationProgress(op.Progress), Requester: op.Requester, RequestID: op.RequestID,
		Cancellable: op.Cancellable, CancelRequested: op.CancelRequested, Owner: op.Owner,
		CreatedAt: op.CreatedAt, StartedAt: op.StartedAt, FinishedAt: op.FinishedAt, UpdatedAt: op.UpdatedAt,
		Version: op.Version}
	if op.TargetID != uuid.Nil {
		id := op.TargetID
		out.TargetID = &id
	}
	if !op.LeaseUntil.IsZero() {
		t := op.LeaseUntil
		out.LeaseUntil = &t
	}
	if op.Result != nil {
		out.Result = &OperationResult{ID: op.Result.ID, Version: op.Result.Version}
	}
	if op.Error != nil {
		out.Error = operationError(op.Error)
	}
	return out
}

// operationError renders a stored operation error as a problem: the status and title of its kind, and
// for an internal error (500) not the cause, which stays in the stored operation, as the cause of any 500
// stays in the server's log.
func operationError(p *operation.Problem) *OperationError {
	e := &OperationError{Type: "about:blank", Kind: p.Kind, Detail: p.Message}
	if p.Kind == "cancelled" {
		e.Title = "Cancelled"
		return e
	}
	status := http.StatusInternalServerError
	if k := errkind.ByName(p.Kind); k != nil {
		status, _ = classify(k)
	}
	e.Status, e.Title = status, http.StatusText(status)
	if status == http.StatusInternalServerError {
		e.Kind, e.Detail = "internal", "internal error"
	}
	return e
}
