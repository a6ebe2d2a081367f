package nfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/uuid"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/deadline"
	"github.com/openvair/openvair/internal/qcow2"
)

var qcow2Magic = []byte{'Q', 'F', 'I', 0xfb}

// CreateVolume creates volume-<id>: a sparse raw file sized with SETATTR, or a qcow2 image written through
// internal/qcow2. ErrAlreadyExists when the file exists.
func (b *Backend) CreateVolume(ctx context.Context, spec driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	p, err := parsePool(spec)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	if vol.Format != driver.FormatQCOW2 && vol.Format != driver.FormatRaw {
		return driver.VolumeInfo{}, logical(driver.ErrInvalid, p, "volume format %q not supported (qcow2 or raw)", vol.Format)
	}
	if vol.Size <= 0 || (vol.Format == driver.FormatQCOW2 && vol.Size%512 != 0) {
		return driver.VolumeInfo{}, logical(driver.ErrInvalid, p, "invalid volume size %d", vol.Size)
	}
	name := p.file(volumeName(vol.ID))
	var info driver.VolumeInfo
	created := false
	err = b.run(ctx, p, opTimeout, "create volume "+vol.ID.String(), func(s *sess) error {
		if _, err := s.lookup(name); err == nil {
			return logical(driver.ErrAlreadyExists, p, "volume %s already exists", vol.ID)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		fh, err := s.create(name, b.fileMode, b.owner)
		if err != nil {
			return err
		}
		created = true
		if err := s.setSize(fh, 0); err != nil {
			return err
		}
		switch vol.Format {
		case driver.FormatRaw:
			if err := s.setSize(fh, vol.Size); err != nil {
				return err
			}
		case driver.FormatQCOW2:
			size, err := qcow2.Create(&nfsFile{s, fh}, vol.Size, qcow2.CreateOptions{Preallocation: b.prealloc})
			if err != nil {
				return err
			}
			if err := s.setSize(fh, size); err != nil {
				return err
			}
		}
		info, err = inspectVolume(s, fh, vol.Format)
		return err
	})
	if err != nil && created {
		// Undo with a context detached from the caller's, which may be cancelled.
		cctx, cancel := deadline.Ensure(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		_ = b.with(cctx, p.key, func(s *sess) error { return s.remove(name) })
	}
	return info, err
}

// ExtendVolume grows a volume's virtual size: SETATTR for raw, qcow2.Grow for qcow2. Shrinking is refused
// with ErrInvalid.
func (b *Backend) ExtendVolume(ctx context.Context, spec driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	id, newSize := vol.ID, vol.Size
	p, err := parsePool(spec)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	var info driver.VolumeInfo
	err = b.run(ctx, p, opTimeout, "extend volume "+id.String(), func(s *sess) error {
		fh, err := s.lookup(p.file(volumeName(id)))
		if err != nil {
			return err
		}
		cur, err := inspectVolume(s, fh, vol.Format)
		if err != nil {
			return err
		}
		if newSize < cur.VirtualSize {
			return logical(driver.ErrInvalid, p, "cannot shrink volume %s from %d to %d bytes", id, cur.VirtualSize, newSize)
		}
		switch cur.Format {
		case driver.FormatRaw:
			if err := s.setSize(fh, newSize); err != nil {
				return err
			}
		case driver.FormatQCOW2:
			a, err := s.getattr(fh)
			if err != nil {
				return err
			}
			size, err := qcow2.Grow(&nfsFile{s, fh}, int64(a.Size), newSize)
			if err != nil {
				return err
			}
			if size > int64(a.Size) {
				if err := s.setSize(fh, size); err != nil {
					return err
				}
			}
		}
		info, err = inspectVolume(s, fh, vol.Format)
		return err
	})
	return info, err
}

// DeleteVolume removes volume-<id>; a missing volume is fine.
func (b *Backend) DeleteVolume(ctx context.Context, spec driver.PoolSpec, id uuid.UUID) error {
	p, err := parsePool(spec)
	if err != nil {
		return err
	}
	return b.run(ctx, p, opTimeout, "delete volume "+id.String(), func(s *sess) error {
		if err := s.remove(p.file(volumeName(id))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	})
}

// InspectVolume reports a volume's format (from its content), virtual size and allocation.
func (b *Backend) InspectVolume(ctx context.Context, spec driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	id := vol.ID
	p, err := parsePool(spec)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	var info driver.VolumeInfo
	err = b.run(ctx, p, opTimeout, "inspect volume "+id.String(), func(s *sess) error {
		fh, err := s.lookup(p.file(volumeName(id)))
		if err != nil {
			return err
		}
		info, err = inspectVolume(s, fh, vol.Format)
		return err
	})
	return info, err
}

// inspectVolume reads the attributes and, for a qcow2 volume, its header. The format comes from the caller,
// never from the content (a raw volume stays raw whatever its guest wrote); an empty format is detected.
func inspectVolume(s *sess, fh []byte, format driver.VolumeFormat) (driver.VolumeInfo, error) {
	a, err := s.getattr(fh)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	info := driver.VolumeInfo{Format: driver.FormatRaw, VirtualSize: int64(a.Size), Allocated: int64(a.Used)}
	if format == driver.FormatRaw {
		return info, nil
	}
	f := &nfsFile{s, fh}
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil && !errors.Is(err, io.EOF) {
		return info, err
	}
	if !bytes.Equal(magic[:], qcow2Magic) && format == driver.FormatQCOW2 {
		return info, fmt.Errorf("qcow2 volume has no qcow2 header: %w", driver.ErrInvalid)
	}
	if bytes.Equal(magic[:], qcow2Magic) {
		h, err := qcow2.ReadHeader(f)
		if err != nil {
			return info, err
		}
		info.Format, info.VirtualSize = driver.FormatQCOW2, h.VirtualSize
	}
	return info, nil
}
