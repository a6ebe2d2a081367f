package fake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"sync"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
)

func init() {
	driver.RegisterStorage("fake", func(driver.Config) (driver.StorageBackend, error) { return NewStorage(1 << 40), nil })
}

// Object is a volume or image kept by the fake storage backend.
type Object struct {
	Kind   driver.ObjectKind
	Format driver.VolumeFormat
	Size   int64
	Image  driver.ImageInfo
}

// Storage is an in-memory storage backend. Each pool has Capacity bytes; objects take their size.
type Storage struct {
	Faults
	Capacity int64
	// Caps, when set, replaces the capabilities Info reports (both volume formats and Extend), and the
	// backend keeps to it: CreateVolume refuses a qcow2 or raw volume whose format is not in
	// Caps.VolumeFormats, and ExtendVolume refuses every volume when Caps.Extend is false, both with
	// errkind.Unsupported.
	Caps *driver.StorageCapabilities

	mu      sync.Mutex
	pools   map[uuid.UUID]bool
	objects map[uuid.UUID]map[uuid.UUID]*Object
	down    map[uuid.UUID]bool
}

var _ driver.StorageBackend = (*Storage)(nil)

// NewStorage returns a backend whose pools each hold capacity bytes.
func NewStorage(capacity int64) *Storage {
	return &Storage{Capacity: capacity, pools: map[uuid.UUID]bool{}, objects: map[uuid.UUID]map[uuid.UUID]*Object{},
		down: map[uuid.UUID]bool{}}
}

// Info names the backend.
func (s *Storage) Info() driver.StorageInfo {
	return driver.StorageInfo{Name: "fake", Capabilities: s.caps()}
}

func (s *Storage) caps() driver.StorageCapabilities {
	if s.Caps != nil {
		c := *s.Caps
		c.VolumeFormats = append([]driver.VolumeFormat(nil), c.VolumeFormats...)
		return c
	}
	return driver.StorageCapabilities{VolumeFormats: []driver.VolumeFormat{driver.FormatQCOW2, driver.FormatRaw}, Extend: true}
}

// Close counts the call (FailNext("Close", ...) makes it fail) and keeps everything: the fake stays usable,
// like a backend that connects again.
func (s *Storage) Close() error { return s.check("Close") }

// SetDown makes a pool unreachable (Status fails with ErrUnavailable) or reachable again.
func (s *Storage) SetDown(pool uuid.UUID, down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down[pool] = down
}

// Object returns a copy of an object, or nil.
func (s *Storage) Object(pool, id uuid.UUID) *Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.objects[pool][id]; o != nil {
		c := *o
		return &c
	}
	return nil
}

// RemoveObject deletes an object behind the services' back (a file removed by hand).
func (s *Storage) RemoveObject(pool, id uuid.UUID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.objects[pool], id)
}

// Objects counts the objects of a pool.
func (s *Storage) Objects(pool uuid.UUID) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.objects[pool])
}

func (s *Storage) begin(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.check(op)
}

func (s *Storage) used(pool uuid.UUID) int64 {
	var n int64
	for _, o := range s.objects[pool] {
		n += o.Size
	}
	return n
}

func (s *Storage) state(pool uuid.UUID) driver.PoolState {
	return driver.PoolState{Capacity: s.Capacity, Available: s.Capacity - s.used(pool)}
}

