// Package localfs is the storage backend for local storages: a directory on the host (directory mode), or a
// block device that the backend checks, formats on request (ext4, xfs or btrfs) and mounts under its data
// directory (device mode). Volumes are files named volume-<id> and images files named image-<id> at the
// root of the storage; raw volumes are sparse files and qcow2 volumes are written by internal/qcow2, so no
// external tool is needed to manage volumes. A storage's configuration is a Config, its state a State.
//
// Directory mode: Config.Path must be absolute and clean; Prepare creates it (0710 or 0700, see New) when
// its parent exists, and records that it did (State.CreatedDir). Teardown removes the directory only when
// Prepare created it and it is empty: a directory the user made, a mount point, or one holding other files
// stays (and Teardown succeeds). CheckConfig, before a storage is recorded, resolves the symbolic links of
// the path (State.RealPath, which the backend then works in, and by which storages are told apart: the
// location is "dir:<real path>").
//
// System directories are refused (a *driver.ValidationError on config.path, matching ErrInvalid), with
// symbolic links resolved, whether or not allowed_dirs is set: /bin, /boot, /dev, /etc, /lib, /lib32,
// /lib64, /libx32, /proc, /root, /sbin, /sys and /usr, and everything below them; and /, /run, /tmp and /var
// themselves (their subdirectories, such as /var/lib/openvair, are allowed). The backend's data directory
// (driver.Config.DataDir) and everything inside it is allowed wherever it is. A path that does not exist
// (nor its parent), or is not a directory, is refused in the same way; a device that does not exist or is
// not a block device names config.device.
//
// Device mode: Config.Device must be a block device under /dev, and Format or ReuseFilesystem must be set
// (ErrInvalid otherwise). Prepare refuses (ErrInUse) a device that is mounted, holds a system mount point,
// has partitions or holders, is active swap, or carries any signature other than an ext4, xfs or btrfs
// filesystem; an existing filesystem is used only with ReuseFilesystem, or when its UUID is the storage's
// recorded State.FSUUID. Format creates a filesystem (mkfs.ext4, mkfs.xfs or mkfs.btrfs, run without a
// shell) only on a blank device: one where neither the built-in probe, blkid nor wipefs --no-act finds a
// signature, and whose first and last MiB are zeros; anything else is refused with ErrInUse naming what was
// found. Config.Wipe (with Format) is the operator's explicit override: the device's signatures are erased
// (wipefs --all), its first and last MiB zeroed and a new filesystem made, whatever it held, except the
// storage's own filesystem (its recorded FSUUID), which is mounted again and never wiped. The filesystem is
// mounted nosuid,nodev,noexec at <DataDir>/mnt/<storage id>, and Prepare records its UUID in the state, so
// that a device that comes back under another name is found again by UUID (and the device now at the old
// name is never formatted). Teardown unmounts (ErrInUse while files are open) and removes the mount point.
//
// Uploads are written to image-<id>.part, locked with flock, and renamed into place once complete and
// synced; Prepare and later uploads remove the unlocked leftovers of a crashed process.
//
// CloneVolume (driver.VolumeCloner) copies a volume file within the storage: a reflink (FICLONE) where the
// filesystem shares blocks (btrfs, xfs with reflink), else a sparse-aware streamed copy, both through a
// locked volume-<id>.part file renamed into place when complete. CloneVolumeReflink refuses instead of
// copying. Info does not declare InstantClone, since it depends on the filesystem of each storage.
//
// It registers itself as "localfs"; import it for its side effect or call New.
package localfs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/hostuser"
)

// Name is the name the backend registers under.
const Name = "localfs"

// defaultFileMode is the permission of volume and image files unless Options["file_mode"] says otherwise.
const defaultFileMode os.FileMode = 0o640

func init() {
	driver.RegisterStorage(Name, func(cfg driver.Config) (driver.StorageBackend, error) { return New(cfg) })
}

// Backend is the LocalFS storage backend. It is safe for concurrent use.
type Backend struct {
	dataDir  string
	fileMode os.FileMode
	// qemuGID is the group of the user QEMU runs as (-1: none): it may traverse the directories the backend
	// creates and read the files (see internal/hostuser).
	qemuGID int
	// allowed, when not empty, lists the directories that directory-mode storages must lie inside.
	allowed []string

	// mu serialises Prepare and Teardown, which format and mount devices.
	mu sync.Mutex
}

