// Package btrfs is a storage backend for storages on btrfs filesystems, whose volumes clone instantly: a
// clone (driver.VolumeCloner) is a reflink of the volume's file, which shares every block with its source
// until one of them is written, so it takes about the same time whatever the volume's size and uses no
// space at first. Volume snapshots build on clones: a snapshot is a clone that openvair keeps read-only, so
// on btrfs a snapshot is as cheap as a clone, and a volume made from a snapshot is a clone of the clone.
//
// A btrfs storage is one of:
//
//   - a directory on a mounted btrfs filesystem: {"path": "/srv/vms"}. The directory may exist, or be a
//     new name in an existing directory that Prepare creates; either way it must be on btrfs (statfs
//     reports BTRFS_SUPER_MAGIC for the directory or, for a new one, its parent), or CheckConfig refuses it
//     with a *driver.ValidationError naming config.path. Prepare, Status and every object operation check
//     it again and fail with driver.ErrUnavailable when the directory is no longer on btrfs (the
//     filesystem was unmounted), so that no volume lands on the filesystem underneath.
//   - a block device: {"device": "/dev/sdb", "format": true}, formatted with btrfs (mkfs.btrfs) when
//     format is set and the device is blank, or mounted as it is with reuse_filesystem when it already
//     holds a btrfs filesystem; wipe, with format, destroys whatever the device holds. The device is
//     mounted under the backend's data directory, exactly as driver/localfs does in device mode, with the
//     same safety rules: see the driver/localfs documentation.
//
// Design: the backend is a thin layer over driver/localfs, used through its public API only. The layout,
// the file formats (raw sparse files and qcow2 images), uploads, device handling and the checks of
// directories and devices are localfs's; this package adds the btrfs checks, its own configuration (see
// Config and ConfigSchema) and instant clones. Every call converts the btrfs PoolSpec into a localfs one
// (type "localfs", the localfs form of the configuration with fs_type "btrfs" in device mode, the same
// state) and delegates to an inner *localfs.Backend. The state openvair keeps with a storage
// (PoolSpec.State) is the inner backend's, unchanged. Clones use localfs's CloneVolumeReflink: a clone
// that cannot be a reflink fails (driver.ErrUnsupported) instead of silently copying the data, so
// Capabilities.InstantClone holds.
//
// It registers itself as "btrfs"; import it for its side effect or call New.
package btrfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/localfs"
)

// Name is the name the backend registers under, and the storage type of its storages.
const Name = "btrfs"

func init() {
	driver.RegisterStorage(Name, func(cfg driver.Config) (driver.StorageBackend, error) { return New(cfg) })
}

// Config is the configuration of a btrfs storage, PoolSpec.Config in JSON. Path (directory mode) or Device
// (device mode) is set, never both; Format, ReuseFilesystem and Wipe apply to device mode only.
type Config struct {
	// Path is an absolute directory on a mounted btrfs filesystem, or a new name in one.
	Path string `json:"path,omitempty"`
	// Device is a block device under /dev that holds, or is to hold, the storage's btrfs filesystem.
	Device string `json:"device,omitempty"`
	// Format lets Prepare make a btrfs filesystem on a blank device.
	Format bool `json:"format,omitempty"`
	// ReuseFilesystem lets Prepare mount the btrfs filesystem a device already holds.
	ReuseFilesystem bool `json:"reuse_filesystem,omitempty"`
	// Wipe, with Format, lets Prepare destroy whatever the device holds and format it.
	Wipe bool `json:"wipe,omitempty"`
}

// fsType is the filesystem localfs makes and mounts in device mode for this backend.
const fsType = "btrfs"

// local returns the localfs configuration of the same storage.
func (c Config) local() localfs.Config {
	l := localfs.Config{Path: c.Path, Device: c.Device}
	if c.Device != "" {
		l.FSType, l.Format, l.ReuseFilesystem, l.Wipe = fsType, c.Format, c.ReuseFilesystem, c.Wipe
	}
	return l
}

// check reports the fields of c that are wrong whatever the host holds.
func (c Config) check() error {
	var ck driver.ConfigChecker
	switch {
	case c.Path != "" && c.Device != "":
		ck.Add("", "give either path (a directory on a btrfs filesystem) or device (a block device), not both")
	case c.Path == "" && c.Device == "":
		ck.Add("", "give path (a directory on a mounted btrfs filesystem) or device (a block device to hold a btrfs filesystem)")
	case c.Path != "":
		ck.Check(!c.Format, "format", "applies only with device")
		ck.Check(!c.ReuseFilesystem, "reuse_filesystem", "applies only with device")
		ck.Check(!c.Wipe, "wipe", "applies only with device")
	default:
		ck.Check(c.Format != c.ReuseFilesystem, "",
			"set exactly one of format (to create a btrfs filesystem on a blank device) and reuse_filesystem (to mount the btrfs filesystem the device holds)")
		ck.Check(!c.Wipe || c.Format, "wipe", "applies only with format")
	}
	return ck.Err()
}

