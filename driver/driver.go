// Package driver defines the contracts between the openvair services and the systems they manage: a
// StorageBackend keeps volumes and images on a storage (a local directory or device, an NFS export), a
// Hypervisor runs VMs. Implementations live in subpackages (driver/localfs, driver/nfs, driver/libvirt,
// driver/fake), register themselves by name (see Register*), and are all held to the conformance suite in
// driver/drivertest.
//
// The contracts are deliberately plain: every method takes a context and must return once it is done;
// missing objects are reported with ErrNotFound, unreachable backends with ErrUnavailable. Optional
// capabilities are discovered through Info and through the optional interfaces (StateWatcher, StateLister).
// What a driver is built on (a libvirt connection, its error type) is reached through As and ErrorAs, the
// escape hatch for what the contracts do not cover; code that uses it is tied to that driver.
package driver

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/errkind"
)

// Error kinds drivers return; they are the same values as openvair.ErrNotFound and friends.
var (
	ErrNotFound      = errkind.NotFound
	ErrAlreadyExists = errkind.AlreadyExists
	ErrInvalid       = errkind.Invalid
	ErrInUse         = errkind.InUse
	ErrTooLarge      = errkind.TooLarge
	ErrUnavailable   = errkind.Unavailable
	ErrUnsupported   = errkind.Unsupported
	ErrTimeout       = errkind.Timeout
	ErrUnrunnable    = errkind.Unrunnable
	ErrBackendFailed = errkind.BackendFailed
)

// VolumeFormat is the on-disk format of a volume.
type VolumeFormat string

// Volume formats.
const (
	FormatQCOW2 VolumeFormat = "qcow2"
	FormatRaw   VolumeFormat = "raw"
)

// ImageFormat is the detected content type of an uploaded image.
type ImageFormat string

// Image formats, detected from content.
const (
	ImageISO   ImageFormat = "iso"
	ImageQCOW2 ImageFormat = "qcow2"
	ImageRaw   ImageFormat = "raw"
)

// PoolSpec is everything a storage backend needs to find a storage: its id, its type, the configuration its
// backend accepted (StorageConfigurer.CheckConfig) and the state the backend keeps with it (what Prepare
// and CheckConfig reported in their State). Config and State belong to the backend: openvair stores them
// as they are and never reads them.
type PoolSpec struct {
	ID     uuid.UUID
	Type   string
	Config json.RawMessage
	State  json.RawMessage
}

// PoolState is what a backend reports about a prepared storage.
type PoolState struct {
	Capacity   int64  // total bytes
	Available  int64  // bytes available for new data
	MountPoint string // where the storage is mounted on this host, if the backend mounts it
	// State, when not nil, replaces the state openvair keeps with the storage (PoolSpec.State): what Prepare
	// learned or did that later calls must know (a filesystem UUID, that it created the directory). A
	// backend that keeps no state leaves it nil.
	State json.RawMessage
}

// Apply returns pool with the state s reports recorded, as openvair records it after Prepare.
func (s PoolState) Apply(pool PoolSpec) PoolSpec {
	if s.State != nil {
		pool.State = s.State
	}
	return pool
}

// VolumeSpec describes a volume to create.
type VolumeSpec struct {
	ID     uuid.UUID
	Format VolumeFormat
	Size   int64 // virtual size in bytes
}

// VolumeInfo is what a backend reports about a volume.
type VolumeInfo struct {
	Format      VolumeFormat
	VirtualSize int64 // bytes the guest sees
	Allocated   int64 // bytes used on the storage
}

// ImageWrite describes an image upload.
type ImageWrite struct {
	ID      uuid.UUID
	MaxSize int64 // bytes; 0 means no limit
}

// ImageInfo is what a backend reports about an image.
type ImageInfo struct {
	Size   int64
	SHA256 string // hex; set by WriteImage, empty from InspectImage
	Format ImageFormat
}

// ObjectKind says whether an object on a storage is a volume or an image.
type ObjectKind string

// Object kinds.
const (
	KindVolume ObjectKind = "volume"
	KindImage  ObjectKind = "image"
)

// DiskSource says how a hypervisor reaches a volume or image: a local file, or a network disk.
type DiskSource struct {
	Type     string // "file" or "network"
	Path     string // file path for Type "file"
	Protocol string // "nfs" for Type "network"
	Host     string // server for Type "network"
	Name     string // path on the server, starting with "/"
}

