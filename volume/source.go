package volume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/deadline"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/fsm"
	"github.com/openvair/openvair/internal/qcow2"
	"github.com/openvair/openvair/storage"
)

// CloneMode says how a volume made from a source gets its content.
type CloneMode string

// Clone modes.
const (
	// ModeCopy copies the source's guest data into a new, independent volume, converting between raw and
	// qcow2 as needed: streamed in Go, sparse (zero runs are not written), onto any storage.
	ModeCopy CloneMode = "copy"
	// ModeLinked makes a qcow2 volume whose unallocated clusters read from the source (its backing file,
	// named relatively) on the same storage. It is made at once whatever the source's size; the source
	// cannot be deleted while linked volumes use it.
	ModeLinked CloneMode = "linked"
	// ModeInstant makes an independent copy that shares blocks with the source (a reflink) on the same
	// storage, in the source's format; for backends with the instant_clone capability.
	ModeInstant CloneMode = "instant"
)

// Source is what a new volume's content starts from: an image (qcow2 or raw, not an ISO), another volume,
// or a volume's snapshot. Exactly one id is set.
type Source struct {
	ImageID    uuid.UUID `json:"image_id,omitempty"`
	VolumeID   uuid.UUID `json:"volume_id,omitempty"`
	SnapshotID uuid.UUID `json:"snapshot_id,omitempty"`
	// Mode is how the content is made: copy (the default), linked or instant.
	Mode CloneMode `json:"mode,omitempty"`
}

// Backing is the object a linked volume reads its unallocated clusters from.
type Backing struct {
	Kind driver.ObjectKind `json:"kind"` // "image" or "volume"
	ID   uuid.UUID         `json:"id"`
}

// LinkedVolume is a volume that uses an image or a volume as its backing file. Repositories fill it on
// reads.
type LinkedVolume struct {
	VolumeID   uuid.UUID `json:"volume_id"`
	VolumeName string    `json:"volume_name"`
}

// ImageReader reads images, the sources of volumes made from images.
type ImageReader interface {
	Get(ctx context.Context, id uuid.UUID) (*image.Image, error)
}

// WithImages lets volumes be made from the images images reads. Without it, an image source is
// ErrUnsupported.
func WithImages(images ImageReader) Option {
	return func(s *Service) { s.images = images }
}

// validate checks the source's own fields, naming them with prefix ("source.").
func (src *Source) validate(v *errkind.Validator, prefix string) {
	n := 0
	for _, id := range []uuid.UUID{src.ImageID, src.VolumeID, src.SnapshotID} {
		if id != uuid.Nil {
			n++
		}
	}
	v.Check(n == 1, prefix, "give exactly one of image_id, volume_id and snapshot_id")
	switch src.Mode {
	case "", ModeCopy, ModeLinked, ModeInstant:
	default:
		v.Add(prefix+".mode", "must be copy, linked or instant")
	}
	v.Check(src.SnapshotID == uuid.Nil || src.Mode != ModeLinked, prefix+".mode", "a snapshot is copied (copy or instant), not linked")
}

func (src *Source) mode() CloneMode {
	if src.Mode == "" {
		return ModeCopy
	}
	return src.Mode
}

// origin is a resolved source: where its object is and what it holds.
type origin struct {
	kind      driver.ObjectKind
	id        uuid.UUID
	name      string
	storageID uuid.UUID
	format    Format // qcow2 or raw
	size      int64  // virtual size when known (volumes, raw images), else 0
	allocated int64  // bytes it takes on its storage (the most a copy writes)
	backed    bool   // a linked volume: its file names a backing file
}

