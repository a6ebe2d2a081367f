package localfs

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/imagefmt"
	"github.com/openvair/openvair/internal/qcow2"
)

// detectHead is how many bytes of an image InspectImage reads to detect its format.
const detectHead = imagefmt.HeadSize

// partSuffix marks an image being uploaded.
const partSuffix = ".part"

// WriteImage streams r into image-<id>.part (created exclusively), computing SHA-256 and detecting the
// format, syncs it and renames it to image-<id>. On any failure, a cancelled ctx or a full disk (ErrTooLarge,
// "the storage is full") the partial file is removed. ErrAlreadyExists when the image exists or is being
// uploaded.
func (b *Backend) WriteImage(ctx context.Context, pool driver.PoolSpec, img driver.ImageWrite, r io.Reader) (driver.ImageInfo, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.ImageInfo{}, err
	}
	id := img.ID.String()
	if img.ID == uuid.Nil {
		return driver.ImageInfo{}, errkind.New(errkind.Invalid, "image", id, "image id missing")
	}
	if img.MaxSize < 0 {
		return driver.ImageInfo{}, errkind.New(errkind.Invalid, "image", id, "negative size limit %d", img.MaxSize)
	}
	final := s.objectPath(driver.KindImage, img.ID)
	if _, err := os.Lstat(final); err == nil {
		return driver.ImageInfo{}, errkind.New(errkind.AlreadyExists, "image", id, "image file already exists")
	}
	part := final + partSuffix
	f, err := createPart(part, b.fileMode)
	if errors.Is(err, os.ErrExist) && removeStalePart(part) {
		f, err = createPart(part, b.fileMode) // the leftover of a crashed upload is gone
	}
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return driver.ImageInfo{}, errkind.Wrap(errkind.AlreadyExists, err, "image", id, "an upload of this image is already in progress")
		}
		return driver.ImageInfo{}, fileErr(err, "image", id, "create upload file")
	}
	done := false
	defer func() {
		if !done {
			_ = os.Remove(part) // while the lock is held, so no sweeper races with us
			_ = f.Close()
		}
	}()
	if err := b.giveToQEMU(part); err != nil {
		return driver.ImageInfo{}, fileErr(err, "image", id, "give the image file to the QEMU group")
	}

	w := newUploadWriter(f, part)
	info, err := copyImage(ctx, w, &ctxReader{ctx: ctx, r: r}, img.MaxSize)
	if cerr := w.Close(); w.err == nil && cerr != nil {
		w.err = cerr
	}
	switch {
	case w.err != nil:
		return driver.ImageInfo{}, fileErr(w.err, "image", id, "write image")
	case ctx.Err() != nil:
		return driver.ImageInfo{}, ctxErr(ctx.Err(), "image", id)
	case err != nil:
		var ke *errkind.Error
		if errors.As(err, &ke) || errors.Is(err, errkind.TooLarge) || errors.Is(err, errkind.Invalid) {
			return driver.ImageInfo{}, err
		}
		return driver.ImageInfo{}, errkind.Wrap(errkind.Invalid, err, "image", id, "upload failed")
	}
	if err := checkQCOW2(f, info.Format, id); err != nil {
		return driver.ImageInfo{}, err
	}
	if err := f.Sync(); err != nil {
		return driver.ImageInfo{}, fileErr(err, "image", id, "sync image")
	}
	if err := ctx.Err(); err != nil {
		return driver.ImageInfo{}, ctxErr(err, "image", id)
	}
	// Rename before closing: the lock on the .part file is held until it has its final name.
	if err := renameNoReplace(part, final); err != nil {
		if errors.Is(err, os.ErrExist) {
			return driver.ImageInfo{}, errkind.Wrap(errkind.AlreadyExists, err, "image", id, "image file already exists")
		}
		return driver.ImageInfo{}, fileErr(err, "image", id, "rename upload")
	}
	done = true
	err = f.Close()
	syncDir(s.dir)
	if err != nil {
		_ = os.Remove(final)
		return driver.ImageInfo{}, fileErr(err, "image", id, "close image")
	}
	return info, nil
}

// createPart creates an upload file exclusively and locks it (flock), so that removeStalePart can tell a
// live upload from the leftover of a crashed one. A sweep (SweepUploads) may remove the file in the instant
// between its creation and its lock; createPart sees that the locked file is no longer at path and creates
// it again.
func createPart(path string, mode os.FileMode) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return nil, err
		}
		// Blocking: removeStalePart may hold the lock for an instant while it looks at the new file.
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			_ = os.Remove(path)
			_ = f.Close()
			return nil, err
		}
		if isAt(f, path) {
			return f, nil
		}
		_ = f.Close() // swept before we locked it: that file is gone, make a new one
		if attempt == 2 {
			return nil, errors.New("the upload file was removed while it was created")
		}
	}
}

// isAt reports whether path still names the open file f.
func isAt(f *os.File, path string) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	pi, err := os.Lstat(path)
	return err == nil && os.SameFile(fi, pi)
}

// staleAge is how long an unlocked upload file must have been untouched before it is removed: it covers
// the instant between an upload's exclusive create and its lock.
const staleAge = time.Minute

