package quotadir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
)

// The backend copies volumes (snapshots and volumes made from volumes build on it), without declaring
// InstantClone: on most filesystems it copies the data.
var _ driver.VolumeCloner = (*Backend)(nil)

// CloneVolume creates the raw volume dst as a copy of src.ID: the whole file is shared at once where the
// filesystem can (FICLONE: btrfs, XFS), and otherwise its data ranges are copied and its holes kept, so a
// thin volume stays thin. The copy's virtual size counts against the quota (driver.ErrTooLarge). A missing
// source is driver.ErrNotFound, an existing dst driver.ErrAlreadyExists. The dst file is created, at its
// full size, before the data is copied; a failed or cancelled copy (ctx is checked between chunks of
// 1 MiB) removes it.
func (b *Backend) CloneVolume(ctx context.Context, spec driver.PoolSpec, src driver.VolumeSpec, dst uuid.UUID) (driver.VolumeInfo, error) {
	p, err := resolve(spec)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	what := fmt.Sprintf("clone volume %s to %s", src.ID, dst)
	switch {
	case src.ID == uuid.Nil || dst == uuid.Nil:
		return driver.VolumeInfo{}, fmt.Errorf("quotadir: %s: volume id missing: %w", what, driver.ErrInvalid)
	case src.Format == driver.FormatQCOW2:
		return driver.VolumeInfo{}, fmt.Errorf("quotadir: %s: quotadir keeps raw volumes only, not %s: %w", what, src.Format, driver.ErrUnsupported)
	case src.Format != driver.FormatRaw && src.Format != "":
		return driver.VolumeInfo{}, fmt.Errorf("quotadir: %s: format %q is not raw: %w", what, src.Format, driver.ErrInvalid)
	}
	if err := ready(ctx, p); err != nil {
		return driver.VolumeInfo{}, err
	}
	in, err := os.OpenFile(p.path(driver.KindVolume, src.ID), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return driver.VolumeInfo{}, fileErr(err, what+": open the source")
	}
	defer in.Close()
	srcInfo, err := inspect(in, what)
	if err != nil {
		return driver.VolumeInfo{}, err
	}

	path := p.path(driver.KindVolume, dst)
	out, err := reserve(ctx, p, path, srcInfo.VirtualSize, what)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	done := false
	defer func() {
		if !done {
			_ = out.Close()
			_ = os.Remove(path)
		}
	}()
	if err := copyVolume(ctx, in, out, srcInfo.VirtualSize, what); err != nil {
		return driver.VolumeInfo{}, err
	}
	if err := out.Sync(); err != nil {
		return driver.VolumeInfo{}, fileErr(err, what+": sync")
	}
	if err := ctx.Err(); err != nil {
		return driver.VolumeInfo{}, ctxErr(what, err)
	}
	info, err := inspect(out, what)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	if err := out.Close(); err != nil {
		return driver.VolumeInfo{}, fileErr(err, what+": close")
	}
	done = true
	syncDir(p.dir)
	return info, nil
}

// reserve creates the file of a new volume of size bytes (sparse) under the directory's lock, once the quota
// has room for it: from then on the volume's bytes are committed.
func reserve(ctx context.Context, p *pool, path string, size int64, what string) (*os.File, error) {
	unlock, err := lockDir(ctx, p)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("quotadir: %s: %w", what, driver.ErrAlreadyExists)
	}
	u, err := measure(ctx, p.dir)
	if err != nil {
		return nil, fmt.Errorf("quotadir: %s: %w", what, err)
	}
	if err := checkQuota(p, u, 0, size, "the copy"); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("quotadir: %s: %w", what, driver.ErrAlreadyExists)
		}
		return nil, fileErr(err, what+": create")
	}
	if err := f.Truncate(size); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return nil, fileErr(err, what+": size")
	}
	return f, nil
}

// copyVolume copies the size bytes of in into out, a file of that size full of holes: by FICLONE when the
// filesystem shares blocks, else range by range, skipping the holes of in (SEEK_DATA, SEEK_HOLE).
func copyVolume(ctx context.Context, in, out *os.File, size int64, what string) error {
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) == nil {
		return nil
	}
	buf := make([]byte, chunkSize)
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			return fileErr(err, what+": find data")
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return fileErr(err, what+": find a hole")
		}
		hole = min(hole, size)
		for pos := data; pos < hole; {
			if err := ctx.Err(); err != nil {
				return ctxErr(what, err)
			}
			k, err := in.ReadAt(buf[:min(int64(len(buf)), hole-pos)], pos)
			if k == 0 && err != nil {
				if errors.Is(err, io.EOF) {
					return nil // the source shrank: nothing changes a volume while it is cloned
				}
				return fileErr(err, what+": read")
			}
			if _, err := out.WriteAt(buf[:k], pos); err != nil {
				return fileErr(err, what+": write")
			}
			pos += int64(k)
		}
		off = hole
	}
	return nil
}