// Backend is the btrfs storage backend. It is safe for concurrent use.
type Backend struct {
	inner *localfs.Backend
}

var (
	_ driver.StorageBackend = (*Backend)(nil)
	_ driver.VolumeCloner   = (*Backend)(nil)
	_ driver.UploadSweeper  = (*Backend)(nil)
)

// New returns a btrfs backend. cfg is the configuration of the localfs backend it delegates to (see
// localfs.New): cfg.DataDir is where device-mode storages are mounted, and cfg.Options file_mode,
// qemu_group and allowed_dirs have the same meaning.
func New(cfg driver.Config) (*Backend, error) {
	inner, err := localfs.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Backend{inner: inner}, nil
}

// Info names the backend "btrfs", with the volume formats and Extend of localfs, and InstantClone.
func (b *Backend) Info() driver.StorageInfo {
	caps := b.inner.Info().Capabilities
	return driver.StorageInfo{
		Name: Name,
		Capabilities: driver.StorageCapabilities{
			VolumeFormats: slices.Clone(caps.VolumeFormats),
			Extend:        caps.Extend,
			RemoteAttach:  false,
			InstantClone:  true,
		},
	}
}

// configSchema is the JSON Schema of Config.
const configSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "btrfs storage",
  "description": "A storage on a btrfs filesystem, whose volumes clone instantly (reflinks): a directory on a mounted btrfs filesystem (path), or a block device formatted with btrfs on request and mounted by openvair (device).",
  "type": "object",
  "properties": {
    "path": {
      "type": "string",
      "pattern": "^/",
      "description": "Absolute directory on a mounted btrfs filesystem; created when missing if its parent exists (and is on btrfs). System directories are refused."
    },
    "device": {
      "type": "string",
      "pattern": "^/dev/",
      "description": "Block device under /dev holding, or to hold, the storage's btrfs filesystem; openvair mounts it."
    },
    "format": {
      "type": "boolean",
      "default": false,
      "description": "Device only: create a btrfs filesystem when the device is blank. A device holding anything is refused unless wipe is set."
    },
    "reuse_filesystem": {
      "type": "boolean",
      "default": false,
      "description": "Device only: mount the btrfs filesystem the device already holds."
    },
    "wipe": {
      "type": "boolean",
      "default": false,
      "description": "Device only, with format: destroy whatever the device holds and format it."
    }
  },
  "additionalProperties": false,
  "oneOf": [
    {"required": ["path"], "not": {"required": ["device"]}},
    {"required": ["device"], "not": {"required": ["path"]}}
  ]
}`

// ConfigSchema returns the JSON Schema (2020-12) of Config.
func (b *Backend) ConfigSchema() json.RawMessage { return json.RawMessage(configSchema) }

// CheckConfig checks the configuration of a new btrfs storage and returns it normalized, with the state
// and location key localfs gives the same directory or device. A directory must be on a btrfs filesystem
// (or, when it does not exist yet, its parent must be); a *driver.ValidationError names config.path
// otherwise. The device is checked as localfs checks it (CheckConfig changes nothing; whether it can be
// formatted is Prepare's to decide).
func (b *Backend) CheckConfig(ctx context.Context, config json.RawMessage) (driver.CheckedConfig, error) {
	var c Config
	if err := driver.DecodeConfig(config, &c); err != nil {
		return driver.CheckedConfig{}, err
	}
	if err := c.check(); err != nil {
		return driver.CheckedConfig{}, err
	}
	checked, err := b.inner.CheckConfig(ctx, driver.MustJSON(c.local()))
	if err != nil {
		return driver.CheckedConfig{}, err
	}
	if c.Path != "" {
		dir := c.Path
		var st localfs.State
		if driver.DecodeState(checked.State, &st) == nil && st.RealPath != "" {
			dir = st.RealPath
		}
		if err := onBtrfs(dir); err != nil {
			var nb *notBtrfsError
			if errors.As(err, &nb) {
				return driver.CheckedConfig{}, driver.InvalidConfig(driver.FieldError{Field: "path", Message: nb.Error()})
			}
			return driver.CheckedConfig{}, fmt.Errorf("storage: %w: %v", driver.ErrUnavailable, err)
		}
	}
	// localfs may normalize what it was given (a cleaned path): keep its values.
	var l localfs.Config
	if err := json.Unmarshal(checked.Config, &l); err == nil {
		c.Path, c.Device = l.Path, l.Device
		if c.Device != "" {
			c.Format, c.ReuseFilesystem, c.Wipe = l.Format, l.ReuseFilesystem, l.Wipe
		}
	}
	return driver.CheckedConfig{Config: driver.MustJSON(c), State: checked.State, Location: checked.Location}, nil
}

// storage is a btrfs PoolSpec converted for the inner backend.
type storage struct {
	local driver.PoolSpec // the localfs PoolSpec
	dir   string          // directory mode: the storage directory; "" in device mode
}

// convert checks a PoolSpec and converts it into the localfs PoolSpec of the same storage. It touches no
// file.
func convert(pool driver.PoolSpec) (storage, error) {
	if pool.Type != "" && pool.Type != Name {
		return storage{}, fmt.Errorf("storage %s: %w: storage type %q is not %s", pool.ID, driver.ErrInvalid, pool.Type, Name)
	}
	var c Config
	if err := driver.DecodeConfig(pool.Config, &c); err != nil {
		return storage{}, fmt.Errorf("storage %s: bad btrfs configuration: %w", pool.ID, err)
	}
	if err := c.check(); err != nil {
		return storage{}, fmt.Errorf("storage %s: bad btrfs configuration: %w", pool.ID, err)
	}
	s := storage{local: driver.PoolSpec{ID: pool.ID, Type: localfs.Type, Config: driver.MustJSON(c.local()), State: pool.State}}
	if c.Path != "" {
		s.dir = c.Path
		var st localfs.State
		if err := driver.DecodeState(pool.State, &st); err != nil {
			return storage{}, fmt.Errorf("storage %s: %w", pool.ID, err)
		}
		if st.RealPath != "" {
			s.dir = st.RealPath // recorded at creation, as localfs uses it
		}
	}
	return s, nil
}

// notBtrfsError says that a directory is on another filesystem than btrfs.
type notBtrfsError struct {
	dir    string // the directory statfs looked at
	fsType string // what it found
}

func (e *notBtrfsError) Error() string {
	return fmt.Sprintf("%s is not on a btrfs filesystem (it is on %s)", e.dir, e.fsType)
}

// onBtrfs checks that dir, or its parent when dir does not exist, is on a btrfs filesystem. It returns a
// *notBtrfsError when it is not, and the statfs error when neither can be asked.
func onBtrfs(dir string) error {
	var st unix.Statfs_t
	err := unix.Statfs(dir, &st)
	if errors.Is(err, unix.ENOENT) && filepath.Dir(dir) != dir {
		dir = filepath.Dir(dir)
		err = unix.Statfs(dir, &st)
	}
	if err != nil {
		return &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	if uint64(st.Type) != unix.BTRFS_SUPER_MAGIC {
		return &notBtrfsError{dir: dir, fsType: fsName(uint64(st.Type))}
	}
	return nil
}

// fsName names a filesystem by its statfs magic number.
func fsName(magic uint64) string {
	switch magic {
	case unix.EXT4_SUPER_MAGIC:
		return "ext2/ext3/ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	case unix.NFS_SUPER_MAGIC:
		return "nfs"
	case 0x2fc12fc1:
		return "zfs"
	}
	return fmt.Sprintf("a filesystem with magic %#x", magic)
}

// ready converts pool and, in directory mode, checks that the storage directory is still on btrfs
// (ErrUnavailable otherwise: the btrfs filesystem is probably not mounted).
func (b *Backend) ready(ctx context.Context, pool driver.PoolSpec) (storage, error) {
	s, err := convert(pool)
	if err != nil {
		return s, err
	}
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return s, fmt.Errorf("storage %s: %w: %w", pool.ID, driver.ErrTimeout, err)
		}
		return s, fmt.Errorf("storage %s: %w", pool.ID, err)
	}
	if s.dir != "" {
		if err := onBtrfs(s.dir); err != nil {
			return s, fmt.Errorf("storage %s: %w: %v; is the btrfs filesystem mounted?", pool.ID, driver.ErrUnavailable, err)
		}
	}
	return s, nil
}

// Prepare makes a storage usable, as localfs does: directory mode creates the directory when missing (on
// btrfs only), device mode checks the device, formats it with btrfs when asked and allowed, and mounts it.
// The state it reports is localfs's. It is idempotent.
func (b *Backend) Prepare(ctx context.Context, pool driver.PoolSpec) (driver.PoolState, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.PoolState{}, err
	}
	return b.inner.Prepare(ctx, s.local)
}

// Teardown releases what Prepare set up, as localfs does: it unmounts a device-mode storage, and removes a
// directory only when Prepare created it and it is empty.
func (b *Backend) Teardown(ctx context.Context, pool driver.PoolSpec) error {
	s, err := convert(pool)
	if err != nil {
		return err
	}
	return b.inner.Teardown(ctx, s.local)
}

// Status reports capacity; an error wrapping driver.ErrUnavailable means the storage is not usable (a
// directory no longer on btrfs, a device not mounted).
func (b *Backend) Status(ctx context.Context, pool driver.PoolSpec) (driver.PoolState, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.PoolState{}, err
	}
	return b.inner.Status(ctx, s.local)
}

// CreateVolume creates a volume as localfs does: a sparse file for raw, a qcow2 image with preallocated
// metadata for qcow2.
func (b *Backend) CreateVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	return b.inner.CreateVolume(ctx, s.local, vol)
}

// ExtendVolume grows a volume as localfs does.
func (b *Backend) ExtendVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	return b.inner.ExtendVolume(ctx, s.local, vol)
}

// DeleteVolume removes a volume; removing a missing volume succeeds. Blocks the volume shares with its
// clones stay with the clones.
func (b *Backend) DeleteVolume(ctx context.Context, pool driver.PoolSpec, id uuid.UUID) error {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return err
	}
	return b.inner.DeleteVolume(ctx, s.local, id)
}

// InspectVolume reports a volume as localfs does.
func (b *Backend) InspectVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	return b.inner.InspectVolume(ctx, s.local, vol)
}

// CloneVolume implements driver.VolumeCloner with a reflink of the volume's file (localfs's
// CloneVolumeReflink): the clone shares every block with its source, whatever the volume's size. A reflink
// that fails is an error (driver.ErrUnsupported when btrfs refuses to share these files' blocks, for
// example between a NOCOW and a COW file), never a full copy; a failed or cancelled clone leaves no volume.
func (b *Backend) CloneVolume(ctx context.Context, pool driver.PoolSpec, src driver.VolumeSpec, dst uuid.UUID) (driver.VolumeInfo, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	return b.inner.CloneVolumeReflink(ctx, s.local, src, dst)
}

// WriteImage stores an upload as localfs does (SHA-256, format detection, partial file until complete).
func (b *Backend) WriteImage(ctx context.Context, pool driver.PoolSpec, img driver.ImageWrite, r io.Reader) (driver.ImageInfo, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.ImageInfo{}, err
	}
	return b.inner.WriteImage(ctx, s.local, img, r)
}

// DeleteImage removes an image; removing a missing image succeeds.
func (b *Backend) DeleteImage(ctx context.Context, pool driver.PoolSpec, id uuid.UUID) error {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return err
	}
	return b.inner.DeleteImage(ctx, s.local, id)
}

// InspectImage reports an image's size and format as localfs does.
func (b *Backend) InspectImage(ctx context.Context, pool driver.PoolSpec, id uuid.UUID) (driver.ImageInfo, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.ImageInfo{}, err
	}
	return b.inner.InspectImage(ctx, s.local, id)
}

// SweepUploads implements driver.UploadSweeper as localfs does: it removes the partial files of uploads
// that no upload holds.
func (b *Backend) SweepUploads(ctx context.Context, pool driver.PoolSpec) error {
	s, err := convert(pool)
	if err != nil {
		return err
	}
	return b.inner.SweepUploads(ctx, s.local)
}

// DiskSource tells a hypervisor where a volume or image file is: a local file, as with localfs.
func (b *Backend) DiskSource(pool driver.PoolSpec, kind driver.ObjectKind, id uuid.UUID) driver.DiskSource {
	s, err := convert(pool)
	if err != nil {
		return driver.DiskSource{Type: "file"}
	}
	return b.inner.DiskSource(s.local, kind, id)
}

// Close releases what the inner backend keeps (nothing: localfs keeps no connection). Device-mode
// storages stay mounted. It is idempotent.
func (b *Backend) Close() error { return b.inner.Close() }

// OpenObject opens a volume's or an image's file for reading, as localfs does (driver.ObjectReader).
func (b *Backend) OpenObject(ctx context.Context, pool driver.PoolSpec, kind driver.ObjectKind, id uuid.UUID) (driver.ObjectFile, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return nil, err
	}
	return b.inner.OpenObject(ctx, s.local, kind, id)
}

// FillVolume creates a volume from guest data, as localfs does (driver.VolumeFiller).
func (b *Backend) FillVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec, src io.ReaderAt, srcSize int64,
	progress func(done int64)) (driver.VolumeInfo, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	return b.inner.FillVolume(ctx, s.local, vol, src, srcSize, progress)
}

// LinkVolume creates a qcow2 overlay over a volume or an image, as localfs does (driver.VolumeLinker).
func (b *Backend) LinkVolume(ctx context.Context, pool driver.PoolSpec, base driver.ObjectRef, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	return b.inner.LinkVolume(ctx, s.local, base, vol)
}