// StorageCapabilities tells the services what a storage backend can do.
type StorageCapabilities struct {
	VolumeFormats []VolumeFormat // formats CreateVolume accepts
	Extend        bool           // ExtendVolume works
	RemoteAttach  bool           // volumes attach as network disks, without a host mount
	// InstantClone says that the backend implements VolumeCloner and that its clones share blocks with
	// their source (reflinks, snapshots): a clone takes about the same time whatever the volume's size.
	InstantClone bool
}

// StorageInfo names a backend and its capabilities.
type StorageInfo struct {
	Name         string
	Capabilities StorageCapabilities
}

// StorageBackend manages the storages of one type. Every object is named by its id; names chosen by users
// never reach the backend.
type StorageBackend interface {
	// Info names the backend and its capabilities.
	Info() StorageInfo
	// StorageConfigurer checks the configurations of new storages.
	StorageConfigurer
	// Prepare makes a storage usable (checks the server, creates the directory, formats and mounts a
	// device when asked) and reports its capacity. It is idempotent.
	Prepare(ctx context.Context, pool PoolSpec) (PoolState, error)
	// Teardown releases what Prepare set up (unmounts a device, removes an empty storage directory).
	Teardown(ctx context.Context, pool PoolSpec) error
	// Status reports capacity and health; an error means the storage is not usable now.
	Status(ctx context.Context, pool PoolSpec) (PoolState, error)

	// CreateVolume creates a volume file; ErrAlreadyExists if one exists with that id.
	CreateVolume(ctx context.Context, pool PoolSpec, vol VolumeSpec) (VolumeInfo, error)
	// ExtendVolume grows the volume vol.ID, whose format is vol.Format, to vol.Size bytes (virtual size). The
	// format is never guessed from the content: a raw volume whose guest wrote a qcow2 header stays raw.
	ExtendVolume(ctx context.Context, pool PoolSpec, vol VolumeSpec) (VolumeInfo, error)
	// DeleteVolume removes a volume; removing a missing volume succeeds.
	DeleteVolume(ctx context.Context, pool PoolSpec, id uuid.UUID) error
	// InspectVolume reports the volume vol.ID of format vol.Format (vol.Size is ignored); ErrNotFound when
	// its file is missing, ErrInvalid when a qcow2 volume has no valid header.
	InspectVolume(ctx context.Context, pool PoolSpec, vol VolumeSpec) (VolumeInfo, error)

	// WriteImage streams r into the storage, computing SHA-256 and detecting the format from content.
	// It refuses content over img.MaxSize (ErrTooLarge) and qcow2 images with a backing or external data
	// file (ErrInvalid), and leaves no file behind when it fails or ctx is cancelled.
	WriteImage(ctx context.Context, pool PoolSpec, img ImageWrite, r io.Reader) (ImageInfo, error)
	// DeleteImage removes an image; removing a missing image succeeds.
	DeleteImage(ctx context.Context, pool PoolSpec, id uuid.UUID) error
	// InspectImage reports an image's size and format; ErrNotFound when missing.
	InspectImage(ctx context.Context, pool PoolSpec, id uuid.UUID) (ImageInfo, error)

	// DiskSource tells a hypervisor where to find an object.
	DiskSource(pool PoolSpec, kind ObjectKind, id uuid.UUID) DiskSource

	// Close releases what the backend keeps open for its own use: cached connections to servers, sessions,
	// descriptors. It leaves the storages as they are: a device Prepare mounted stays mounted (Teardown
	// unmounts it), and the files stay. A new backend opened with the same configuration finds every storage
	// and object again. Close is idempotent, and safe on a backend that never connected or whose connection
	// failed. Calls after Close are not part of the contract: a backend may refuse them (ErrUnavailable) or
	// connect again.
	Close() error
}

// PowerState is a VM's power state as the hypervisor sees it.
type PowerState string

// Power states.
const (
	PowerShutOff  PowerState = "shut_off"
	PowerRunning  PowerState = "running"
	PowerPaused   PowerState = "paused"
	PowerStopping PowerState = "shutting_down"
	PowerCrashed  PowerState = "crashed"
	PowerMissing  PowerState = "missing" // the hypervisor has no such domain
)

