package localfs

import (
	"context"
	"errors"
	"io"
	"os"
	"runtime"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
)

var _ driver.VolumeCloner = (*Backend)(nil)

// cloneChunk is how much of a volume the streamed copy moves between two looks at the context.
const cloneChunk = 16 << 20

// CloneVolume implements driver.VolumeCloner: it creates the volume dst as a copy of the volume src.ID (of
// format src.Format; an empty format is detected as InspectVolume does) in the same storage directory.
//
// It first asks the filesystem for a reflink of the whole file (FICLONE): on btrfs, on xfs made with
// reflink=1 and on other filesystems that share blocks between files, the clone shares every block with
// its source until one of them is written, and takes about the same time whatever the volume's size. When
// the filesystem cannot reflink (ext4, tmpfs: EOPNOTSUPP, EXDEV or EINVAL), it falls back to a streamed copy
// that skips the holes of the source (SEEK_DATA/SEEK_HOLE: holes stay holes, so a thin volume stays thin)
// and stops between chunks when ctx is done. CloneVolumeReflink refuses the fallback.
//
// The copy is written to volume-<dst>.part, created exclusively and locked like an upload, synced, and
// renamed to volume-<dst> only when complete and only if no volume-<dst> appeared meanwhile: ErrNotFound
// when the source is missing, ErrAlreadyExists when dst exists (or is being cloned), ErrInvalid for a
// qcow2 source without a valid header. A failed or cancelled clone removes its partial file. The new file
// is made like CreateVolume makes a volume file: same owner (this process), same permission (the backend's
// file mode), same group (the QEMU group, see New) and the security label a new file gets in the storage
// directory; reflinks do not copy extended attributes. The caller makes sure nothing writes to the source
// while it is cloned.
func (b *Backend) CloneVolume(ctx context.Context, pool driver.PoolSpec, src driver.VolumeSpec, dst uuid.UUID) (driver.VolumeInfo, error) {
	return b.cloneVolume(ctx, pool, src, dst, false)
}

// CloneVolumeReflink is CloneVolume without the streamed fallback, for wrappers that promise instant
// clones (driver.StorageCapabilities.InstantClone) on a filesystem known to share blocks: when the
// filesystem cannot reflink the file, it fails with an error wrapping driver.ErrUnsupported and leaves no
// dst behind, rather than copying the data.
func (b *Backend) CloneVolumeReflink(ctx context.Context, pool driver.PoolSpec, src driver.VolumeSpec, dst uuid.UUID) (driver.VolumeInfo, error) {
	return b.cloneVolume(ctx, pool, src, dst, true)
}

