package quotadir

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
)

// partSuffix marks the file of an upload in progress: image-<id>.part.
const partSuffix = ".part"

// chunkSize is how much WriteImage reads at a time; ctx is checked between chunks.
const chunkSize = 1 << 20

// headSize is how much of an image the format detection reads: the ISO 9660 primary volume descriptor
// starts at 32 KiB.
const headSize = 64 << 10

// Format signatures.
const (
	qcow2Magic = "QFI\xfb" // at offset 0
	isoMagic   = "CD001"   // at offset isoAt, in the first volume descriptor
	isoAt      = 0x8001
	// qcow2IncompatDataFile is the incompatible feature bit of a qcow2 image whose guest data lives in an
	// external data file (header offset 72, version 3).
	qcow2IncompatDataFile = 1 << 2
)

// staleAge is how long an unlocked upload file must have been left untouched before WriteImage removes it
// to start a new upload with the same id: it covers the instant between an upload's creation of its file
// and its lock, so concurrent uploads of one id never remove each other's file.
const staleAge = time.Minute

// WriteImage streams r into image-<id>.part (created exclusively and locked), computing its SHA-256 and
// detecting its format from content (qcow2, ISO 9660, else raw), syncs it and renames it image-<id>. It
// refuses an existing image or an upload of the same id in progress (driver.ErrAlreadyExists), content over
// img.MaxSize or over what the quota has left (driver.ErrTooLarge), and a qcow2 image with a backing or an
// external data file (driver.ErrInvalid). A reader error is driver.ErrInvalid wrapping it. On any failure,
// and when ctx ends (checked between chunks of 1 MiB), the partial file is removed.
func (b *Backend) WriteImage(ctx context.Context, spec driver.PoolSpec, img driver.ImageWrite, r io.Reader) (driver.ImageInfo, error) {
	p, err := resolve(spec)
	if err != nil {
		return driver.ImageInfo{}, err
	}
	what := "image " + img.ID.String()
	switch {
	case img.ID == uuid.Nil:
		return driver.ImageInfo{}, fmt.Errorf("quotadir: image id missing: %w", driver.ErrInvalid)
	case img.MaxSize < 0:
		return driver.ImageInfo{}, fmt.Errorf("quotadir: %s: negative size limit %d: %w", what, img.MaxSize, driver.ErrInvalid)
	}
	if err := ready(ctx, p); err != nil {
		return driver.ImageInfo{}, err
	}
	final := p.path(driver.KindImage, img.ID)
	if _, err := os.Lstat(final); err == nil {
		return driver.ImageInfo{}, fmt.Errorf("quotadir: %s: %w", what, driver.ErrAlreadyExists)
	}
	// What the quota has left now bounds the upload; it is checked again when the image is committed.
	u, err := measure(ctx, p.dir)
	if err != nil {
		return driver.ImageInfo{}, fmt.Errorf("quotadir: %s: %w", what, err)
	}
	left := max(0, p.quota-u.committed)

	part := final + partSuffix
	f, err := createPart(part)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return driver.ImageInfo{}, fmt.Errorf("quotadir: %s: an upload of this image is in progress: %w", what, driver.ErrAlreadyExists)
		}
		return driver.ImageInfo{}, fileErr(err, "create upload file of "+what)
	}
	done := false
	defer func() {
		if !done {
			_ = os.Remove(part) // while the lock is held, so no sweep removes a new upload's file instead
			_ = f.Close()
		}
	}()

	info, err := copyImage(ctx, f, r, img.MaxSize, left, what)
	if err != nil {
		return driver.ImageInfo{}, err
	}
	if err := f.Sync(); err != nil {
		return driver.ImageInfo{}, fileErr(err, "sync "+what)
	}
	if err := ctx.Err(); err != nil {
		return driver.ImageInfo{}, ctxErr("write "+what, err)
	}

	unlock, err := lockDir(ctx, p)
	if err != nil {
		return driver.ImageInfo{}, err
	}
	defer unlock()
	u, err = measure(ctx, p.dir)
	if err != nil {
		return driver.ImageInfo{}, fmt.Errorf("quotadir: %s: %w", what, err)
	}
	if err := checkQuota(p, u, 0, info.Size, what); err != nil {
		return driver.ImageInfo{}, err
	}
	if _, err := os.Lstat(final); err == nil {
		return driver.ImageInfo{}, fmt.Errorf("quotadir: %s: %w", what, driver.ErrAlreadyExists)
	}
	// Every image is committed under the directory's lock, so nothing takes the name between the check and
	// the rename.
	if err := os.Rename(part, final); err != nil {
		return driver.ImageInfo{}, fileErr(err, "rename the upload of "+what)
	}
	done = true
	err = f.Close()
	syncDir(p.dir)
	if err != nil {
		_ = os.Remove(final)
		return driver.ImageInfo{}, fileErr(err, "close "+what)
	}
	return info, nil
}

