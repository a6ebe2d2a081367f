package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/google/uuid"

	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
)

// page is the shape of every list answer.
type page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func idPath(kind string, id uuid.UUID) string { return "/api/v1/" + kind + "/" + id.String() }

// call runs r and decodes its answer into a new T; nil on error.
func call[T any](ctx context.Context, c *Client, r request) (*T, error) {
	var out T
	if _, err := c.do(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateStorage creates a storage (storage.Service.Create).
func (c *Client) CreateStorage(ctx context.Context, req storage.CreateRequest) (*storage.Storage, error) {
	return call[storage.Storage](ctx, c, request{method: http.MethodPost, path: "/api/v1/storages", body: req, idem: true})
}

// CreateStorageAsync starts a storage create as an operation (Prefer: respond-async) and returns it at once;
// follow it with Wait.
func (c *Client) CreateStorageAsync(ctx context.Context, req storage.CreateRequest) (*Operation, error) {
	return c.async(ctx, http.MethodPost, "/api/v1/storages", req)
}

// GetStorage returns a storage.
func (c *Client) GetStorage(ctx context.Context, id uuid.UUID) (*storage.Storage, error) {
	return call[storage.Storage](ctx, c, request{method: http.MethodGet, path: idPath("storages", id)})
}

// ListStorages returns every storage, following the pages.
func (c *Client) ListStorages(ctx context.Context) ([]*storage.Storage, error) {
	return listAll[*storage.Storage](ctx, c, "/api/v1/storages", nil)
}

// EditStorage renames or describes a storage (storage.Service.Edit); nil fields stay as they are.
func (c *Client) EditStorage(ctx context.Context, id uuid.UUID, req storage.EditRequest) (*storage.Storage, error) {
	return call[storage.Storage](ctx, c, request{method: http.MethodPatch, path: idPath("storages", id), body: req})
}

// DeleteStorage deletes a storage that holds no volumes or images.
func (c *Client) DeleteStorage(ctx context.Context, id uuid.UUID) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: idPath("storages", id)}, nil)
	return err
}

// StorageType is a storage type the server can create (GET /api/v1/storage-types): the type name, its
// backend and what the backend can do, and the JSON Schema of its configuration.
type StorageType struct {
	// Type is the value of storage.CreateRequest.Type.
	Type storage.Type `json:"type"`
	// Backend is the backend's name.
	Backend string `json:"backend"`
	// VolumeFormats are the volume formats the backend creates.
	VolumeFormats []volume.Format `json:"volume_formats"`
	// Extend reports whether volumes can be extended.
	Extend bool `json:"extend"`
	// InstantClone reports whether volume clones share blocks with their source.
	InstantClone bool `json:"instant_clone"`
	// ConfigSchema is the JSON Schema of the configuration (storage.CreateRequest.Config) of this type.
	ConfigSchema map[string]any `json:"config_schema"`
}

// StorageTypes lists the storage types the server can create.
func (c *Client) StorageTypes(ctx context.Context) ([]StorageType, error) {
	p, err := call[page[StorageType]](ctx, c, request{method: http.MethodGet, path: "/api/v1/storage-types"})
	if err != nil {
		return nil, err
	}
	return p.Items, nil
}

// volumeBody is a volume create as the server reads it: fields the SDK request leaves zero are left out.
type volumeBody struct {
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	StorageID   *uuid.UUID     `json:"storage_id,omitempty"`
	Format      volume.Format  `json:"format,omitempty"`
	Size        int64          `json:"size,omitempty"`
	ReadOnly    bool           `json:"read_only,omitempty"`
	Shareable   bool           `json:"shareable,omitempty"`
	Source      *volume.Source `json:"source,omitempty"`
}

// volumeBodyOf is req as the server reads it.
func volumeBodyOf(req volume.CreateRequest) volumeBody {
	b := volumeBody{Name: req.Name, Description: req.Description, Format: req.Format, Size: req.Size,
		ReadOnly: req.ReadOnly, Shareable: req.Shareable, Source: req.Source}
	if req.StorageID != uuid.Nil {
		b.StorageID = &req.StorageID
	}
	return b
}

// CreateVolume creates a volume, blank or from a source (volume.Service.Create).
func (c *Client) CreateVolume(ctx context.Context, req volume.CreateRequest) (*volume.Volume, error) {
	return call[volume.Volume](ctx, c, request{method: http.MethodPost, path: "/api/v1/volumes", body: volumeBodyOf(req), idem: true})
}