// UsesDisks reports whether a domain in this power state has its disks open: it runs, is paused or is
// shutting down. Its volumes may then not be extended, detached or deleted. This is the one place the
// rule is written; the repositories (volume attachments' Active) and the services use it.
func (p PowerState) UsesDisks() bool {
	return p == PowerRunning || p == PowerPaused || p == PowerStopping
}

// PowerReason is why a domain is in its power state, as the hypervisor tells it ("" when it does not).
type PowerReason string

// Power state reasons (libvirt's state reasons and lifecycle event details). A shut-off domain says how it
// stopped: the guest shut down, it was destroyed (forced off), it crashed, it was migrated away, saved,
// failed to start or run, or libvirtd found its process gone.
const (
	ReasonUnknown      PowerReason = "unknown"
	ReasonBooted       PowerReason = "booted"
	ReasonShutdown     PowerReason = "shutdown"
	ReasonDestroyed    PowerReason = "destroyed"
	ReasonCrashed      PowerReason = "crashed"
	ReasonMigrated     PowerReason = "migrated"
	ReasonSaved        PowerReason = "saved"
	ReasonRestored     PowerReason = "restored"
	ReasonFailed       PowerReason = "failed"
	ReasonFromSnapshot PowerReason = "from_snapshot"
	ReasonDaemon       PowerReason = "daemon"
	ReasonUser         PowerReason = "user"
	ReasonUnpaused     PowerReason = "unpaused"
	ReasonIOError      PowerReason = "io_error"
	ReasonWatchdog     PowerReason = "watchdog"
	ReasonPanicked     PowerReason = "panicked"
	ReasonWakeup       PowerReason = "wakeup"
)

// DomainState is a domain's power state and the hypervisor's reason for it.
type DomainState struct {
	Power  PowerState
	Reason PowerReason
}

// CPUSpec is a VM's CPU topology and mode.
type CPUSpec struct {
	Sockets int
	Cores   int
	Threads int
	Mode    string // "host-passthrough", "host-model" or "custom"
	Model   string // for Mode "custom"
}

// DiskSpec is one disk or cdrom of a domain.
type DiskSpec struct {
	Device    string // "disk" or "cdrom"
	Bus       string // "virtio", "sata" or "scsi"
	Format    VolumeFormat
	ReadOnly  bool
	Source    DiskSource
	BootOrder int // 0: not in the per-device boot order
	// I/O limits, 0 means none.
	ReadIOPS, WriteIOPS   int64
	ReadBytes, WriteBytes int64
}

// NICSpec is one network interface of a domain.
type NICSpec struct {
	Type   string // "bridge" or "network"
	Source string // bridge or libvirt network name
	Model  string // "virtio", "e1000" or "rtl8139"
	MAC    string
}

// GraphicsSpec is a domain's remote console.
type GraphicsSpec struct {
	Type     string // "vnc", "spice" or "" for none
	Listen   string
	Password string
}

// DomainSpec is everything a hypervisor needs to define a VM.
type DomainSpec struct {
	ID          uuid.UUID
	Name        string
	Description string
	CPU         CPUSpec
	MemoryBytes int64
	Firmware    string   // "bios" or "uefi"
	MachineType string   // "" for the hypervisor's default
	Boot        []string // boot device order: "hd", "cdrom", "network"
	Disks       []DiskSpec
	Interfaces  []NICSpec
	Graphics    GraphicsSpec
}

// Console is how to reach a VM's graphical console.
type Console struct {
	Type string `json:"type"` // "vnc" or "spice"
	Host string `json:"host"`
	Port int    `json:"port"`
}

// HypervisorCapabilities tells the services what a hypervisor can do; the services refuse what it cannot
// (ErrUnsupported naming the capability) before any I/O. Whether it reports power state events is not a
// flag: it implements StateWatcher or not.
type HypervisorCapabilities struct {
	UEFI       bool
	NFSDisks   bool // network disks with protocol nfs
	Graphics   []string
	DomainType string // "kvm" or "qemu"
}

// HypervisorInfo names a hypervisor and its capabilities.
type HypervisorInfo struct {
	Name         string
	Capabilities HypervisorCapabilities
}

