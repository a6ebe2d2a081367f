package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/deadline"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/fsm"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/internal/uow"
	"github.com/openvair/openvair/internal/urlfetch"
	"github.com/openvair/openvair/storage"
)

// Repository persists images. Implementations enforce that names are unique per storage
// (errkind.AlreadyExists), refuse an Update whose Version is not the stored one (errkind.Conflict), bump the
// Version of the value passed to a successful Update, and fill Attachments on reads.
type Repository interface {
	Get(ctx context.Context, id uuid.UUID) (*Image, error)
	List(ctx context.Context, opts ListOptions) (Page, error)
	Create(ctx context.Context, img *Image) error
	Update(ctx context.Context, img *Image) error
	Delete(ctx context.Context, id uuid.UUID) error
}

// StorageReader reads the storage an image lives on, and lists the storages (Recover sweeps the upload
// leftovers of every storage).
type StorageReader interface {
	Get(ctx context.Context, id uuid.UUID) (*storage.Storage, error)
	List(ctx context.Context, opts storage.ListOptions) (storage.Page, error)
}

// Transactor runs fn as one unit of work (see storage.Transactor).
type Transactor interface {
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
}

// Backend is what the image service needs from a storage driver.
type Backend interface {
	WriteImage(ctx context.Context, pool driver.PoolSpec, img driver.ImageWrite, r io.Reader) (driver.ImageInfo, error)
	DeleteImage(ctx context.Context, pool driver.PoolSpec, id uuid.UUID) error
	InspectImage(ctx context.Context, pool driver.PoolSpec, id uuid.UUID) (driver.ImageInfo, error)
}

// Backends finds the backend for a storage type.
type Backends interface {
	ImageBackend(t storage.Type) (Backend, error)
}

// DefaultMaxSize is the default upload limit: 64 GiB.
const DefaultMaxSize int64 = 64 << 30

// Service holds the image rules.
type Service struct {
	repo     Repository
	storages StorageReader
	tx       Transactor
	backends Backends
	ops      *operation.Service
	fetcher  *urlfetch.Fetcher // downloads of imports from URLs (WithFetcher)
	// MaxSize is the largest image accepted, in bytes.
	MaxSize int64
	// UploadTimeout bounds one upload that has no earlier deadline.
	UploadTimeout time.Duration
	// OpTimeout bounds other backend calls; MonitorTimeout one inspection.
	OpTimeout, MonitorTimeout time.Duration
	Log                       *slog.Logger
	now                       func() time.Time
}

// Option configures a Service at construction (WithOperations).
type Option = func(*Service)

// configure applies the options and registers the operation kinds when the service records operations.
func (s *Service) configure(opts []Option) *Service {
	return operation.Configure(s, opts, func() *operation.Service { return s.ops }, s.registerOperations)
}

// NewService returns an image service.
func NewService(repo Repository, storages StorageReader, tx Transactor, backends Backends, opts ...Option) *Service {
	return (&Service{repo: repo, storages: storages, tx: tx, backends: backends, MaxSize: DefaultMaxSize,
		UploadTimeout: 6 * time.Hour, OpTimeout: 2 * time.Minute, MonitorTimeout: 5 * time.Second,
		Log: slog.Default(), now: time.Now}).configure(opts)
}

// Get returns an image by id.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (*Image, error) { return s.repo.Get(ctx, id) }

// List returns a page of images.
func (s *Service) List(ctx context.Context, opts ListOptions) (Page, error) {
	if err := opts.validate(); err != nil {
		return Page{}, err
	}
	return s.repo.List(ctx, opts)
}