var _ driver.StorageBackend = (*Backend)(nil)

// New returns a LocalFS backend. cfg.DataDir (absolute) is where device-mode storages are mounted, as
// <DataDir>/mnt/<storage id>; directory-mode storages do not need it. cfg.Options["file_mode"] (octal, for
// example "0660") sets the permission of the volume and image files it creates (default 0640).
// cfg.Options["qemu_group"] names the group QEMU runs with (default, when running as root: the primary group of the host's
// libvirt-qemu or qemu user when there is one; "none" for no group): the directories the backend creates
// are mode 0710 with that group, so QEMU can reach the files it is given and nobody else can list them,
// and the files belong to that group (read access with the default file mode). A directory the user
// gives must already be traversable by QEMU; the backend does not change its permissions.
// cfg.Options["allowed_dirs"] (colon-separated absolute paths) confines directory-mode storages to
// subdirectories of those directories, symbolic links resolved; without it any absolute path that is not a
// system directory (see the package documentation) is accepted. System directories are refused either way.
func New(cfg driver.Config) (*Backend, error) {
	b := &Backend{fileMode: defaultFileMode, qemuGID: -1}
	switch g := cfg.Options["qemu_group"]; g {
	case "":
		if id, ok := hostuser.DefaultQEMU(); ok {
			b.qemuGID = id.GID
		}
	case "none":
	default:
		gid, err := hostuser.LookupGroup(g)
		if err != nil {
			return nil, errkind.Wrap(errkind.Invalid, err, Name, "", "option qemu_group: no group %q", g)
		}
		b.qemuGID = gid
	}
	if cfg.DataDir != "" {
		if !filepath.IsAbs(cfg.DataDir) {
			return nil, errkind.New(errkind.Invalid, Name, "", "data directory %q is not an absolute path", cfg.DataDir)
		}
		b.dataDir = filepath.Clean(cfg.DataDir)
	}
	if m, ok := cfg.Options["file_mode"]; ok {
		v, err := strconv.ParseUint(m, 8, 32)
		if err != nil || v > 0o777 {
			return nil, errkind.New(errkind.Invalid, Name, "", "option file_mode %q is not an octal permission", m)
		}
		b.fileMode = os.FileMode(v)
	}
	if dirs, ok := cfg.Options["allowed_dirs"]; ok && dirs != "" {
		for _, d := range strings.Split(dirs, ":") {
			if !filepath.IsAbs(d) || filepath.Clean(d) != d {
				return nil, errkind.New(errkind.Invalid, Name, "", "option allowed_dirs: %q is not a clean absolute path", d)
			}
			b.allowed = append(b.allowed, d)
		}
	}
	return b, nil
}

// Info names the backend and its capabilities.
func (b *Backend) Info() driver.StorageInfo {
	return driver.StorageInfo{
		Name: Name,
		Capabilities: driver.StorageCapabilities{
			VolumeFormats: []driver.VolumeFormat{driver.FormatQCOW2, driver.FormatRaw},
			Extend:        true,
			RemoteAttach:  false,
		},
	}
}

// Close releases nothing: the backend keeps no connection or descriptor between calls. Device-mode
// storages stay mounted (Teardown unmounts them); a new backend over the same data directory finds them
// there. It is idempotent and the backend stays usable.
func (b *Backend) Close() error { return nil }

// checkCtx returns a Timeout error (deadline) or an error wrapping context.Canceled when ctx is done.
func checkCtx(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return ctxErr(err, "storage", id)
	}
	return nil
}

func ctxErr(err error, entity, id string) error {
	if err == context.DeadlineExceeded {
		return errkind.Wrap(errkind.Timeout, err, entity, id, "deadline exceeded")
	}
	if id == "" {
		return fmt.Errorf("%s: %w", entity, err)
	}
	return fmt.Errorf("%s %s: %w", entity, id, err)
}

// giveToQEMU gives a new file or directory to the QEMU group, when there is one.
func (b *Backend) giveToQEMU(path string) error {
	if b.qemuGID < 0 {
		return nil
	}
	return os.Lchown(path, -1, b.qemuGID)
}