// Hypervisor runs VMs as persistent domains named by the VM id.
type Hypervisor interface {
	// Info names the hypervisor and its capabilities.
	Info() HypervisorInfo
	// Define creates or replaces the persistent definition of a domain.
	Define(ctx context.Context, spec DomainSpec) error
	// Undefine removes a domain's definition (and its NVRAM); a missing domain succeeds.
	Undefine(ctx context.Context, id uuid.UUID) error
	// Start boots a defined domain.
	Start(ctx context.Context, id uuid.UUID) error
	// Shutdown asks the guest to power off (ACPI) and returns without waiting.
	Shutdown(ctx context.Context, id uuid.UUID) error
	// Destroy powers a domain off at once.
	Destroy(ctx context.Context, id uuid.UUID) error
	// Reboot asks the guest to reboot (ACPI: the guest decides).
	Reboot(ctx context.Context, id uuid.UUID) error
	// Reset restarts a running domain at once, like a hardware reset button; the guest is not asked.
	Reset(ctx context.Context, id uuid.UUID) error
	// State reports a domain's power state and its reason; PowerMissing when it is not defined.
	State(ctx context.Context, id uuid.UUID) (DomainState, error)
	// Console reports where the domain's graphical console listens.
	Console(ctx context.Context, id uuid.UUID) (Console, error)

	// Close releases what the driver keeps open: its connection to the hypervisor, event subscriptions
	// (their channels close). The domains are left as they are: running VMs keep running. Close is
	// idempotent, and safe on a driver that never connected or whose connection failed. Calls after Close
	// are not part of the contract: a driver may refuse them (ErrUnavailable) or connect again.
	Close() error
}

// StateEvent is a power state change reported by a hypervisor.
type StateEvent struct {
	ID     uuid.UUID
	State  PowerState
	Reason PowerReason
	At     time.Time
}

// StateWatcher is implemented by hypervisors that push power state changes. The channel is closed when ctx
// ends or the connection is lost; the caller resubscribes.
type StateWatcher interface {
	WatchStates(ctx context.Context) (<-chan StateEvent, error)
}

// ConsoleLogger is implemented by hypervisors that keep what a domain writes on its serial console.
type ConsoleLogger interface {
	// ConsoleLog returns at most max bytes from the end of the domain's serial console log (all of it when
	// max <= 0); ErrNotFound when there is no log (the domain never ran since it was defined).
	ConsoleLog(ctx context.Context, id uuid.UUID, max int64) ([]byte, error)
}

// StateLister is implemented by hypervisors that report every domain's state in one call.
type StateLister interface {
	States(ctx context.Context) (map[uuid.UUID]DomainState, error)
}

// UploadSweeper is implemented by storage backends whose uploads leave partial files while they run
// (image-<id>.part). The image service calls it for every storage when it recovers, at Open.
type UploadSweeper interface {
	// SweepUploads removes the partial files of uploads that are not running: those a crashed or killed
	// process left behind, whatever their age. It never removes the partial file of an upload in progress
	// in this process. A missing storage directory is not an error.
	SweepUploads(ctx context.Context, pool PoolSpec) error
}

// Aser is implemented by drivers that give access to what they are built on, for what the contracts do not
// cover. Each driver documents the target types it accepts (the libvirt driver: **golibvirt.Libvirt, its
// live connection). Code that uses it depends on that driver: it is an escape hatch, not a contract.
type Aser interface {
	// As sets *target (target is a pointer to a type the driver documents) to the driver's underlying value
	// and reports whether it did. It reports false for a target type the driver does not know and when the
	// value is not available (a connection that is down).
	As(target any) bool
}

// As calls x.As(target) when x (a StorageBackend, a Hypervisor) implements Aser, and reports false
// otherwise. For example, with the libvirt driver:
//
//	var l *golibvirt.Libvirt
//	if driver.As(hv, &l) {
//		v, err := l.ConnectGetLibVersion()
//		...
//	}
func As(x any, target any) bool {
	if target == nil {
		return false
	}
	a, ok := x.(Aser)
	return ok && a.As(target)
}

// ErrorAser is implemented by drivers whose errors carry an error of the library or system they are built
// on (the libvirt driver: golibvirt.Error, with libvirt's error code), for callers that need more than the
// error kind. Each driver documents the target types it accepts.
type ErrorAser interface {
	// ErrorAs finds in err's chain (err was returned by this driver) the first error that matches target, a
	// pointer to a type the driver documents, sets *target to it and reports whether it found one, like
	// errors.As. It reports false for a target type the driver does not know.
	ErrorAs(err error, target any) bool
}