// CreateVolumeAsync starts a volume create as an operation (Prefer: respond-async) and returns it at once.
func (c *Client) CreateVolumeAsync(ctx context.Context, req volume.CreateRequest) (*Operation, error) {
	return c.async(ctx, http.MethodPost, "/api/v1/volumes", volumeBodyOf(req))
}

// GetVolume returns a volume with the VMs that use it.
func (c *Client) GetVolume(ctx context.Context, id uuid.UUID) (*volume.Volume, error) {
	return call[volume.Volume](ctx, c, request{method: http.MethodGet, path: idPath("volumes", id)})
}

// ListVolumes returns every volume of a storage (uuid.Nil: of every storage), following the pages.
func (c *Client) ListVolumes(ctx context.Context, storageID uuid.UUID) ([]*volume.Volume, error) {
	var q url.Values
	if storageID != uuid.Nil {
		q = url.Values{"storage_id": {storageID.String()}}
	}
	return listAll[*volume.Volume](ctx, c, "/api/v1/volumes", q)
}

// EditVolume changes a volume's name, description or flags (volume.Service.Edit); nil fields stay as they
// are.
func (c *Client) EditVolume(ctx context.Context, id uuid.UUID, req volume.EditRequest) (*volume.Volume, error) {
	return call[volume.Volume](ctx, c, request{method: http.MethodPatch, path: idPath("volumes", id), body: req})
}

// ExtendVolume grows a volume to size bytes.
func (c *Client) ExtendVolume(ctx context.Context, id uuid.UUID, size int64) (*volume.Volume, error) {
	return call[volume.Volume](ctx, c, request{method: http.MethodPost, path: idPath("volumes", id) + "/extend",
		body: map[string]int64{"size": size}, idem: true})
}

// DeleteVolume deletes a volume no VM uses; with snapshots true, its snapshots too.
func (c *Client) DeleteVolume(ctx context.Context, id uuid.UUID, snapshots bool) error {
	path := idPath("volumes", id)
	if snapshots {
		path += "?delete_snapshots=true"
	}
	_, err := c.do(ctx, request{method: http.MethodDelete, path: path}, nil)
	return err
}

// CreateSnapshot takes a snapshot of a volume.
func (c *Client) CreateSnapshot(ctx context.Context, volumeID uuid.UUID, req volume.SnapshotRequest) (*volume.Snapshot, error) {
	return call[volume.Snapshot](ctx, c, request{method: http.MethodPost, path: idPath("volumes", volumeID) + "/snapshots",
		body: req, idem: true})
}

// ListSnapshots returns a volume's snapshots, oldest first.
func (c *Client) ListSnapshots(ctx context.Context, volumeID uuid.UUID) ([]*volume.Snapshot, error) {
	p, err := call[page[*volume.Snapshot]](ctx, c, request{method: http.MethodGet, path: idPath("volumes", volumeID) + "/snapshots"})
	if err != nil {
		return nil, err
	}
	return p.Items, nil
}

// GetSnapshot returns a snapshot.
func (c *Client) GetSnapshot(ctx context.Context, id uuid.UUID) (*volume.Snapshot, error) {
	return call[volume.Snapshot](ctx, c, request{method: http.MethodGet, path: idPath("snapshots", id)})
}

// DeleteSnapshot deletes a snapshot and its file; the volume is unchanged.
func (c *Client) DeleteSnapshot(ctx context.Context, id uuid.UUID) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: idPath("snapshots", id)}, nil)
	return err
}

// RevertSnapshot gives a snapshot's volume the snapshot's content.
func (c *Client) RevertSnapshot(ctx context.Context, id uuid.UUID) (*volume.Volume, error) {
	return call[volume.Volume](ctx, c, request{method: http.MethodPost, path: idPath("snapshots", id) + "/revert", idem: true})
}

// UploadImage streams r (size bytes, -1 when unknown) into a storage as a new image. progress, when not
// nil, is called with the bytes sent so far. An upload is not retried: its body can be read only once.
//
// There is no UploadImageAsync: the server runs an upload in the process that receives the bytes, so it
// answers when they are in, Prefer: respond-async or not.
func (c *Client) UploadImage(ctx context.Context, req image.CreateRequest, r io.Reader, size int64, progress func(sent int64)) (*image.Image, error) {
	q := url.Values{"storage_id": {req.StorageID.String()}, "name": {req.Name}}
	if req.Description != "" {
		q.Set("description", req.Description)
	}
	body := r
	if progress != nil {
		body = &progressReader{r: r, fn: progress}
	}
	return call[image.Image](ctx, c, request{method: http.MethodPost, path: "/api/v1/images?" + q.Encode(), body: body,
		ctype: "application/octet-stream", size: size, noRetry: true})
}