// resolveSource finds the source of req, checks it can be one, and fills in req's format and storage when
// they were left to the source. Errors name the request's fields.
func (s *Service) resolveSource(ctx context.Context, req *CreateRequest) (origin, error) {
	src := req.Source
	var o origin
	switch {
	case src.ImageID != uuid.Nil:
		if s.images == nil {
			return o, errkind.New(errkind.Unsupported, "volume", "", "volumes from images are not configured")
		}
		img, err := s.images.Get(ctx, src.ImageID)
		if errors.Is(err, errkind.NotFound) {
			return o, fieldError("source.image_id", "no image has id %s", src.ImageID)
		}
		if err != nil {
			return o, err
		}
		if err := fsm.Require("image", img.ID.String(), "be copied", img.Status, image.StatusAvailable); err != nil {
			return o, err
		}
		if img.Format == image.FormatISO {
			return o, fieldError("source.image_id", "image %q is an ISO image: attach it to a VM as a cdrom; a volume can be made from a qcow2 or raw image", img.Name)
		}
		o = origin{kind: driver.KindImage, id: img.ID, name: img.Name, storageID: img.StorageID, format: Format(img.Format),
			allocated: img.Size}
		if o.format == FormatRaw {
			o.size = img.Size
		}
	case src.SnapshotID != uuid.Nil:
		if s.snapshots == nil {
			return o, errkind.New(errkind.Unsupported, "volume", "", "snapshots are not configured")
		}
		sn, err := s.snapshots.Get(ctx, src.SnapshotID)
		if errors.Is(err, errkind.NotFound) {
			return o, fieldError("source.snapshot_id", "no snapshot has id %s", src.SnapshotID)
		}
		if err != nil {
			return o, err
		}
		if err := fsm.Require("snapshot", sn.ID.String(), "be copied", sn.Status, StatusAvailable); err != nil {
			return o, err
		}
		// A snapshot is stored as a volume object of its own id: it is read and cloned as one. A snapshot of
		// a linked volume names the same backing file.
		vol, err := s.repo.Get(ctx, sn.VolumeID)
		if err != nil {
			return o, err
		}
		o = origin{kind: driver.KindVolume, id: sn.ID, name: sn.Name, storageID: sn.StorageID, format: sn.Format,
			size: sn.Size, allocated: sn.Allocated, backed: vol.Backing != nil}
	default:
		vol, err := s.repo.Get(ctx, src.VolumeID)
		if errors.Is(err, errkind.NotFound) {
			return o, fieldError("source.volume_id", "no volume has id %s", src.VolumeID)
		}
		if err != nil {
			return o, err
		}
		if err := fsm.Require("volume", vol.ID.String(), "be cloned", vol.Status, StatusAvailable); err != nil {
			return o, err
		}
		if src.mode() != ModeLinked {
			// A copy must not change while it is read: no VM may be writing to it.
			for _, a := range vol.Attachments {
				if a.Active && !vol.ReadOnly {
					return o, errkind.New(errkind.InUse, "volume", vol.ID.String(),
						"attached to VM %q which is not shut off; stop it before cloning", a.VMName)
				}
			}
		}
		o = origin{kind: driver.KindVolume, id: vol.ID, name: vol.Name, storageID: vol.StorageID, format: vol.Format,
			size: vol.Size, allocated: vol.Allocated, backed: vol.Backing != nil}
	}
	if req.StorageID == uuid.Nil {
		req.StorageID = o.storageID
	}
	if req.Format == "" {
		req.Format = o.format
		if src.mode() == ModeLinked {
			req.Format = FormatQCOW2
		}
	}
	v := &errkind.Validator{Entity: "volume"}
	switch src.mode() {
	case ModeLinked:
		v.Check(req.Format == FormatQCOW2, "format", "a linked volume is qcow2")
		v.Check(req.StorageID == o.storageID, "storage_id", "a linked volume is on its source's storage")
	case ModeInstant:
		v.Check(req.Format == o.format, "format", "an instant clone keeps its source's format (%s)", o.format)
		v.Check(req.StorageID == o.storageID, "storage_id", "an instant clone is on its source's storage")
	}
	v.Check(req.Size == 0 || o.size == 0 || req.Size >= o.size, "size", "must be at least the source's size, %d bytes", o.size)
	if err := v.Err(); err != nil {
		return o, err
	}
	if req.Size == 0 {
		req.Size = o.size // 0 for a qcow2 image: read from its header when copied
	}
	return o, nil
}

func fieldError(field, format string, args ...any) error {
	return errkind.Field("volume", field, format, args...)
}

// checkSourceCapabilities refuses, before anything is recorded, a source mode the backends cannot do.
func (s *Service) checkSourceCapabilities(ctx context.Context, req CreateRequest, o origin) error {
	dst, err := s.storages.Get(ctx, req.StorageID)
	if err != nil {
		return err
	}
	b, err := s.backends.VolumeBackend(dst.Type)
	if err != nil {
		return err
	}
	name := b.Info().Name
	switch req.Source.mode() {
	case ModeLinked:
		if _, ok := b.(driver.VolumeLinker); !ok {
			return errkind.New(errkind.Unsupported, "storage", dst.ID.String(), "backend %s cannot make linked volumes", name)
		}
	case ModeInstant:
		if _, ok := b.(driver.VolumeCloner); !ok || !b.Info().Capabilities.InstantClone {
			return errkind.New(errkind.Unsupported, "storage", dst.ID.String(), "backend %s cannot clone instantly (capability instant_clone)", name)
		}
	default:
		if _, ok := b.(driver.VolumeFiller); !ok {
			return errkind.New(errkind.Unsupported, "storage", dst.ID.String(), "backend %s cannot fill volumes from a source", name)
		}
		srcSt, err := s.storages.Get(ctx, o.storageID)
		if err != nil {
			return err
		}
		sb, err := s.backends.VolumeBackend(srcSt.Type)
		if err != nil {
			return err
		}
		if _, ok := sb.(driver.ObjectReader); !ok {
			return errkind.New(errkind.Unsupported, "storage", srcSt.ID.String(), "backend %s cannot be read from", sb.Info().Name)
		}
	}
	return nil
}

