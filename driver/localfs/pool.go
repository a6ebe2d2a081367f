package localfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/hostuser"
)

// storage is a resolved PoolSpec: where its files live and how it was set up.
type storage struct {
	id     string
	dir    string // the directory holding volume-<id> and image-<id> (directory mode: RealPath, else Path)
	device bool   // device mode: dir is a mount point under the data directory
	spec   spec
}

// resolve checks a PoolSpec and computes the storage directory. It touches no file.
func (b *Backend) resolve(pool driver.PoolSpec) (*storage, error) {
	id := pool.ID.String()
	if pool.Type != "" && pool.Type != Name {
		return nil, errkind.New(errkind.Invalid, "storage", id, "storage type %q is not %s", pool.Type, Name)
	}
	spec, err := decodeSpec(pool)
	if err != nil {
		return nil, err
	}
	switch {
	case spec.Path != "" && spec.Device != "":
		return nil, errkind.New(errkind.Invalid, "storage", id, "give either a path or a device, not both")
	case spec.Path != "":
		dir := spec.Path
		if spec.RealPath != "" {
			dir = spec.RealPath // recorded at creation: a symbolic link changed since does not move the storage
		}
		if err := checkDirPath(dir); err != nil {
			return nil, fieldError(fieldPath, "%v", err)
		}
		if err := b.checkAllowed(dir); err != nil {
			return nil, fieldError(fieldPath, "%v", err)
		}
		return &storage{id: id, dir: dir, spec: spec}, nil
	case spec.Device != "":
		if pool.ID == uuid.Nil {
			return nil, errkind.New(errkind.Invalid, "storage", id, "a device-mode storage needs an id")
		}
		if b.dataDir == "" {
			return nil, errkind.New(errkind.Unavailable, "storage", id, "localfs backend has no data directory for device mounts")
		}
		return &storage{id: id, dir: b.mountPoint(pool.ID), device: true, spec: spec}, nil
	default:
		return nil, errkind.New(errkind.Invalid, "storage", id, "localfs storage needs a path or a device")
	}
}

// checkAllowed confines p to the allowed directories, when there are any: p, with the symbolic links of its
// longest existing prefix resolved, must lie strictly inside one of them (also resolved).
func (b *Backend) checkAllowed(p string) error {
	if len(b.allowed) == 0 {
		return nil
	}
	real, err := resolveExisting(p)
	if err != nil {
		return err
	}
	for _, root := range b.allowed {
		r, err := filepath.EvalSymlinks(root)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(r, real); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			return nil
		}
	}
	return fmt.Errorf("%s is not inside an allowed directory (%s)", p, strings.Join(b.allowed, ", "))
}

// resolveExisting resolves the symbolic links of the longest existing prefix of the clean absolute path p
// and appends the rest.
func resolveExisting(p string) (string, error) {
	rest := ""
	for cur := p; ; cur = filepath.Dir(cur) {
		real, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, os.ErrNotExist) || cur == "/" {
			return "", err
		}
		rest = filepath.Join(filepath.Base(cur), rest)
	}
}

// mountPoint is where a device-mode storage is mounted.
func (b *Backend) mountPoint(id uuid.UUID) string {
	return filepath.Join(b.dataDir, "mnt", id.String())
}

// checkDirPath accepts only absolute, clean paths other than "/".
func checkDirPath(p string) error {
	switch {
	case strings.ContainsRune(p, 0):
		return errors.New("path contains a NUL byte")
	case !filepath.IsAbs(p):
		return errors.New("path " + p + " is not absolute")
	case filepath.Clean(p) != p:
		return errors.New("path " + p + " is not clean (no '..', '.', '//' or trailing '/')")
	case p == "/":
		return errors.New("the root directory cannot be a storage")
	}
	return nil
}

