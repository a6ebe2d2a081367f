package quotadir

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
)

// sectorSize is the granularity of virtual sizes: requested sizes are rounded up to it, as qemu-img does.
const sectorSize = 512

// maxSize bounds every size, far beyond any filesystem and well inside int64 arithmetic (4 EiB).
const maxSize = 1 << 62

// checkVolume checks a volume spec for CreateVolume and ExtendVolume: an id, a size greater than 0 and the
// raw format (qcow2 is driver.ErrUnsupported: the backend does not declare it; any other driver.ErrInvalid).
// It returns the size rounded up to 512 bytes.
func checkVolume(p *pool, vol driver.VolumeSpec) (int64, error) {
	what := "volume " + vol.ID.String()
	switch {
	case vol.ID == uuid.Nil:
		return 0, fmt.Errorf("quotadir: volume id missing: %w", driver.ErrInvalid)
	case vol.Format == driver.FormatQCOW2:
		return 0, fmt.Errorf("quotadir: %s: quotadir keeps raw volumes only, not %s: %w", what, vol.Format, driver.ErrUnsupported)
	case vol.Format != driver.FormatRaw:
		return 0, fmt.Errorf("quotadir: %s: format %q is not raw: %w", what, vol.Format, driver.ErrInvalid)
	case vol.Size <= 0:
		return 0, fmt.Errorf("quotadir: %s: size %d must be greater than 0: %w", what, vol.Size, driver.ErrInvalid)
	case vol.Size > p.quota || vol.Size > maxSize:
		return 0, fmt.Errorf("quotadir: %s: size %d exceeds the quota of %d bytes: %w", what, vol.Size, p.quota, driver.ErrTooLarge)
	}
	return (vol.Size + sectorSize - 1) / sectorSize * sectorSize, nil
}

// CreateVolume creates volume-<id>, a sparse raw file of vol.Size bytes rounded up to 512. It refuses
// qcow2 (driver.ErrUnsupported), an existing id (driver.ErrAlreadyExists) and a size the quota cannot take
// (driver.ErrTooLarge: the virtual sizes of the volumes plus the sizes of the images would exceed it).
func (b *Backend) CreateVolume(ctx context.Context, spec driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	p, err := resolve(spec)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	size, err := checkVolume(p, vol)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	if err := ready(ctx, p); err != nil {
		return driver.VolumeInfo{}, err
	}
	what := "volume " + vol.ID.String()
	path := p.path(driver.KindVolume, vol.ID)

	unlock, err := lockDir(ctx, p)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	defer unlock()
	if _, err := os.Lstat(path); err == nil {
		return driver.VolumeInfo{}, fmt.Errorf("quotadir: %s: %w", what, driver.ErrAlreadyExists)
	}
	u, err := measure(ctx, p.dir)
	if err != nil {
		return driver.VolumeInfo{}, fmt.Errorf("quotadir: %s: %w", what, err)
	}
	if err := checkQuota(p, u, 0, size, "a new volume"); err != nil {
		return driver.VolumeInfo{}, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return driver.VolumeInfo{}, fmt.Errorf("quotadir: %s: %w", what, driver.ErrAlreadyExists)
		}
		return driver.VolumeInfo{}, fileErr(err, "create "+what)
	}
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = os.Remove(path)
		}
	}()
	if err := ctx.Err(); err != nil {
		return driver.VolumeInfo{}, ctxErr("create "+what, err)
	}
	if err := f.Truncate(size); err != nil {
		return driver.VolumeInfo{}, fileErr(err, "size "+what)
	}
	if err := f.Sync(); err != nil {
		return driver.VolumeInfo{}, fileErr(err, "sync "+what)
	}
	info, err := inspect(f, what)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	if err := f.Close(); err != nil {
		return driver.VolumeInfo{}, fileErr(err, "close "+what)
	}
	done = true
	syncDir(p.dir)
	return info, nil
}