// copyImage copies r into f, at most min(maxSize, left) bytes (maxSize 0: no limit of its own), hashing
// the content and detecting its format.
func copyImage(ctx context.Context, f *os.File, r io.Reader, maxSize, left int64, what string) (driver.ImageInfo, error) {
	limit, limitBy := left, "what the quota has left"
	if maxSize > 0 && maxSize <= left {
		limit, limitBy = maxSize, "the size limit"
	}
	sum := sha256.New()
	head := make([]byte, 0, headSize)
	buf := make([]byte, chunkSize)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return driver.ImageInfo{}, ctxErr("write "+what, err)
		}
		k, rerr := r.Read(buf)
		if k > 0 {
			if int64(k) > limit-n {
				return driver.ImageInfo{}, fmt.Errorf("quotadir: %s: more than %d bytes, %s: %w", what, limit, limitBy, driver.ErrTooLarge)
			}
			if _, err := f.Write(buf[:k]); err != nil {
				return driver.ImageInfo{}, fileErr(err, "write "+what)
			}
			sum.Write(buf[:k])
			if len(head) < headSize {
				head = append(head, buf[:min(k, headSize-len(head))]...)
			}
			n += int64(k)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			if err := ctx.Err(); err != nil {
				return driver.ImageInfo{}, ctxErr("write "+what, err)
			}
			return driver.ImageInfo{}, fmt.Errorf("quotadir: %s: read the upload: %w: %w", what, driver.ErrInvalid, rerr)
		}
	}
	format, err := detect(head)
	if err != nil {
		return driver.ImageInfo{}, fmt.Errorf("quotadir: %s: %w", what, err)
	}
	return driver.ImageInfo{Size: n, SHA256: hex.EncodeToString(sum.Sum(nil)), Format: format}, nil
}

// detect tells an image's format from its first bytes: qcow2 (refused, driver.ErrInvalid, with a backing
// file, an external data file or a header it cannot read), ISO 9660, or raw.
func detect(head []byte) (driver.ImageFormat, error) {
	be := binary.BigEndian
	switch {
	case bytes.HasPrefix(head, []byte(qcow2Magic)):
		if len(head) < 72 {
			return "", fmt.Errorf("truncated qcow2 header: %w", driver.ErrInvalid)
		}
		version := be.Uint32(head[4:])
		if version != 2 && version != 3 {
			return "", fmt.Errorf("qcow2 version %d is not 2 or 3: %w", version, driver.ErrInvalid)
		}
		if be.Uint64(head[8:]) != 0 {
			return "", fmt.Errorf("qcow2 image with a backing file: %w", driver.ErrInvalid)
		}
		if version == 3 {
			if len(head) < 80 {
				return "", fmt.Errorf("truncated qcow2 header: %w", driver.ErrInvalid)
			}
			if be.Uint64(head[72:])&qcow2IncompatDataFile != 0 {
				return "", fmt.Errorf("qcow2 image with an external data file: %w", driver.ErrInvalid)
			}
		}
		return driver.ImageQCOW2, nil
	case len(head) >= isoAt+len(isoMagic) && string(head[isoAt:isoAt+len(isoMagic)]) == isoMagic:
		return driver.ImageISO, nil
	default:
		return driver.ImageRaw, nil
	}
}