// Prepare makes a storage usable. Directory mode checks the directory (see CheckConfig: not a system
// directory, inside allowed_dirs if set, a directory or a new name in an existing one) and creates it when
// missing, recording State.CreatedDir in the state it reports; device mode checks, formats (when asked, and only a blank device unless
// Wipe is set) and mounts the device. It is idempotent, and removes the partial files of uploads
// interrupted by a crash.
func (b *Backend) Prepare(ctx context.Context, pool driver.PoolSpec) (driver.PoolState, error) {
	s, err := b.resolve(pool)
	if err != nil {
		return driver.PoolState{}, err
	}
	if !s.device {
		if _, err := b.checkNewDir(s.dir); err != nil {
			return driver.PoolState{}, withID(err, s.id)
		}
	}
	if err := checkCtx(ctx, s.id); err != nil {
		return driver.PoolState{}, err
	}
	var state driver.PoolState
	if s.device {
		state, err = b.prepareDeviceLocked(ctx, s)
	} else {
		state, err = b.prepareDir(ctx, s)
	}
	if err != nil {
		return driver.PoolState{}, err
	}
	_ = sweepParts(ctx, s.dir, staleAge) // best effort: recovery sweeps again and reports
	return withState(state, s.spec), nil
}

func (b *Backend) prepareDeviceLocked(ctx context.Context, s *storage) (driver.PoolState, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.prepareDevice(ctx, s)
}

// prepareDir creates the directory of a directory-mode storage, checked by Prepare, when missing.
// PoolState.CreatedDir says whether the directory is openvair's: created now, or before according to the
// spec.
func (b *Backend) prepareDir(ctx context.Context, s *storage) (driver.PoolState, error) {
	created := false
	fi, err := os.Stat(s.dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := hostuser.MkdirTraversable(s.dir, b.qemuGID); err != nil {
			return driver.PoolState{}, errkind.Wrap(errkind.Unavailable, err, "storage", s.id, "cannot create directory %s", s.dir)
		}
		created = true
	case err != nil:
		return driver.PoolState{}, errkind.Wrap(errkind.Unavailable, err, "storage", s.id, "cannot stat %s", s.dir)
	case !fi.IsDir():
		return driver.PoolState{}, fieldError(fieldPath, "%s is not a directory", s.dir)
	}
	state, err := b.status(ctx, s)
	if err != nil {
		if created {
			_ = os.Remove(s.dir)
		}
		return driver.PoolState{}, err
	}
	s.spec.CreatedDir = created || s.spec.CreatedDir // once openvair's, always openvair's
	return state, nil
}

// Teardown releases what Prepare set up: it unmounts a device-mode storage and removes its mount point, and
// removes the directory of a directory-mode storage only when Prepare created it (State.CreatedDir)
// and it is empty. A directory that existed before Prepare is never removed; nor is one that holds other
// files, has something mounted on it, or was replaced by a symbolic link: those stay and Teardown succeeds.
func (b *Backend) Teardown(ctx context.Context, pool driver.PoolSpec) error {
	s, err := b.resolve(pool)
	if err != nil {
		return err
	}
	if err := checkCtx(ctx, s.id); err != nil {
		return err
	}
	if s.device {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.teardownDevice(ctx, s)
	}
	if !s.spec.CreatedDir {
		return nil // not openvair's directory
	}
	fi, err := os.Lstat(s.dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return errkind.Wrap(errkind.Unavailable, err, "storage", s.id, "cannot stat %s", s.dir)
	case !fi.IsDir():
		return nil // replaced by a file or a symbolic link: not the directory Prepare made
	}
	err = unix.Rmdir(s.dir)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST),
		errors.Is(err, unix.EBUSY), errors.Is(err, unix.EROFS):
		return nil // gone, or holds other files, or something is mounted on it: it stays
	}
	return errkind.Wrap(errkind.Unavailable, err, "storage", s.id, "cannot remove %s", s.dir)
}