// requireBase checks, inside the unit of work that records a linked volume, that its base is still
// available (a delete of the base that began meanwhile wins).
func (s *Service) requireBase(ctx context.Context, o origin) error {
	if o.kind == driver.KindImage {
		img, err := s.images.Get(ctx, o.id)
		if err != nil {
			return err
		}
		return fsm.Require("image", o.id.String(), "be a backing file", img.Status, image.StatusAvailable)
	}
	base, err := s.repo.Get(ctx, o.id)
	if err != nil {
		return err
	}
	return fsm.Require("volume", o.id.String(), "be a backing file", base.Status, StatusAvailable)
}

// room is what a new volume from a source takes on its storage before the guest writes: nothing for a
// linked or instant clone, the source's allocation for a copy.
func room(mode CloneMode, o origin) int64 {
	if mode == ModeCopy {
		return o.allocated
	}
	return 0
}

// fill makes the content of vol, recorded as creating, from its source.
func (s *Service) fill(ctx context.Context, st *storage.Storage, b Backend, vol *Volume, mode CloneMode, o origin) (driver.VolumeInfo, error) {
	pool := st.Pool()
	spec := driver.VolumeSpec{ID: vol.ID, Format: vol.Format, Size: vol.Size}
	ctx, cancel := deadline.Ensure(ctx, s.CopyTimeout)
	defer cancel()
	switch mode {
	case ModeLinked:
		return b.(driver.VolumeLinker).LinkVolume(ctx, pool, driver.ObjectRef{Kind: o.kind, ID: o.id, Format: o.format}, spec)
	case ModeInstant:
		info, err := b.(driver.VolumeCloner).CloneVolume(ctx, pool, driver.VolumeSpec{ID: o.id, Format: o.format}, vol.ID)
		if err != nil || spec.Size <= info.VirtualSize {
			return info, err
		}
		return b.ExtendVolume(ctx, pool, spec) // a larger size was asked for
	}
	// A copy of a volume file on the same storage, in its format and size, is the backend's clone: a
	// reflink where the filesystem shares blocks (xfs, btrfs), a sparse copy otherwise. A linked volume is
	// copied through its guest data instead, so that the copy needs none of its chain.
	if c, ok := b.(driver.VolumeCloner); ok && o.kind == driver.KindVolume && !o.backed && st.ID == o.storageID &&
		vol.Format == o.format && (spec.Size == 0 || spec.Size == o.size) {
		return c.CloneVolume(ctx, pool, driver.VolumeSpec{ID: o.id, Format: o.format}, vol.ID)
	}
	srcSt, err := s.storages.Get(ctx, o.storageID)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	sb, err := s.backends.VolumeBackend(srcSt.Type)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	reader := sb.(driver.ObjectReader)
	data, size, closeAll, err := openGuestData(ctx, reader, srcSt.Pool(), o)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	defer closeAll()
	if spec.Size == 0 {
		spec.Size = size
	}
	if spec.Size < size {
		return driver.VolumeInfo{}, fieldError("size", "must be at least the source's virtual size, %d bytes", size)
	}
	var last atomic.Int64
	progress := func(done int64) {
		if now := time.Now().UnixMilli(); now-last.Load() >= 500 || done == size {
			last.Store(now)
			s.ops.Progress(ctx, done, size)
		}
	}
	return b.(driver.VolumeFiller).FillVolume(ctx, pool, spec, data, size, progress)
}

// openGuestData opens the source's guest data: a raw object as it is, a qcow2 object through a reader
// that follows its backing files on the same storage (a linked volume's base).
func openGuestData(ctx context.Context, r driver.ObjectReader, pool driver.PoolSpec, o origin) (io.ReaderAt, int64, func(), error) {
	var opened []io.Closer
	closeAll := func() {
		for _, c := range opened {
			_ = c.Close()
		}
	}
	f, err := r.OpenObject(ctx, pool, o.kind, o.id)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("open %s %q: %w", o.kind, o.name, err)
	}
	opened = append(opened, f)
	if o.format == FormatRaw {
		return f, f.Size(), closeAll, nil
	}
	qr, err := qcow2.NewReaderWithBacking(f, func(name string) (io.ReaderAt, error) {
		kind, id, ok := objectName(name)
		if !ok {
			return nil, errkind.New(errkind.Invalid, string(o.kind), o.id.String(), "backing file %q is not an object of this storage", name)
		}
		bf, err := r.OpenObject(ctx, pool, kind, id)
		if err != nil {
			return nil, err
		}
		opened = append(opened, bf)
		return bf, nil
	})
	if err != nil {
		closeAll()
		return nil, 0, nil, fmt.Errorf("read %s %q: %w", o.kind, o.name, err)
	}
	return qr, qr.Size(), closeAll, nil
}

// objectName parses the name a backing file is stored under ("volume-<id>", "image-<id>").
func objectName(name string) (driver.ObjectKind, uuid.UUID, bool) {
	for _, k := range []driver.ObjectKind{driver.KindVolume, driver.KindImage} {
		if rest, ok := strings.CutPrefix(name, string(k)+"-"); ok {
			id, err := uuid.Parse(rest)
			return k, id, err == nil
		}
	}
	return "", uuid.Nil, false
}
