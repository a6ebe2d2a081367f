package localfs

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/qcow2"
)

// sectorSize is the granularity of virtual sizes: requested sizes are rounded up to it, as qemu-img does.
const sectorSize = 512

// CreateVolume creates volume-<id>: a sparse file for raw, a qcow2 image with preallocated metadata for
// qcow2. The size is rounded up to a multiple of 512 bytes. ErrAlreadyExists when the file exists.
func (b *Backend) CreateVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	id := vol.ID.String()
	if err := checkNewVolume(vol); err != nil {
		return driver.VolumeInfo{}, err
	}
	size := roundUp(vol.Size)
	path := s.objectPath(driver.KindVolume, vol.ID)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, b.fileMode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return driver.VolumeInfo{}, errkind.Wrap(errkind.AlreadyExists, err, "volume", id, "volume file already exists")
		}
		return driver.VolumeInfo{}, fileErr(err, "volume", id, "create volume file")
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(path)
		}
	}()
	if err := checkCtx(ctx, s.id); err != nil {
		return driver.VolumeInfo{}, err
	}
	if err := b.giveToQEMU(path); err != nil {
		return driver.VolumeInfo{}, fileErr(err, "volume", id, "give the volume file to the QEMU group")
	}
	switch vol.Format {
	case driver.FormatRaw:
		err = f.Truncate(size)
	case driver.FormatQCOW2:
		_, err = qcow2.Create(f, size, qcow2.CreateOptions{Preallocation: qcow2.PreallocMetadata})
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return driver.VolumeInfo{}, fileErr(err, "volume", id, "write %s volume", vol.Format)
	}
	info, err := inspectFile(f, id, vol.Format)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	if err := f.Close(); err != nil {
		return driver.VolumeInfo{}, fileErr(err, "volume", id, "close volume file")
	}
	ok = true
	return info, nil
}

// maxVirtualSize bounds requested sizes (64 TiB; far beyond a local disk, well inside int64 arithmetic).
const maxVirtualSize = 64 << 40

func roundUp(n int64) int64 { return (n + sectorSize - 1) / sectorSize * sectorSize }

// ExtendVolume grows a volume to newSize bytes (rounded up to 512): a raw file is truncated bigger, a qcow2
// image grown by internal/qcow2. A smaller size is refused with ErrInvalid; the same size changes nothing.
func (b *Backend) ExtendVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	id, newSize := vol.ID, vol.Size
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	sid := id.String()
	if newSize <= 0 || newSize > maxVirtualSize {
		return driver.VolumeInfo{}, errkind.New(errkind.Invalid, "volume", sid, "size %d out of range", newSize)
	}
	newSize = roundUp(newSize)
	f, err := os.OpenFile(s.objectPath(driver.KindVolume, id), os.O_RDWR, 0)
	if err != nil {
		return driver.VolumeInfo{}, fileErr(err, "volume", sid, "open volume")
	}
	defer f.Close()
	info, err := inspectFile(f, sid, vol.Format)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	switch {
	case newSize < info.VirtualSize:
		return driver.VolumeInfo{}, errkind.New(errkind.Invalid, "volume", sid, "cannot shrink a volume from %d to %d bytes", info.VirtualSize, newSize)
	case newSize == info.VirtualSize:
		return info, nil
	}
	if err := checkCtx(ctx, s.id); err != nil {
		return driver.VolumeInfo{}, err
	}
	switch info.Format {
	case driver.FormatRaw:
		err = f.Truncate(newSize)
	case driver.FormatQCOW2:
		err = growQCOW2(f, newSize)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return driver.VolumeInfo{}, fileErr(err, "volume", sid, "extend %s volume", info.Format)
	}
	return inspectFile(f, sid, vol.Format)
}

// DeleteVolume removes volume-<id>; a missing volume is not an error.
func (b *Backend) DeleteVolume(ctx context.Context, pool driver.PoolSpec, id uuid.UUID) error {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return err
	}
	if err := os.Remove(s.objectPath(driver.KindVolume, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fileErr(err, "volume", id.String(), "remove volume")
	}
	return nil
}

// InspectVolume reports a volume's format (from its content), virtual size and allocated bytes.
func (b *Backend) InspectVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	f, err := os.Open(s.objectPath(driver.KindVolume, vol.ID))
	if err != nil {
		return driver.VolumeInfo{}, fileErr(err, "volume", vol.ID.String(), "open volume")
	}
	defer f.Close()
	return inspectFile(f, vol.ID.String(), vol.Format)
}

// inspectFile reports a volume of the given format. The format comes from the caller, never from the
// content: a raw volume is raw whatever its guest wrote at its start. An empty format (a caller that does
// not know it) is detected from a qcow2 header.
func inspectFile(f *os.File, id string, format driver.VolumeFormat) (driver.VolumeInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return driver.VolumeInfo{}, fileErr(err, "volume", id, "stat volume")
	}
	info := driver.VolumeInfo{Format: driver.FormatRaw, VirtualSize: st.Size, Allocated: st.Blocks * 512}
	if format == driver.FormatRaw {
		return info, nil
	}
	var magic [4]byte
	n, err := f.ReadAt(magic[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return driver.VolumeInfo{}, fileErr(err, "volume", id, "read volume")
	}
	if n < len(magic) || string(magic[:]) != qcow2.Magic {
		if format == driver.FormatQCOW2 {
			return driver.VolumeInfo{}, errkind.New(errkind.Invalid, "volume", id, "qcow2 volume has no qcow2 header")
		}
		return info, nil
	}
	h, err := qcow2.ReadHeader(f)
	if err != nil {
		return driver.VolumeInfo{}, errkind.Wrap(errkind.Invalid, err, "volume", id, "corrupt qcow2 volume")
	}
	info.Format, info.VirtualSize = driver.FormatQCOW2, h.VirtualSize
	return info, nil
}

// fileErr maps a file-system error to an error kind: a missing file is ErrNotFound, a full disk ErrTooLarge,
// a read-only or vanished storage ErrUnavailable; errors that already carry a kind keep it.
func fileErr(err error, entity, id, format string, args ...any) error {
	var ke *errkind.Error
	switch {
	case errors.As(err, &ke):
		return err
	case errors.Is(err, os.ErrNotExist):
		return errkind.Wrap(errkind.NotFound, err, entity, id, format, args...)
	case errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) || errors.Is(err, unix.EFBIG):
		return errkind.Wrap(errkind.TooLarge, err, entity, id, "the storage is full: "+format, args...)
	default:
		return errkind.Wrap(errkind.Unavailable, err, entity, id, format, args...)
	}
}