// Status reports capacity; an error wrapping ErrUnavailable means the directory is missing, not a
// directory, not writable, or (device mode) not mounted.
func (b *Backend) Status(ctx context.Context, pool driver.PoolSpec) (driver.PoolState, error) {
	s, err := b.resolve(pool)
	if err != nil {
		return driver.PoolState{}, err
	}
	if err := checkCtx(ctx, s.id); err != nil {
		return driver.PoolState{}, err
	}
	if s.device {
		mounted, err := isMountPoint(s.dir)
		if err != nil {
			return driver.PoolState{}, errkind.Wrap(errkind.Unavailable, err, "storage", s.id, "cannot read the mount table")
		}
		if !mounted {
			return driver.PoolState{}, errkind.New(errkind.Unavailable, "storage", s.id, "device %s is not mounted at %s", s.spec.Device, s.dir)
		}
		if s.spec.FSUUID == "" {
			s.spec.FSUUID = mountedUUID(s.dir)
		}
	}
	return b.status(ctx, s)
}

// status checks that the storage directory exists and is writable, and reads its capacity.
func (b *Backend) status(ctx context.Context, s *storage) (driver.PoolState, error) {
	if err := checkCtx(ctx, s.id); err != nil {
		return driver.PoolState{}, err
	}
	fi, err := os.Stat(s.dir)
	if err != nil {
		return driver.PoolState{}, errkind.Wrap(errkind.Unavailable, err, "storage", s.id, "storage directory unreachable")
	}
	if !fi.IsDir() {
		return driver.PoolState{}, errkind.New(errkind.Unavailable, "storage", s.id, "%s is not a directory", s.dir)
	}
	if err := unix.Access(s.dir, unix.W_OK|unix.X_OK); err != nil {
		return driver.PoolState{}, errkind.Wrap(errkind.Unavailable, err, "storage", s.id, "storage directory %s is not writable", s.dir)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(s.dir, &st); err != nil {
		return driver.PoolState{}, errkind.Wrap(errkind.Unavailable, err, "storage", s.id, "statfs %s", s.dir)
	}
	if st.Flags&unix.ST_RDONLY != 0 {
		return driver.PoolState{}, errkind.New(errkind.Unavailable, "storage", s.id, "storage directory %s is on a read-only filesystem", s.dir)
	}
	bs := st.Frsize
	if bs == 0 {
		bs = st.Bsize
	}
	state := driver.PoolState{Capacity: int64(st.Blocks) * bs, Available: int64(st.Bavail) * bs}
	if s.device {
		state.MountPoint = s.dir
	}
	return withState(state, s.spec), nil
}

// ready checks, before an operation on objects, that the storage directory is there (and, in device mode,
// that the device is mounted on it, so files never land in the empty mount point directory).
func (b *Backend) ready(ctx context.Context, pool driver.PoolSpec) (*storage, error) {
	s, err := b.resolve(pool)
	if err != nil {
		return nil, err
	}
	if err := checkCtx(ctx, s.id); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Stat(s.dir, &st); err != nil {
		return nil, errkind.Wrap(errkind.Unavailable, err, "storage", s.id, "storage directory unreachable")
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, errkind.New(errkind.Unavailable, "storage", s.id, "%s is not a directory", s.dir)
	}
	if s.device {
		var pst unix.Stat_t
		if err := unix.Stat(filepath.Dir(s.dir), &pst); err != nil || pst.Dev == st.Dev {
			return nil, errkind.New(errkind.Unavailable, "storage", s.id, "no device is mounted at %s", s.dir)
		}
	}
	return s, nil
}

// objectPath is the file of a volume or image.
func (s *storage) objectPath(kind driver.ObjectKind, id uuid.UUID) string {
	return filepath.Join(s.dir, string(kind)+"-"+id.String())
}

// DiskSource tells a hypervisor where a volume or image file is.
func (b *Backend) DiskSource(pool driver.PoolSpec, kind driver.ObjectKind, id uuid.UUID) driver.DiskSource {
	s, err := b.resolve(pool)
	if err != nil {
		return driver.DiskSource{Type: "file"}
	}
	return driver.DiskSource{Type: "file", Path: s.objectPath(kind, id)}
}