// createPart creates an upload file exclusively and locks it (flock), so that a sweep can tell a live
// upload from the leftover of a crashed one. The leftover of a crashed upload that nobody touched for
// staleAge is removed first. A sweep may remove the new file in the instant between its creation and its
// lock: createPart sees that the locked file is no longer at path and creates it again.
func createPart(path string) (*os.File, error) {
	for attempt := 0; attempt < 3; attempt++ {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
		if errors.Is(err, os.ErrExist) {
			if gone, _ := removeUnlocked(path, staleAge); gone {
				continue
			}
			return nil, err
		}
		if err != nil {
			return nil, err
		}
		// Blocking: a sweep holds the lock only for the instant it looks at the file.
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			_ = os.Remove(path)
			_ = f.Close()
			return nil, err
		}
		if isAt(f, path) {
			return f, nil
		}
		_ = f.Close() // swept before we locked it: make a new one
	}
	return nil, errors.New("the upload file was removed while it was created")
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

// removeUnlocked removes the upload file at path when no upload holds it locked and nobody wrote it for
// minAge. It reports whether the file is gone; err is set only when removing it failed.
func removeUnlocked(path string, minAge time.Duration) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, nil // not a file we can lock (a symbolic link, no permission): not ours
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return false, nil // a live upload holds it
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || time.Since(fi.ModTime()) < minAge || !isAt(f, path) {
		return false, nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	return true, nil
}

// SweepUploads removes the partial files (image-<id>.part) of uploads that are not running, whatever their
// age: a running upload holds its file locked. A missing storage directory is not an error.
func (b *Backend) SweepUploads(ctx context.Context, spec driver.PoolSpec) error {
	p, err := resolve(spec)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return ctxErr("sweep uploads of storage "+p.id.String(), err)
	}
	if err := sweep(ctx, p.dir, 0); err != nil {
		return fmt.Errorf("quotadir: storage %s: %w", p.id, err)
	}
	return nil
}

// sweep removes the unlocked upload files of dir untouched for minAge.
func sweep(ctx context.Context, dir string, minAge time.Duration) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w: %w", dir, driver.ErrUnavailable, err)
	}
	var errs []error
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return ctxErr("sweep "+dir, err)
		}
		name, ok := strings.CutSuffix(e.Name(), partSuffix)
		if !ok || !isObject(name) || !strings.HasPrefix(name, string(driver.KindImage)+"-") {
			continue
		}
		if _, err := removeUnlocked(filepath.Join(dir, e.Name()), minAge); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w: %w", e.Name(), driver.ErrUnavailable, err))
		}
	}
	return errors.Join(errs...)
}

// DeleteImage removes image-<id>; removing a missing image succeeds (on a reachable storage).
func (b *Backend) DeleteImage(ctx context.Context, spec driver.PoolSpec, id uuid.UUID) error {
	return remove(ctx, spec, driver.KindImage, id)
}

// InspectImage reports an image's size and its format, detected again from its content; driver.ErrNotFound
// when it is missing.
func (b *Backend) InspectImage(ctx context.Context, spec driver.PoolSpec, id uuid.UUID) (driver.ImageInfo, error) {
	p, err := resolve(spec)
	if err != nil {
		return driver.ImageInfo{}, err
	}
	if err := ready(ctx, p); err != nil {
		return driver.ImageInfo{}, err
	}
	what := "image " + id.String()
	f, err := os.OpenFile(p.path(driver.KindImage, id), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return driver.ImageInfo{}, fileErr(err, "open "+what)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return driver.ImageInfo{}, fileErr(err, "stat "+what)
	}
	if !fi.Mode().IsRegular() {
		return driver.ImageInfo{}, fmt.Errorf("quotadir: %s is not a regular file: %w", what, driver.ErrInvalid)
	}
	head := make([]byte, headSize)
	k, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return driver.ImageInfo{}, fileErr(err, "read "+what)
	}
	format, err := detect(head[:k])
	if err != nil {
		return driver.ImageInfo{}, fmt.Errorf("quotadir: %s: %w", what, err)
	}
	return driver.ImageInfo{Size: fi.Size(), Format: format}, nil
}
