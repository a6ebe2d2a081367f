package nfs

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/nfsrpc"
)

// Prepare checks that the server answers and the export exists (MOUNT), creates openvair-<id> on the
// export and reports the space figures (FSSTAT). It also sweeps stale upload files.
func (b *Backend) Prepare(ctx context.Context, spec driver.PoolSpec) (driver.PoolState, error) {
	p, err := parsePool(spec)
	if err != nil {
		return driver.PoolState{}, err
	}
	var st driver.PoolState
	err = b.run(ctx, p, opTimeout, "prepare", func(s *sess) error {
		fh, err := s.lookup(p.dir)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if _, err := s.t.Mkdir(p.dir, 0o755); s.note(err) != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
		case err != nil:
			return err
		default:
			a, err := s.getattr(fh)
			if err != nil {
				return err
			}
			if a.Type != nfsrpc.TypeDirectory {
				return logical(driver.ErrInvalid, p, "%s on the export is not a directory", p.dir)
			}
		}
		if st, err = b.poolState(s); err != nil {
			return err
		}
		_ = b.sweep(s, p, b.staleAge)
		return nil
	})
	return st, err
}

// Status reports the space figures; an unreachable server gives ErrUnavailable within the status timeout
// (3 s by default) even when ctx has no deadline. It sweeps stale upload files on the way.
func (b *Backend) Status(ctx context.Context, spec driver.PoolSpec) (driver.PoolState, error) {
	p, err := parsePool(spec)
	if err != nil {
		return driver.PoolState{}, err
	}
	var st driver.PoolState
	err = b.run(ctx, p, statusTimeout, "status", func(s *sess) error {
		if _, err := s.lookup(p.dir); err != nil {
			return err
		}
		if st, err = b.poolState(s); err != nil {
			return err
		}
		_ = b.sweep(s, p, b.staleAge)
		return nil
	})
	return st, err
}

// Teardown removes the storage directory when it is empty (after sweeping stale upload files); a directory
// that still holds volumes or images is kept, since they belong to the storage. A missing directory is fine.
func (b *Backend) Teardown(ctx context.Context, spec driver.PoolSpec) error {
	p, err := parsePool(spec)
	if err != nil {
		return err
	}
	return b.run(ctx, p, opTimeout, "teardown", func(s *sess) error {
		if _, err := s.lookup(p.dir); errors.Is(err, os.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		_ = b.sweep(s, p, b.staleAge)
		entries, err := s.readDir(p.dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.FileName != "." && e.FileName != ".." {
				return nil // the storage still holds objects: keep its directory
			}
		}
		err = s.note(s.t.RmDir(p.dir))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if nfsStatus(err) == nfsrpc.ErrNotEmpty || nfsStatus(err) == nfsrpc.ErrExist {
			return nil
		}
		return err
	})
}

func (b *Backend) poolState(s *sess) (driver.PoolState, error) {
	fs, err := s.fsstat()
	if err != nil {
		return driver.PoolState{}, err
	}
	return driver.PoolState{Capacity: clamp(fs.TotalBytes), Available: clamp(fs.AvailBytes)}, nil
}

func clamp(v uint64) int64 {
	if v > 1<<62 {
		return 1 << 62
	}
	return int64(v)
}

// sweep removes .part files of the pool's directory that no upload of this process is writing and that
// either this process abandoned (their removal failed) or are at least minAge old (left by a crash; 0: any
// age). It returns what went wrong; Prepare and Teardown sweep on a best-effort basis and ignore it.
func (b *Backend) sweep(s *sess, p pool, minAge time.Duration) error {
	entries, err := s.readDir(p.dir)
	if err != nil {
		return err
	}
	now := time.Now()
	var errs []error
	for _, e := range entries {
		name := e.FileName
		if !strings.HasPrefix(name, "image-") || !strings.HasSuffix(name, partSuffix) || e.IsDir() {
			continue
		}
		key := b.partKey(p, name)
		b.mu.Lock()
		busy := b.uploading[key] > 0
		_, abandoned := b.abandoned[key]
		b.mu.Unlock()
		if busy || (!abandoned && now.Sub(e.ModTime()) < minAge) {
			continue
		}
		if err := s.remove(p.file(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		b.mu.Lock()
		delete(b.abandoned, key)
		b.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (b *Backend) partKey(p pool, name string) string {
	return p.key.server + "\x00" + p.key.export + "\x00" + p.file(name)
}