// Prepare registers the pool.
func (s *Storage) Prepare(ctx context.Context, pool driver.PoolSpec) (driver.PoolState, error) {
	if err := s.begin(ctx, "Prepare"); err != nil {
		return driver.PoolState{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pools[pool.ID] = true
	if s.objects[pool.ID] == nil {
		s.objects[pool.ID] = map[uuid.UUID]*Object{}
	}
	return s.state(pool.ID), nil
}

// Teardown forgets the pool; it refuses while objects remain.
func (s *Storage) Teardown(ctx context.Context, pool driver.PoolSpec) error {
	if err := s.begin(ctx, "Teardown"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.objects[pool.ID]) > 0 {
		return errkind.New(errkind.InUse, "fake", pool.ID.String(), "pool still holds %d objects", len(s.objects[pool.ID]))
	}
	delete(s.pools, pool.ID)
	delete(s.objects, pool.ID)
	return nil
}

// Status reports capacity, or ErrUnavailable when the pool is down.
func (s *Storage) Status(ctx context.Context, pool driver.PoolSpec) (driver.PoolState, error) {
	if err := s.begin(ctx, "Status"); err != nil {
		return driver.PoolState{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down[pool.ID] {
		return driver.PoolState{}, errkind.New(errkind.Unavailable, "fake", pool.ID.String(), "pool is down")
	}
	if !s.pools[pool.ID] {
		return driver.PoolState{}, errkind.New(errkind.NotFound, "fake", pool.ID.String(), "pool not prepared")
	}
	return s.state(pool.ID), nil
}

func (s *Storage) pool(id uuid.UUID) (map[uuid.UUID]*Object, error) {
	if s.down[id] {
		return nil, errkind.New(errkind.Unavailable, "fake", id.String(), "pool is down")
	}
	objs, ok := s.objects[id]
	if !ok {
		return nil, errkind.New(errkind.NotFound, "fake", id.String(), "pool not prepared")
	}
	return objs, nil
}

// CreateVolume adds a volume.
func (s *Storage) CreateVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	if err := s.begin(ctx, "CreateVolume"); err != nil {
		return driver.VolumeInfo{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	objs, err := s.pool(pool.ID)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	if s.Caps != nil && (vol.Format == driver.FormatQCOW2 || vol.Format == driver.FormatRaw) && !slices.Contains(s.Caps.VolumeFormats, vol.Format) {
		return driver.VolumeInfo{}, errkind.New(errkind.Unsupported, "fake", vol.ID.String(), "format %s not supported", vol.Format)
	}
	if objs[vol.ID] != nil {
		return driver.VolumeInfo{}, errkind.New(errkind.AlreadyExists, "fake", vol.ID.String(), "volume exists")
	}
	objs[vol.ID] = &Object{Kind: driver.KindVolume, Format: vol.Format, Size: vol.Size}
	return driver.VolumeInfo{Format: vol.Format, VirtualSize: vol.Size}, nil
}

// ExtendVolume grows a volume.
func (s *Storage) ExtendVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	id, newSize := vol.ID, vol.Size
	if err := s.begin(ctx, "ExtendVolume"); err != nil {
		return driver.VolumeInfo{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	objs, err := s.pool(pool.ID)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	if s.Caps != nil && !s.Caps.Extend {
		return driver.VolumeInfo{}, errkind.New(errkind.Unsupported, "fake", id.String(), "volumes cannot be extended")
	}
	o := objs[id]
	if o == nil || o.Kind != driver.KindVolume {
		return driver.VolumeInfo{}, errkind.New(errkind.NotFound, "fake", id.String(), "no such volume")
	}
	if newSize <= o.Size {
		return driver.VolumeInfo{}, errkind.New(errkind.Invalid, "fake", id.String(), "cannot shrink")
	}
	o.Size = newSize
	return driver.VolumeInfo{Format: o.Format, VirtualSize: newSize}, nil
}

// DeleteVolume removes a volume; a missing one is fine.
func (s *Storage) DeleteVolume(ctx context.Context, pool driver.PoolSpec, id uuid.UUID) error {
	return s.deleteObject(ctx, "DeleteVolume", pool.ID, id)
}

// DeleteImage removes an image; a missing one is fine.
func (s *Storage) DeleteImage(ctx context.Context, pool driver.PoolSpec, id uuid.UUID) error {
	return s.deleteObject(ctx, "DeleteImage", pool.ID, id)
}

func (s *Storage) deleteObject(ctx context.Context, op string, pool, id uuid.UUID) error {
	if err := s.begin(ctx, op); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	objs, err := s.pool(pool)
	if err != nil {
		return err
	}
	delete(objs, id)
	return nil
}

// InspectVolume reports a volume.
func (s *Storage) InspectVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	o, err := s.inspect(ctx, "InspectVolume", pool.ID, vol.ID, driver.KindVolume)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	return driver.VolumeInfo{Format: o.Format, VirtualSize: o.Size, Allocated: o.Size / 2}, nil
}

// InspectImage reports an image.
func (s *Storage) InspectImage(ctx context.Context, pool driver.PoolSpec, id uuid.UUID) (driver.ImageInfo, error) {
	o, err := s.inspect(ctx, "InspectImage", pool.ID, id, driver.KindImage)
	if err != nil {
		return driver.ImageInfo{}, err
	}
	return driver.ImageInfo{Size: o.Size, Format: o.Image.Format}, nil
}

func (s *Storage) inspect(ctx context.Context, op string, pool, id uuid.UUID, kind driver.ObjectKind) (Object, error) {
	if err := s.begin(ctx, op); err != nil {
		return Object{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	objs, err := s.pool(pool)
	if err != nil {
		return Object{}, err
	}
	o := objs[id]
	if o == nil || o.Kind != kind {
		return Object{}, errkind.New(errkind.NotFound, "fake", id.String(), "no such %s", kind)
	}
	return *o, nil
}

// WriteImage reads the whole stream, enforcing MaxSize, and keeps its size, hash and detected format
// (qcow2 by magic, iso by "CD001" at 32769, else raw).
func (s *Storage) WriteImage(ctx context.Context, pool driver.PoolSpec, img driver.ImageWrite, r io.Reader) (driver.ImageInfo, error) {
	if err := s.begin(ctx, "WriteImage"); err != nil {
		return driver.ImageInfo{}, err
	}
	limit := img.MaxSize
	if limit <= 0 {
		limit = 1 << 62
	}
	h := sha256.New()
	head := &headBuffer{max: 40 << 10}
	n, err := io.Copy(io.MultiWriter(h, head), &ctxReader{ctx: ctx, r: io.LimitReader(r, limit+1)})
	if err != nil {
		return driver.ImageInfo{}, err
	}
	if n > limit {
		return driver.ImageInfo{}, errkind.New(errkind.TooLarge, "fake", img.ID.String(), "image is larger than %d bytes", limit)
	}
	info := driver.ImageInfo{Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Format: detect(head.b)}
	s.mu.Lock()
	defer s.mu.Unlock()
	objs, err := s.pool(pool.ID)
	if err != nil {
		return driver.ImageInfo{}, err
	}
	if n > s.Capacity-s.used(pool.ID) {
		return driver.ImageInfo{}, errkind.New(errkind.TooLarge, "fake", pool.ID.String(), "storage is full")
	}
	objs[img.ID] = &Object{Kind: driver.KindImage, Size: n, Image: info}
	return info, nil
}

// DiskSource reports a file path named by id.
func (s *Storage) DiskSource(pool driver.PoolSpec, kind driver.ObjectKind, id uuid.UUID) driver.DiskSource {
	return driver.DiskSource{Type: "file", Path: "/fake/" + pool.ID.String() + "/" + string(kind) + "-" + id.String()}
}

type headBuffer struct {
	b   []byte
	max int
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := h.max - len(h.b); room > 0 {
		h.b = append(h.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func detect(head []byte) driver.ImageFormat {
	switch {
	case len(head) >= 4 && string(head[:4]) == "QFI\xfb":
		return driver.ImageQCOW2
	case len(head) >= 32774 && string(head[32769:32774]) == "CD001":
		return driver.ImageISO
	}
	return driver.ImageRaw
}

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

// ErrInjected is a convenient error for FailNext.
var ErrInjected = errors.New("injected failure")

// ConfigSchema describes the fake's configuration: any JSON object.
func (s *Storage) ConfigSchema() json.RawMessage {
	return json.RawMessage(`{"type":"object","description":"Any JSON object; equal objects are one location.","properties":{},"additionalProperties":true}`)
}

// CheckConfig accepts any JSON object (FailNext("CheckConfig", ...) makes it fail). The normalized
// configuration is the object in compact form, and the location key is "fake:" followed by it, so two
// storages with equal configurations are refused as one location, as real backends refuse two storages in
// one directory.
func (s *Storage) CheckConfig(ctx context.Context, config json.RawMessage) (driver.CheckedConfig, error) {
	if err := s.check("CheckConfig"); err != nil {
		return driver.CheckedConfig{}, err
	}
	var obj map[string]any
	if err := driver.DecodeConfig(config, &obj); err != nil {
		return driver.CheckedConfig{}, err
	}
	norm := driver.MustJSON(obj) // map keys sorted: one form per object
	return driver.CheckedConfig{Config: norm, Location: "fake:" + string(norm)}, ctx.Err()
}