// ExtendVolume grows the raw volume vol.ID to vol.Size bytes (rounded up to 512), sparsely. A smaller size
// is driver.ErrInvalid, the same size changes nothing, a missing volume is driver.ErrNotFound, and growth
// the quota cannot take is driver.ErrTooLarge.
func (b *Backend) ExtendVolume(ctx context.Context, spec driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	p, err := resolve(spec)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	size, err := checkVolume(p, vol)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	if err := ready(ctx, p); err != nil {
		return driver.VolumeInfo{}, err
	}
	what := "volume " + vol.ID.String()

	unlock, err := lockDir(ctx, p)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	defer unlock()
	f, err := os.OpenFile(p.path(driver.KindVolume, vol.ID), os.O_RDWR|unix.O_NOFOLLOW, 0)
	if err != nil {
		return driver.VolumeInfo{}, fileErr(err, "open "+what)
	}
	defer f.Close()
	info, err := inspect(f, what)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	switch {
	case size < info.VirtualSize:
		return driver.VolumeInfo{}, fmt.Errorf("quotadir: %s: cannot shrink from %d to %d bytes: %w", what, info.VirtualSize, size, driver.ErrInvalid)
	case size == info.VirtualSize:
		return info, nil
	}
	u, err := measure(ctx, p.dir)
	if err != nil {
		return driver.VolumeInfo{}, fmt.Errorf("quotadir: %s: %w", what, err)
	}
	if err := checkQuota(p, u, info.VirtualSize, size, "extending "+what); err != nil {
		return driver.VolumeInfo{}, err
	}
	if err := f.Truncate(size); err != nil {
		return driver.VolumeInfo{}, fileErr(err, "extend "+what)
	}
	if err := f.Sync(); err != nil {
		return driver.VolumeInfo{}, fileErr(err, "sync "+what)
	}
	return inspect(f, what)
}

// DeleteVolume removes volume-<id>; removing a missing volume succeeds (on a reachable storage).
func (b *Backend) DeleteVolume(ctx context.Context, spec driver.PoolSpec, id uuid.UUID) error {
	return remove(ctx, spec, driver.KindVolume, id)
}

// InspectVolume reports the raw volume vol.ID: its virtual size (the file's size) and the bytes it
// allocates. The format is the caller's, never guessed from the content: a volume whose guest wrote a qcow2
// header stays raw. A missing file is driver.ErrNotFound; a qcow2 volume, which the backend never makes,
// driver.ErrUnsupported.
func (b *Backend) InspectVolume(ctx context.Context, spec driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	p, err := resolve(spec)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	if err := ready(ctx, p); err != nil {
		return driver.VolumeInfo{}, err
	}
	what := "volume " + vol.ID.String()
	f, err := os.OpenFile(p.path(driver.KindVolume, vol.ID), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return driver.VolumeInfo{}, fileErr(err, "open "+what)
	}
	defer f.Close()
	switch vol.Format {
	case driver.FormatRaw, "": // "": a caller that does not know the format; every volume here is raw
	case driver.FormatQCOW2:
		return driver.VolumeInfo{}, fmt.Errorf("quotadir: %s: quotadir keeps raw volumes only, not %s: %w", what, vol.Format, driver.ErrUnsupported)
	default:
		return driver.VolumeInfo{}, fmt.Errorf("quotadir: %s: format %q is not raw: %w", what, vol.Format, driver.ErrInvalid)
	}
	return inspect(f, what)
}

// inspect reports the raw volume open as f.
func inspect(f *os.File, what string) (driver.VolumeInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return driver.VolumeInfo{}, fileErr(err, "stat "+what)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return driver.VolumeInfo{}, fmt.Errorf("quotadir: %s is not a regular file: %w", what, driver.ErrInvalid)
	}
	return driver.VolumeInfo{Format: driver.FormatRaw, VirtualSize: st.Size, Allocated: st.Blocks * 512}, nil
}

// remove deletes the file of an object; a missing one is not an error, but an unreachable storage is.
func remove(ctx context.Context, spec driver.PoolSpec, kind driver.ObjectKind, id uuid.UUID) error {
	p, err := resolve(spec)
	if err != nil {
		return err
	}
	if err := ready(ctx, p); err != nil {
		return err
	}
	if err := os.Remove(p.path(kind, id)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fileErr(err, fmt.Sprintf("remove %s %s", kind, id))
	}
	syncDir(p.dir)
	return nil
}

// DiskSource tells a hypervisor the file of a volume or image.
func (b *Backend) DiskSource(spec driver.PoolSpec, kind driver.ObjectKind, id uuid.UUID) driver.DiskSource {
	p, err := resolve(spec)
	if err != nil {
		return driver.DiskSource{Type: "file"}
	}
	return driver.DiskSource{Type: "file", Path: p.path(kind, id)}
}