// removeStalePart removes an upload file left by a crashed process: one that no live upload holds locked
// and that nobody wrote for staleAge. It reports whether the file is gone.
func removeStalePart(path string) bool {
	gone, _ := removeUnlockedPart(path, staleAge)
	return gone
}

// removeUnlockedPart removes the upload file at path when no upload holds it locked and nobody wrote it for
// minAge. It reports whether the file is gone; err is set only when removing it failed.
func removeUnlockedPart(path string, minAge time.Duration) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, nil // not a file we can lock (a symbolic link, no permission): not ours to remove
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return false, nil // a live upload holds it
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || time.Since(fi.ModTime()) < minAge || !isAt(f, path) {
		return false, nil
	}
	// We hold the lock, so an upload that created this file and has not locked it yet waits for us, then
	// sees that its file is gone (createPart) and makes a new one.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	return true, nil
}

// sweepParts removes the upload files of a storage directory that no upload holds locked and that nobody
// wrote for minAge (see removeUnlockedPart), and reports the removals that failed.
func sweepParts(ctx context.Context, dir string, minAge time.Duration) error {
	// Uploads (image-<id>.part) and clones (volume-<id>.part) both write to a locked part file first.
	var parts []string
	for _, kind := range []driver.ObjectKind{driver.KindImage, driver.KindVolume} {
		m, err := filepath.Glob(filepath.Join(dir, string(kind)+"-*"+partSuffix))
		if err != nil {
			return err
		}
		parts = append(parts, m...)
	}
	var errs []error
	for _, p := range parts {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := removeUnlockedPart(p, minAge); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var _ driver.UploadSweeper = (*Backend)(nil)

// SweepUploads implements driver.UploadSweeper: it removes every part file of the storage (image-<id>.part
// of an upload, volume-<id>.part of a clone) that no upload or clone holds locked, whatever its age. Every upload, in this process or another, holds
// its file locked (flock) from its creation until it is renamed or removed, and a lock dies with its
// process, so an unlocked upload file is the leftover of a crashed or killed upload. (An upload caught
// between creating its file and locking it makes a new one; see createPart.) A storage directory that is
// missing or not mounted has nothing to sweep.
func (b *Backend) SweepUploads(ctx context.Context, pool driver.PoolSpec) error {
	s, err := b.resolve(pool)
	if err != nil {
		return err
	}
	if err := checkCtx(ctx, s.id); err != nil {
		return err
	}
	if err := sweepParts(ctx, s.dir, 0); ctx.Err() != nil {
		return checkCtx(ctx, s.id)
	} else if err != nil {
		return errkind.Wrap(errkind.Unavailable, err, "storage", s.id, "remove the files of interrupted uploads")
	}
	return nil
}

// checkQCOW2 reads back the header of a stored qcow2 image and refuses one that references a backing file or
// an external data file, or that cannot be parsed: such an image would make the hypervisor open other
// files. (The streaming copier checks this too; this check is on the bytes actually stored.)
func checkQCOW2(f *os.File, format driver.ImageFormat, id string) error {
	if format != driver.ImageQCOW2 {
		return nil
	}
	h, err := qcow2.ReadHeader(f)
	switch {
	case err != nil:
		return errkind.Wrap(errkind.Invalid, err, "image", id, "invalid qcow2 image")
	case h.BackingFile != "" || h.BackingFileOffset != 0:
		return errkind.New(errkind.Invalid, "image", id, "qcow2 image with a backing file (%q) refused", h.BackingFile)
	case h.HasDataFile():
		return errkind.New(errkind.Invalid, "image", id, "qcow2 image with an external data file refused")
	}
	return nil
}

// renameNoReplace renames oldPath to newPath unless newPath exists.
func renameNoReplace(oldPath, newPath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldPath, unix.AT_FDCWD, newPath, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// The filesystem lacks RENAME_NOREPLACE: a hard link fails on an existing target just the same.
		if err = os.Link(oldPath, newPath); err == nil {
			return os.Remove(oldPath)
		}
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldPath, New: newPath, Err: err}
	}
	return nil
}

// syncDir makes a rename durable; failure only weakens durability, so it is ignored.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// DeleteImage removes image-<id>; a missing image is not an error.
func (b *Backend) DeleteImage(ctx context.Context, pool driver.PoolSpec, id uuid.UUID) error {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return err
	}
	if err := os.Remove(s.objectPath(driver.KindImage, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fileErr(err, "image", id.String(), "remove image")
	}
	return nil
}

// InspectImage reports an image's size and format (detected from its first bytes).
func (b *Backend) InspectImage(ctx context.Context, pool driver.PoolSpec, id uuid.UUID) (driver.ImageInfo, error) {
	s, err := b.ready(ctx, pool)
	if err != nil {
		return driver.ImageInfo{}, err
	}
	f, err := os.Open(s.objectPath(driver.KindImage, id))
	if err != nil {
		return driver.ImageInfo{}, fileErr(err, "image", id.String(), "open image")
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return driver.ImageInfo{}, fileErr(err, "image", id.String(), "stat image")
	}
	head := make([]byte, min(fi.Size(), detectHead))
	if _, err := f.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return driver.ImageInfo{}, fileErr(err, "image", id.String(), "read image")
	}
	return driver.ImageInfo{Size: fi.Size(), Format: detectImage(head)}, nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
