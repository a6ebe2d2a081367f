package nfs

import (
	"context"
	"errors"
	"github.com/openvair/openvair/internal/imagefmt"
	"io"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/deadline"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/nfsrpc"
)

// headSize is how much of an image InspectImage reads to detect its format.
const headSize = 64 << 10

// cleanupTimeout bounds the removal of a failed upload's .part file.
const cleanupTimeout = 5 * time.Second

// WriteImage streams r into image-<id>.part with large UNSTABLE WRITEs (hashing and checking the content on
// the way), COMMITs, and renames it to image-<id>. On failure or cancellation the .part file is removed;
// when that is impossible (server gone) a later Prepare or Status sweeps it.
func (b *Backend) WriteImage(ctx context.Context, spec driver.PoolSpec, img driver.ImageWrite, r io.Reader) (driver.ImageInfo, error) {
	p, err := parsePool(spec)
	if err != nil {
		return driver.ImageInfo{}, err
	}
	final, part := imageName(img.ID), imageName(img.ID)+partSuffix
	key := b.partKey(p, part)
	b.mu.Lock()
	if b.uploading[key] > 0 {
		b.mu.Unlock()
		return driver.ImageInfo{}, logical(driver.ErrAlreadyExists, p, "image %s is being uploaded", img.ID)
	}
	b.uploading[key]++
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		if b.uploading[key]--; b.uploading[key] <= 0 {
			delete(b.uploading, key)
		}
		b.mu.Unlock()
	}()

	var fh, dirFH []byte
	var chunk int
	created := false
	err = b.run(ctx, p, opTimeout, "upload image "+img.ID.String(), func(s *sess) error {
		var err error
		if dirFH, err = s.lookup(p.dir); err != nil {
			return err
		}
		if _, err := s.lookup(p.file(final)); err == nil {
			return logical(driver.ErrAlreadyExists, p, "image %s already exists", img.ID)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if fh, err = s.create(p.file(part), b.fileMode, b.owner); err != nil {
			return err
		}
		created = true
		chunk = s.chunk(s.m.wtmax)
		return s.setSize(fh, 0)
	})
	if err != nil {
		if created {
			b.cleanupPart(ctx, p, part, key)
		}
		return driver.ImageInfo{}, err
	}

	info, err := b.upload(ctx, p, fh, dirFH, chunk, part, final, img, r)
	if err != nil {
		b.cleanupPart(ctx, p, part, key)
		return driver.ImageInfo{}, err
	}
	return info, nil
}

func (b *Backend) upload(ctx context.Context, p pool, fh, dirFH []byte, chunk int, part, final string, img driver.ImageWrite, r io.Reader) (driver.ImageInfo, error) {
	what := "upload image " + img.ID.String()
	up := newUploader(ctx, b, p, fh, chunk)
	info, cerr := imagefmt.Copy(ctx, up, r, img.MaxSize)
	werr := up.Close()
	switch {
	case werr != nil && (cerr == nil || errkind.KindOf(cerr) == nil):
		// The network failed: report that rather than what the copy made of it.
		return info, b.mapErr(ctx, werr, p, what)
	case cerr != nil:
		if ctx.Err() != nil {
			return info, b.mapErr(ctx, ctx.Err(), p, what)
		}
		return info, b.mapErr(ctx, cerr, p, what)
	}
	err := b.run(ctx, p, opTimeout, what, func(s *sess) error {
		v, err := nfsrpc.Commit(s.t, s.auth, fh)
		if err != nil {
			return s.note(err)
		}
		if w, ok := up.verifier(); ok && w != v {
			return nfsrpc.ErrVerifierChanged
		}
		return s.note(nfsrpc.Rename(s.t, s.auth, dirFH, part, dirFH, final))
	})
	return info, err
}

// cleanupPart removes a failed upload's .part file with a context detached from the caller's (which may
// be cancelled); if that fails the file is left to the sweep.
func (b *Backend) cleanupPart(ctx context.Context, p pool, part, key string) {
	b.mu.Lock()
	b.abandoned[key] = time.Now()
	b.mu.Unlock()
	cctx, cancel := deadline.Ensure(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	err := b.with(cctx, p.key, func(s *sess) error { return s.remove(p.file(part)) })
	if err == nil || errors.Is(err, os.ErrNotExist) {
		b.mu.Lock()
		delete(b.abandoned, key)
		b.mu.Unlock()
	}
}

var _ driver.UploadSweeper = (*Backend)(nil)

// SweepUploads implements driver.UploadSweeper: it removes every upload file (image-<id>.part) of the
// storage's directory that no upload of this process is writing, whatever its age. NFSv3 has no lock that
// dies with its process, so the files of uploads run by another process on the same storage cannot be told
// from a crash's leftovers: a storage is managed by one openvair process (its rows live in one store), which
// calls this when it recovers, before it serves uploads. A missing directory has nothing to sweep.
func (b *Backend) SweepUploads(ctx context.Context, spec driver.PoolSpec) error {
	p, err := parsePool(spec)
	if err != nil {
		return err
	}
	return b.run(ctx, p, opTimeout, "sweep uploads", func(s *sess) error {
		if _, err := s.lookup(p.dir); errors.Is(err, os.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		return b.sweep(s, p, 0)
	})
}

// DeleteImage removes image-<id>; a missing image is fine.
func (b *Backend) DeleteImage(ctx context.Context, spec driver.PoolSpec, id uuid.UUID) error {
	p, err := parsePool(spec)
	if err != nil {
		return err
	}
	return b.run(ctx, p, opTimeout, "delete image "+id.String(), func(s *sess) error {
		if err := s.remove(p.file(imageName(id))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	})
}

// InspectImage reports an image's size and its format, detected from its first bytes.
func (b *Backend) InspectImage(ctx context.Context, spec driver.PoolSpec, id uuid.UUID) (driver.ImageInfo, error) {
	p, err := parsePool(spec)
	if err != nil {
		return driver.ImageInfo{}, err
	}
	var info driver.ImageInfo
	err = b.run(ctx, p, opTimeout, "inspect image "+id.String(), func(s *sess) error {
		fh, err := s.lookup(p.file(imageName(id)))
		if err != nil {
			return err
		}
		a, err := s.getattr(fh)
		if err != nil {
			return err
		}
		head := make([]byte, min(int64(headSize), int64(a.Size)))
		n, err := (&nfsFile{s, fh}).ReadAt(head, 0)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		info = driver.ImageInfo{Size: int64(a.Size), Format: imagefmt.Detect(head[:n])}
		return nil
	})
	return info, err
}
