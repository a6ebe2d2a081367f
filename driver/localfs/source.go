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

var (
	_ driver.ObjectReader = (*Backend)(nil)
	_ driver.VolumeFiller = (*Backend)(nil)
	_ driver.VolumeLinker = (*Backend)(nil)
)

// objectFile is an object's file opened for reading.
type objectFile struct {
	*os.File
	size int64
}

func (f objectFile) Size() int64 { return f.size }

// OpenObject opens the file of a volume or an image for reading (driver.ObjectReader). A file replaced by a
// symbolic link or anything but a regular file is refused.
func (b *Backend) OpenObject(ctx context.Context, pool driver.PoolSpec, kind driver.ObjectKind, id uuid.UUID) (driver.ObjectFile, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return nil, err
	}
	entity := string(kind)
	if kind != driver.KindVolume && kind != driver.KindImage {
		return nil, errkind.New(errkind.Invalid, entity, id.String(), "unknown object kind %q", kind)
	}
	f, err := os.OpenFile(s.objectPath(kind, id), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, errkind.Wrap(errkind.Invalid, err, entity, id.String(), "the file is a symbolic link")
		}
		return nil, fileErr(err, entity, id.String(), "open %s", kind)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		_ = f.Close()
		if err != nil {
			return nil, fileErr(err, entity, id.String(), "stat %s", kind)
		}
		return nil, errkind.New(errkind.Invalid, entity, id.String(), "not a regular file")
	}
	return objectFile{File: f, size: fi.Size()}, nil
}

// FillVolume creates the volume vol from guest data (driver.VolumeFiller): a raw volume is a sparse file
// where only blocks holding data are written, a qcow2 volume is converted in Go with unallocated clusters
// where src reads zeros. The virtual size is vol.Size rounded up to 512 bytes.
func (b *Backend) FillVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec, src io.ReaderAt, srcSize int64,
	progress func(done int64)) (driver.VolumeInfo, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	id := vol.ID.String()
	if err := checkNewVolume(vol); err != nil {
		return driver.VolumeInfo{}, err
	}
	size := roundUp(vol.Size)
	if srcSize < 0 || srcSize > size {
		return driver.VolumeInfo{}, errkind.New(errkind.Invalid, "volume", id, "the source (%d bytes) is larger than the volume (%d bytes)", srcSize, size)
	}
	data := io.NewSectionReader(src, 0, srcSize) // reads past srcSize are zeros to the writers
	return b.writeVolume(ctx, s, vol.ID, vol.Format, func(out *os.File) error {
		var err error
		if vol.Format == driver.FormatRaw {
			err = qcow2.ToRaw(ctx, out, data, size, progress)
		} else {
			_, err = qcow2.Convert(ctx, out, data, size, qcow2.ConvertOptions{Progress: progress})
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctxErr(ctx.Err(), "volume", id)
			}
			return fileErr(err, "volume", id, "write %s volume", vol.Format)
		}
		return nil
	}, nil)
}

// LinkVolume creates the qcow2 volume vol over base (driver.VolumeLinker): an overlay whose backing file is
// named relatively (volume-<id> or image-<id>, in the same directory) with its format recorded, so QEMU and
// libvirt never probe it. The base must be a regular file whose virtual size is at most vol.Size.
func (b *Backend) LinkVolume(ctx context.Context, pool driver.PoolSpec, base driver.ObjectRef, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	id := vol.ID.String()
	if vol.Format != driver.FormatQCOW2 {
		return driver.VolumeInfo{}, errkind.New(errkind.Invalid, "volume", id, "a linked volume is qcow2, not %s", vol.Format)
	}
	if err := checkNewVolume(vol); err != nil {
		return driver.VolumeInfo{}, err
	}
	if base.Format != driver.FormatQCOW2 && base.Format != driver.FormatRaw {
		return driver.VolumeInfo{}, errkind.New(errkind.Invalid, string(base.Kind), base.ID.String(), "a backing file is qcow2 or raw, not %q", base.Format)
	}
	bf, err := b.OpenObject(ctx, pool, base.Kind, base.ID)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	baseSize := bf.Size()
	if base.Format == driver.FormatQCOW2 {
		h, err := qcow2.ReadHeader(bf)
		if err != nil {
			_ = bf.Close()
			return driver.VolumeInfo{}, errkind.Wrap(errkind.Invalid, err, string(base.Kind), base.ID.String(), "read the backing file's header")
		}
		baseSize = h.VirtualSize
	}
	_ = bf.Close()
	size := max(roundUp(vol.Size), roundUp(baseSize))
	name := string(base.Kind) + "-" + base.ID.String()
	return b.writeVolume(ctx, s, vol.ID, vol.Format, func(out *os.File) error {
		_, err := qcow2.Create(out, size, qcow2.CreateOptions{BackingFile: name, BackingFormat: string(base.Format)})
		if err != nil {
			return fileErr(err, "volume", id, "write the linked volume")
		}
		return nil
	}, nil)
}

// checkNewVolume checks the id, format and size of a volume to create.
func checkNewVolume(vol driver.VolumeSpec) error {
	id := vol.ID.String()
	switch {
	case vol.ID == uuid.Nil:
		return errkind.New(errkind.Invalid, "volume", id, "volume id missing")
	case vol.Size <= 0 || vol.Size > maxVirtualSize:
		return errkind.New(errkind.Invalid, "volume", id, "size %d out of range (1 byte to %d bytes)", vol.Size, int64(maxVirtualSize))
	case vol.Format != driver.FormatRaw && vol.Format != driver.FormatQCOW2:
		return errkind.New(errkind.Invalid, "volume", id, "format %q is not qcow2 or raw", vol.Format)
	}
	return nil
}