func (b *Backend) cloneVolume(ctx context.Context, pool driver.PoolSpec, src driver.VolumeSpec, dst uuid.UUID, reflinkOnly bool) (driver.VolumeInfo, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	sid, did := src.ID.String(), dst.String()
	switch {
	case src.ID == uuid.Nil:
		return driver.VolumeInfo{}, errkind.New(errkind.Invalid, "volume", sid, "source volume id missing")
	case dst == uuid.Nil:
		return driver.VolumeInfo{}, errkind.New(errkind.Invalid, "volume", did, "volume id missing")
	case src.Format != "" && src.Format != driver.FormatRaw && src.Format != driver.FormatQCOW2:
		return driver.VolumeInfo{}, errkind.New(errkind.Invalid, "volume", sid, "format %q is not qcow2 or raw", src.Format)
	}

	in, err := os.OpenFile(s.objectPath(driver.KindVolume, src.ID), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return driver.VolumeInfo{}, errkind.Wrap(errkind.Invalid, err, "volume", sid, "volume file is a symbolic link")
		}
		return driver.VolumeInfo{}, fileErr(err, "volume", sid, "open source volume")
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return driver.VolumeInfo{}, fileErr(err, "volume", sid, "stat source volume")
	}
	if !fi.Mode().IsRegular() {
		return driver.VolumeInfo{}, errkind.New(errkind.Invalid, "volume", sid, "volume file is not a regular file")
	}
	srcInfo, err := inspectFile(in, sid, src.Format)
	if err != nil {
		return driver.VolumeInfo{}, err
	}

	return b.writeVolume(ctx, s, dst, srcInfo.Format, func(out *os.File) error {
		err := reflink(out, in)
		switch {
		case err == nil:
		case !reflinkUnsupported(err):
			return fileErr(err, "volume", did, "reflink volume %s", sid)
		case reflinkOnly:
			return errkind.Wrap(errkind.Unsupported, err, "volume", did,
				"the filesystem of storage %s cannot reflink volume %s (FICLONE)", s.id, sid)
		default:
			if err := copySparse(ctx, out, in, fi.Size()); err != nil {
				if ctx.Err() != nil {
					return ctxErr(ctx.Err(), "volume", did)
				}
				return fileErr(err, "volume", did, "copy volume %s", sid)
			}
		}
		return nil
	}, func(info driver.VolumeInfo) error {
		if info.VirtualSize != srcInfo.VirtualSize {
			// The source changed under us (the caller must stop its writers).
			return errkind.New(errkind.Unavailable, "volume", did,
				"volume %s changed while it was cloned (%d bytes, then %d)", sid, srcInfo.VirtualSize, info.VirtualSize)
		}
		return nil
	})
}

// writeVolume makes the volume file of id through a locked part file, the way every volume made from
// content is made: fill writes the content into the part file (given to QEMU's group like any volume),
// which is synced, inspected as format, checked by check (may be nil), and renamed into place only when
// complete and only when no volume file of that id exists. Nothing is left behind when a step fails or ctx
// ends.
func (b *Backend) writeVolume(ctx context.Context, s *storage, id uuid.UUID, format driver.VolumeFormat,
	fill func(out *os.File) error, check func(driver.VolumeInfo) error) (driver.VolumeInfo, error) {
	did := id.String()
	final := s.objectPath(driver.KindVolume, id)
	if _, err := os.Lstat(final); err == nil {
		return driver.VolumeInfo{}, errkind.New(errkind.AlreadyExists, "volume", did, "volume file already exists")
	}
	if err := checkCtx(ctx, s.id); err != nil {
		return driver.VolumeInfo{}, err
	}
	part := final + partSuffix
	out, err := createPart(part, b.fileMode)
	if errors.Is(err, os.ErrExist) && removeStalePart(part) {
		out, err = createPart(part, b.fileMode) // the leftover of a crashed clone is gone
	}
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return driver.VolumeInfo{}, errkind.Wrap(errkind.AlreadyExists, err, "volume", did, "a volume with this id is already being made")
		}
		return driver.VolumeInfo{}, fileErr(err, "volume", did, "create volume file")
	}
	done := false
	defer func() {
		if !done {
			_ = os.Remove(part) // while the lock is held, so no sweeper races with us
			_ = out.Close()
		}
	}()
	if err := b.giveToQEMU(part); err != nil {
		return driver.VolumeInfo{}, fileErr(err, "volume", did, "give the volume file to the QEMU group")
	}
	if err := fill(out); err != nil {
		return driver.VolumeInfo{}, err
	}
	if err := out.Sync(); err != nil {
		return driver.VolumeInfo{}, fileErr(err, "volume", did, "sync volume")
	}
	info, err := inspectFile(out, did, format)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	if check != nil {
		if err := check(info); err != nil {
			return driver.VolumeInfo{}, err
		}
	}
	if err := checkCtx(ctx, s.id); err != nil {
		return driver.VolumeInfo{}, err
	}
	// Rename before closing: the lock on the .part file is held until it has its final name.
	if err := renameNoReplace(part, final); err != nil {
		if errors.Is(err, os.ErrExist) {
			return driver.VolumeInfo{}, errkind.Wrap(errkind.AlreadyExists, err, "volume", did, "volume file already exists")
		}
		return driver.VolumeInfo{}, fileErr(err, "volume", did, "rename the new volume file")
	}
	done = true
	err = out.Close()
	syncDir(s.dir)
	if err != nil {
		_ = os.Remove(final)
		return driver.VolumeInfo{}, fileErr(err, "volume", did, "close volume file")
	}
	return info, nil
}