// ImportImage downloads an image from a URL into a storage (image.Service.Import).
func (c *Client) ImportImage(ctx context.Context, req image.ImportRequest) (*image.Image, error) {
	return call[image.Image](ctx, c, request{method: http.MethodPost, path: "/api/v1/images", body: req, idem: true})
}

// ImportImageAsync starts an image import as an operation (Prefer: respond-async) and returns it at once;
// its progress counts the bytes received.
func (c *Client) ImportImageAsync(ctx context.Context, req image.ImportRequest) (*Operation, error) {
	return c.async(ctx, http.MethodPost, "/api/v1/images", req)
}

// GetImage returns an image.
func (c *Client) GetImage(ctx context.Context, id uuid.UUID) (*image.Image, error) {
	return call[image.Image](ctx, c, request{method: http.MethodGet, path: idPath("images", id)})
}

// ListImages returns every image, following the pages.
func (c *Client) ListImages(ctx context.Context) ([]*image.Image, error) {
	return listAll[*image.Image](ctx, c, "/api/v1/images", nil)
}

// EditImage renames or describes an image (image.Service.Edit); nil fields stay as they are.
func (c *Client) EditImage(ctx context.Context, id uuid.UUID, req image.EditRequest) (*image.Image, error) {
	return call[image.Image](ctx, c, request{method: http.MethodPatch, path: idPath("images", id), body: req})
}

// DeleteImage deletes an image no VM or linked volume uses.
func (c *Client) DeleteImage(ctx context.Context, id uuid.UUID) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: idPath("images", id)}, nil)
	return err
}

// listAll follows the pages of a list filtered by q.
func listAll[T any](ctx context.Context, c *Client, path string, q url.Values) ([]T, error) {
	var all []T
	cursor := ""
	for {
		p, err := listPage[T](ctx, c, path, q, 1000, cursor)
		if err != nil {
			return nil, err
		}
		all = append(all, p.Items...)
		if p.NextCursor == "" {
			return all, nil
		}
		cursor = p.NextCursor
	}
}

// listPage returns one page of a list filtered by q (limit 0: the server's default).
func listPage[T any](ctx context.Context, c *Client, path string, q url.Values, limit int, cursor string) (*page[T], error) {
	v := url.Values{}
	for k, vs := range q {
		v[k] = vs
	}
	if limit != 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		v.Set("cursor", cursor)
	}
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	return call[page[T]](ctx, c, request{method: http.MethodGet, path: path})
}

// query builds list filters from name, value pairs, leaving out empty values.
func query(kv ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if v := kv[i+1]; v != "" {
			q.Set(kv[i], v)
		}
	}
	return q
}

// idParam is an id filter: "" for uuid.Nil (any).
func idParam(id uuid.UUID) string {
	if id == uuid.Nil {
		return ""
	}
	return id.String()
}

// progressReader reports the bytes read through it.
type progressReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if n > 0 {
		p.fn(p.n)
	}
	return n, err
}

// errNotAsync is returned when the server ran a call that was asked to run asynchronously at once.
func errNotAsync(status int) error {
	return fmt.Errorf("client: %w: the server ran the call at once (status %d)", errBadAnswer, status)
}

// DeleteStorageAsync starts a storage delete as an operation (Prefer: respond-async) and returns it at once.
func (c *Client) DeleteStorageAsync(ctx context.Context, id uuid.UUID) (*Operation, error) {
	return c.async(ctx, http.MethodDelete, idPath("storages", id), nil)
}

// ExtendVolumeAsync starts a volume extend as an operation (Prefer: respond-async) and returns it at once.
func (c *Client) ExtendVolumeAsync(ctx context.Context, id uuid.UUID, size int64) (*Operation, error) {
	return c.async(ctx, http.MethodPost, idPath("volumes", id)+"/extend", map[string]int64{"size": size})
}

// DeleteVolumeAsync starts a volume delete as an operation (Prefer: respond-async) and returns it at once.
func (c *Client) DeleteVolumeAsync(ctx context.Context, id uuid.UUID) (*Operation, error) {
	return c.async(ctx, http.MethodDelete, idPath("volumes", id), nil)
}

// DeleteImageAsync starts an image delete as an operation (Prefer: respond-async) and returns it at once.
func (c *Client) DeleteImageAsync(ctx context.Context, id uuid.UUID) (*Operation, error) {
	return c.async(ctx, http.MethodDelete, idPath("images", id), nil)
}