// create streams content into an available storage as a new image. The content type is detected from the
// bytes; the upload is limited to MaxSize (ErrTooLarge, "larger than the upload size limit") and to the
// storage's available space (ErrTooLarge, "larger than the free space of storage ..."). Empty content is
// refused with ErrInvalid. When the upload fails or ctx is cancelled, nothing remains: no row, no file.
func (s *Service) create(ctx context.Context, req CreateRequest, content io.Reader) (*Image, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var (
		img *Image
		st  *storage.Storage
	)
	err := s.tx.InTx(ctx, func(ctx context.Context) error {
		var err error
		if st, err = s.storages.Get(ctx, req.StorageID); err != nil {
			return err
		}
		if err := fsm.Require("storage", st.ID.String(), "upload images", st.Status, storage.StatusAvailable); err != nil {
			return err
		}
		now := s.now().UTC()
		img = &Image{ID: uuid.Must(uuid.NewV7()), Name: req.Name, Description: req.Description, StorageID: req.StorageID,
			Status: StatusUploading, CreatedAt: now, UpdatedAt: now}
		if err := s.ops.SetTarget(ctx, img.ID); err != nil {
			return err
		}
		return s.repo.Create(ctx, img)
	})
	if err != nil {
		return nil, err
	}
	limit := s.MaxSize
	if st.Available < limit {
		limit = st.Available
	}
	counted := &countingReader{r: content, progress: func(n int64) { s.ops.Progress(ctx, n, req.ContentLength) }}
	content, err = nonEmpty(counted, img.ID)
	var backend Backend
	if err == nil {
		backend, err = s.backends.ImageBackend(st.Type)
	}
	var info driver.ImageInfo
	if err == nil {
		dctx, cancel := deadline.Ensure(ctx, s.UploadTimeout)
		info, err = backend.WriteImage(dctx, st.Pool(), driver.ImageWrite{ID: img.ID, MaxSize: limit}, content)
		cancel()
		if err != nil && errors.Is(err, errkind.TooLarge) && counted.n > limit {
			err = s.tooLarge(img.ID, st, limit)
		}
	}
	ctx = context.WithoutCancel(ctx)
	if err != nil {
		if derr := s.repo.Delete(ctx, img.ID); derr != nil {
			s.Log.Error("image: removing a failed upload", "id", img.ID, "err", derr)
		}
		return nil, fmt.Errorf("upload image %q: %w", img.Name, err)
	}
	return s.update(ctx, img.ID, func(cur *Image) error {
		cur.Size, cur.SHA256, cur.Format = info.Size, info.SHA256, info.Format
		return cur.SetStatus(StatusAvailable, "")
	})
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r        io.Reader
	n        int64
	progress func(n int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if n > 0 {
		c.progress(c.n)
	}
	return n, err
}

// nonEmpty reads the first byte of r and returns a reader of all of r, or ErrInvalid when r is empty: an
// image of 0 bytes is refused.
func nonEmpty(r io.Reader, id uuid.UUID) (io.Reader, error) {
	var first [1]byte
	for {
		n, err := r.Read(first[:])
		if n > 0 {
			return io.MultiReader(bytes.NewReader(first[:n]), r), nil
		}
		if errors.Is(err, io.EOF) {
			return nil, errkind.New(errkind.Invalid, "image", id.String(), "the image is empty (0 bytes)")
		}
		if err != nil {
			return nil, err
		}
	}
}

// tooLarge says which limit an upload that read more than limit bytes hit: the storage's free space or the
// upload size limit (MaxSize).
func (s *Service) tooLarge(id uuid.UUID, st *storage.Storage, limit int64) error {
	if limit < s.MaxSize {
		return errkind.New(errkind.TooLarge, "image", id.String(),
			"the image is larger than the free space of storage %q: it needs more than %d bytes, the storage has %d bytes free",
			st.Name, limit, st.Available)
	}
	return errkind.New(errkind.TooLarge, "image", id.String(), "the image is larger than the upload size limit of %d bytes", s.MaxSize)
}

// edit changes an image's name or description.
func (s *Service) edit(ctx context.Context, id uuid.UUID, req EditRequest) (*Image, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return s.update(ctx, id, func(cur *Image) error {
		if err := fsm.Require("image", id.String(), "edit", cur.Status, StatusAvailable, StatusError); err != nil {
			return err
		}
		if req.Name != nil {
			cur.Name = *req.Name
		}
		if req.Description != nil {
			cur.Description = *req.Description
		}
		return nil
	})
}

// delete removes an image that no VM uses as a cdrom.
func (s *Service) delete(ctx context.Context, id uuid.UUID) error {
	img, err := s.update(ctx, id, func(cur *Image) error {
		if err := fsm.Require("image", id.String(), "delete", cur.Status, StatusAvailable, StatusError); err != nil {
			return err
		}
		if len(cur.Attachments) > 0 {
			refs := make([]errkind.Ref, len(cur.Attachments))
			for i, a := range cur.Attachments {
				refs[i] = errkind.Ref{Kind: "vm", ID: a.VMID.String(), Name: a.VMName}
			}
			return errkind.InUseBy("image", id.String(), fmt.Sprintf("used as a cdrom by VM %q", cur.Attachments[0].VMName), refs)
		}
		if len(cur.Linked) > 0 {
			refs := make([]errkind.Ref, len(cur.Linked))
			for i, l := range cur.Linked {
				refs[i] = errkind.Ref{Kind: "volume", ID: l.VolumeID.String(), Name: l.VolumeName}
			}
			return errkind.InUseBy("image", id.String(), fmt.Sprintf("the backing file of volume %q", cur.Linked[0].VolumeName), refs)
		}
		return cur.SetStatus(StatusDeleting, "")
	})
	if err != nil {
		return err
	}
	err = s.withBackend(ctx, img.StorageID, s.OpTimeout, func(ctx context.Context, b Backend, st *storage.Storage) error {
		return b.DeleteImage(ctx, st.Pool(), id)
	})
	ctx = context.WithoutCancel(ctx)
	if err != nil {
		s.fail(ctx, id, "delete failed: "+err.Error())
		return fmt.Errorf("delete image %q: %w", img.Name, err)
	}
	return s.repo.Delete(ctx, id)
}

// withBackend runs fn with the storage of an image and its backend, under a deadline of at most timeout.
func (s *Service) withBackend(ctx context.Context, storageID uuid.UUID, timeout time.Duration, fn func(ctx context.Context, b Backend, st *storage.Storage) error) error {
	st, err := s.storages.Get(ctx, storageID)
	if err != nil {
		return err
	}
	b, err := s.backends.ImageBackend(st.Type)
	if err != nil {
		return err
	}
	ctx, cancel := deadline.Ensure(ctx, timeout)
	defer cancel()
	return fn(ctx, b, st)
}

func (s *Service) fail(ctx context.Context, id uuid.UUID, reason string) {
	_, err := s.update(ctx, id, func(cur *Image) error { return cur.SetStatus(StatusError, reason) })
	s.logErr("record failure: "+reason, id, err)
}

func (s *Service) logErr(what string, id uuid.UUID, err error) {
	if err != nil {
		s.Log.Error("image: "+what, "id", id, "err", err)
	}
}

// Refresh checks that an image is still on its storage and records its size; a missing file puts it in
// error. Only available and error images are touched, and only if nobody changed them meanwhile.
func (s *Service) Refresh(ctx context.Context, id uuid.UUID) (*Image, error) {
	img, err := s.repo.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if img.Status != StatusAvailable && img.Status != StatusError {
		return img, nil
	}
	st, err := s.storages.Get(ctx, img.StorageID)
	if err != nil {
		return nil, err
	}
	if st.Status != storage.StatusAvailable {
		return img, nil
	}
	backend, err := s.backends.ImageBackend(st.Type)
	if err != nil {
		return nil, err
	}
	dctx, cancel := deadline.Ensure(ctx, s.MonitorTimeout)
	info, ierr := backend.InspectImage(dctx, st.Pool(), id)
	cancel()
	if ierr != nil && !errors.Is(ierr, errkind.NotFound) {
		return img, nil
	}
	return s.update(ctx, id, func(cur *Image) error {
		if cur.Version != img.Version {
			return uow.ErrSkip
		}
		return uow.Unchanged(cur, func() error {
			if ierr != nil {
				return cur.SetStatus(StatusError, "image file missing on storage "+st.Name)
			}
			cur.Size = info.Size
			return cur.SetStatus(StatusAvailable, "")
		})
	})
}

// RefreshAll refreshes every image.
func (s *Service) RefreshAll(ctx context.Context) error {
	return forEach(ctx, s.repo, ListOptions{}, func(img *Image) {
		if _, err := s.Refresh(ctx, img.ID); err != nil && ctx.Err() == nil {
			s.Log.Warn("image: refresh failed", "id", img.ID, "err", err)
		}
	})
}

// Recover finishes what a crash interrupted (see RecoverInterrupted), then removes the partial files of
// uploads from every storage whose backend is a driver.UploadSweeper, except storages where a live upload
// runs (in this process or another). Open calls it; the monitors call RecoverInterrupted only, so that
// storages are not swept at every cycle.
func (s *Service) Recover(ctx context.Context) error {
	uploading, _, err := s.recoverInterrupted(ctx)
	if err != nil {
		return err
	}
	return s.sweepUploads(ctx, func(st *storage.Storage) bool { return !uploading[st.ID] })
}

// RecoverInterrupted finishes what a stopped process interrupted, leaving alone images a live operation
// works on: an interrupted upload is removed (file and row); an interrupted delete whose file is already
// gone is completed (the row is removed), one whose file is still there leaves the image in error with a
// reason (delete it again).
func (s *Service) RecoverInterrupted(ctx context.Context) error {
	uploading, recovered, err := s.recoverInterrupted(ctx)
	if err != nil || len(recovered) == 0 {
		return err
	}
	// The storages where an upload was just recovered are swept of its partial file, unless a live upload
	// runs there too.
	return s.sweepUploads(ctx, func(st *storage.Storage) bool { return recovered[st.ID] && !uploading[st.ID] })
}

// recoverInterrupted is RecoverInterrupted without the sweep: it returns the storages where a live upload
// runs, and those where it removed an interrupted upload.
func (s *Service) recoverInterrupted(ctx context.Context) (uploading, recovered map[uuid.UUID]bool, err error) {
	uploading = map[uuid.UUID]bool{} // storages with a live upload: their partial files are not swept
	recovered = map[uuid.UUID]bool{}
	for _, status := range []Status{StatusUploading, StatusDeleting} {
		err := forEach(ctx, s.repo, ListOptions{Status: status}, func(img *Image) {
			if s.ops.Busy(ctx, img.ID) {
				if status == StatusUploading {
					uploading[img.StorageID] = true
				}
				return // a live operation of another process (or this one) is on it
			}
			switch status {
			case StatusUploading:
				err := s.withBackend(ctx, img.StorageID, s.OpTimeout, func(ctx context.Context, b Backend, st *storage.Storage) error {
					return b.DeleteImage(ctx, st.Pool(), img.ID)
				})
				if err == nil {
					s.logErr("recover: remove an interrupted upload", img.ID, s.repo.Delete(ctx, img.ID))
					recovered[img.StorageID] = true
					return
				}
			case StatusDeleting:
				err := s.withBackend(ctx, img.StorageID, s.OpTimeout, func(ctx context.Context, b Backend, st *storage.Storage) error {
					_, err := b.InspectImage(ctx, st.Pool(), img.ID)
					return err
				})
				if errors.Is(err, errkind.NotFound) {
					s.logErr("recover: complete an interrupted delete", img.ID, s.repo.Delete(ctx, img.ID))
					return
				}
			}
			s.fail(ctx, img.ID, fmt.Sprintf("interrupted while %s", status))
		})
		if err != nil {
			return nil, nil, err
		}
	}
	return uploading, recovered, nil
}

// sweepUploads asks the backend of every storage that want selects and that is not being created or deleted to
// remove the leftovers of interrupted uploads. A storage that cannot be swept now is logged and skipped: its
// leftovers are removed at the next recovery.
func (s *Service) sweepUploads(ctx context.Context, want func(*storage.Storage) bool) error {
	return uow.ForEach(uow.All(ctx, func(ctx context.Context, cursor string) ([]*storage.Storage, string, error) {
		page, err := s.storages.List(ctx, storage.ListOptions{Cursor: cursor})
		return page.Items, page.NextCursor, err
	}), func(st *storage.Storage) {
		if (st.Status != storage.StatusAvailable && st.Status != storage.StatusError) || !want(st) {
			return
		}
		b, err := s.backends.ImageBackend(st.Type)
		if err != nil {
			return
		}
		sw, ok := b.(driver.UploadSweeper)
		if !ok {
			return
		}
		dctx, cancel := deadline.Ensure(ctx, s.OpTimeout)
		defer cancel()
		if err := sw.SweepUploads(dctx, st.Pool()); err != nil {
			s.Log.Warn("image: recover: removing interrupted uploads", "storage", st.ID, "err", err)
		}
	})
}

// update applies fn to the current image inside a unit of work and stores it.
func (s *Service) update(ctx context.Context, id uuid.UUID, fn func(cur *Image) error) (*Image, error) {
	return uow.Update(ctx, s.tx, s.repo.Get, s.repo.Update, id, func(ctx context.Context, cur *Image) error {
		if err := fn(cur); err != nil {
			return err
		}
		cur.UpdatedAt = s.now().UTC()
		return nil
	})
}

// All iterates over every image matching opts, page by page; a failed page is yielded as its error.
func All(ctx context.Context, repo Repository, opts ListOptions) iter.Seq2[*Image, error] {
	return uow.All(ctx, func(ctx context.Context, cursor string) ([]*Image, string, error) {
		opts.Cursor = cursor
		page, err := repo.List(ctx, opts)
		return page.Items, page.NextCursor, err
	})
}

// forEach calls fn for every image matching opts and returns the first error.
func forEach(ctx context.Context, repo Repository, opts ListOptions, fn func(*Image)) error {
	return uow.ForEach(All(ctx, repo, opts), fn)
}