// ErrorAs calls x.ErrorAs(err, target) when x implements ErrorAser, and reports false otherwise or when err
// is nil. For example, with the libvirt driver:
//
//	var lerr golibvirt.Error
//	if driver.ErrorAs(hv, err, &lerr) && golibvirt.ErrorNumber(lerr.Code) == golibvirt.ErrNoDomain {
//		...
//	}
func ErrorAs(x any, err error, target any) bool {
	if err == nil || target == nil {
		return false
	}
	a, ok := x.(ErrorAser)
	return ok && a.ErrorAs(err, target)
}

// VolumeCloner is implemented by storage backends that copy a volume within a storage. With
// Capabilities.InstantClone the copy shares blocks with its source (a reflink, FICLONE), so it takes about
// the same time whatever the volume's size; without it the backend may stream the data (sparse-aware). A
// snapshot of a volume is a clone that openvair keeps read-only: volume snapshots and volumes made from
// volumes build on this one operation.
type VolumeCloner interface {
	// CloneVolume creates the volume dst as a copy of the volume src.ID, of format src.Format (src.Size is
	// ignored), on the same storage: same format, same virtual size, same content. From then on the two are
	// independent: writing to one leaves the other unchanged. ErrNotFound when src is missing,
	// ErrAlreadyExists when dst exists; a failed or cancelled clone leaves no dst behind. The caller makes
	// sure nothing writes to src while it is cloned (its VM is stopped).
	CloneVolume(ctx context.Context, pool PoolSpec, src VolumeSpec, dst uuid.UUID) (VolumeInfo, error)
}

// SerialConsoler is implemented by hypervisors that connect to a running domain's serial console.
type SerialConsoler interface {
	// OpenSerial connects to the first serial console of the running domain id: reads return what the
	// guest writes on it, writes are typed into it. Closing the connection ends it and leaves the domain
	// running. ErrNotFound when the domain is not defined, an error wrapping ErrUnavailable when it is not
	// running or the console is taken by another client.
	OpenSerial(ctx context.Context, id uuid.UUID) (io.ReadWriteCloser, error)
}

// ObjectRef names an object on a storage and its format, as the base of a linked clone.
type ObjectRef struct {
	Kind   ObjectKind
	ID     uuid.UUID
	Format VolumeFormat // qcow2 or raw (an image's format, for images)
}

// ObjectFile is an object's file as stored (a qcow2 volume is read as its qcow2 file, not its guest data).
type ObjectFile interface {
	io.ReaderAt
	io.Closer
	// Size is the file's size in bytes.
	Size() int64
}

// ObjectReader is implemented by storage backends that let openvair read objects' files, so that volumes
// can be made from images and from other volumes (copies and conversions run in Go, in openvair).
type ObjectReader interface {
	// OpenObject opens the file of a volume or an image for reading; the caller closes it. ErrNotFound
	// when it is missing.
	OpenObject(ctx context.Context, pool PoolSpec, kind ObjectKind, id uuid.UUID) (ObjectFile, error)
}

// VolumeFiller is implemented by storage backends that create a volume with given content.
type VolumeFiller interface {
	// FillVolume creates the volume vol of format vol.Format and virtual size vol.Size whose guest data is
	// read from src: src holds srcSize bytes of guest data (srcSize <= vol.Size; the rest reads as zeros)
	// and is read with ReadAt from any goroutine. Runs of zeros may be left unallocated (sparse files,
	// unallocated qcow2 clusters). progress, when not nil, is called now and then with the bytes of src
	// done. Like CreateVolume it refuses an existing id (ErrAlreadyExists) and leaves no volume behind when
	// it fails or ctx ends.
	FillVolume(ctx context.Context, pool PoolSpec, vol VolumeSpec, src io.ReaderAt, srcSize int64, progress func(done int64)) (VolumeInfo, error)
}

// VolumeLinker is implemented by storage backends that make linked clones: a qcow2 volume whose
// unallocated clusters read from a base object on the same storage. The base is named by a path relative
// to the new volume, so the storage can move, and must not change while linked volumes use it (openvair
// refuses to delete or write it).
type VolumeLinker interface {
	// LinkVolume creates the qcow2 volume vol (vol.Format must be qcow2, vol.Size at least the base's
	// virtual size) over base. ErrNotFound when the base is missing, ErrAlreadyExists when vol exists.
	LinkVolume(ctx context.Context, pool PoolSpec, base ObjectRef, vol VolumeSpec) (VolumeInfo, error)
}