// reflink makes dst, an empty file, share every block of src (FICLONE).
func reflink(dst, src *os.File) error {
	err := unix.IoctlFileClone(int(dst.Fd()), int(src.Fd()))
	runtime.KeepAlive(src)
	runtime.KeepAlive(dst)
	return err
}

// reflinkUnsupported reports whether a FICLONE error means that this filesystem (or this pair of files)
// cannot share blocks, as opposed to a failure of the filesystem (EIO, ENOSPC).
func reflinkUnsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) ||
		errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENOSYS)
}

// copySparse copies the first size bytes of src into dst, an empty file, leaving the holes of src as holes:
// it sizes dst, then copies only the data ranges SEEK_DATA and SEEK_HOLE find, in chunks of cloneChunk,
// looking at ctx before each chunk. It copies in the kernel (copy_file_range) where it can, and through a
// buffer otherwise.
func copySparse(ctx context.Context, dst, src *os.File, size int64) error {
	if err := dst.Truncate(size); err != nil {
		return err
	}
	sfd, dfd := int(src.Fd()), int(dst.Fd())
	defer runtime.KeepAlive(src)
	defer runtime.KeepAlive(dst)
	c := &chunkCopier{sfd: sfd, dfd: dfd, kernel: true}
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := unix.Seek(sfd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole remains: Truncate made it
		}
		end := size
		if err != nil {
			if !errors.Is(err, unix.EINVAL) {
				return err
			}
			data = off // no SEEK_DATA here: copy everything
		} else if hole, err := unix.Seek(sfd, data, unix.SEEK_HOLE); err == nil {
			end = min(end, hole)
		} else if !errors.Is(err, unix.ENXIO) {
			return err
		}
		if data >= size {
			return nil
		}
		end = min(end, data+cloneChunk)
		if err := c.copy(data, end-data); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// chunkCopier copies ranges between two files at the same offsets.
type chunkCopier struct {
	sfd, dfd int
	kernel   bool   // copy_file_range still worth trying
	buf      []byte // for the buffered copy
}

// copy copies n bytes at off.
func (c *chunkCopier) copy(off, n int64) error {
	for n > 0 {
		if c.kernel {
			roff, woff := off, off
			k, err := unix.CopyFileRange(c.sfd, &roff, c.dfd, &woff, int(n), 0)
			switch {
			case err == nil && k > 0:
				off, n = off+int64(k), n-int64(k)
				continue
			case err == nil:
				return io.ErrUnexpectedEOF // the source shrank
			case errors.Is(err, unix.EINTR):
				continue
			case errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EOPNOTSUPP) ||
				errors.Is(err, unix.EINVAL):
				c.kernel = false // not for these files: copy through a buffer
			default:
				return err
			}
		}
		if c.buf == nil {
			c.buf = make([]byte, 1<<20)
		}
		p := c.buf[:min(n, int64(len(c.buf)))]
		k, err := unix.Pread(c.sfd, p, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if k == 0 {
			return io.ErrUnexpectedEOF
		}
		if err := pwriteAll(c.dfd, p[:k], off); err != nil {
			return err
		}
		off, n = off+int64(k), n-int64(k)
	}
	return nil
}

// pwriteAll writes all of p at off.
func pwriteAll(fd int, p []byte, off int64) error {
	for len(p) > 0 {
		k, err := unix.Pwrite(fd, p, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if k == 0 {
			return io.ErrShortWrite
		}
		p, off = p[k:], off+int64(k)
	}
	return nil
}
