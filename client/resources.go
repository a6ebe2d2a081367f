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
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
)

// page is the shape of every list answer.
type page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func idPath(kind string, id uuid.UUID) string { return "/api/v1/" + kind + "/" + id.String() }

// CreateStorage creates a storage (storage.Service.Create).
func (c *Client) CreateStorage(ctx context.Context, req storage.CreateRequest) (*storage.Storage, error) {
	var out storage.Storage
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/storages", body: req, idem: true}, &out)
	return &out, err
}

// GetStorage returns a storage.
func (c *Client) GetStorage(ctx context.Context, id uuid.UUID) (*storage.Storage, error) {
	var out storage.Storage
	_, err := c.do(ctx, request{method: http.MethodGet, path: idPath("storages", id)}, &out)
	return &out, err
}

// ListStorages returns every storage, following the pages.
func (c *Client) ListStorages(ctx context.Context) ([]*storage.Storage, error) {
	return listAll[*storage.Storage](ctx, c, "/api/v1/storages")
}

// DeleteStorage deletes a storage that holds no volumes or images.
func (c *Client) DeleteStorage(ctx context.Context, id uuid.UUID) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: idPath("storages", id)}, nil)
	return err
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
	b := volumeBodyOf(req)
	var out volume.Volume
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/volumes", body: b, idem: true}, &out)
	return &out, err
}

// GetVolume returns a volume with the VMs that use it.
func (c *Client) GetVolume(ctx context.Context, id uuid.UUID) (*volume.Volume, error) {
	var out volume.Volume
	_, err := c.do(ctx, request{method: http.MethodGet, path: idPath("volumes", id)}, &out)
	return &out, err
}

// ExtendVolume grows a volume to size bytes.
func (c *Client) ExtendVolume(ctx context.Context, id uuid.UUID, size int64) (*volume.Volume, error) {
	var out volume.Volume
	_, err := c.do(ctx, request{method: http.MethodPost, path: idPath("volumes", id) + "/extend",
		body: map[string]int64{"size": size}, idem: true}, &out)
	return &out, err
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
	var out volume.Snapshot
	_, err := c.do(ctx, request{method: http.MethodPost, path: idPath("volumes", volumeID) + "/snapshots", body: req, idem: true}, &out)
	return &out, err
}

// RevertSnapshot gives a snapshot's volume the snapshot's content.
func (c *Client) RevertSnapshot(ctx context.Context, id uuid.UUID) (*volume.Volume, error) {
	var out volume.Volume
	_, err := c.do(ctx, request{method: http.MethodPost, path: idPath("snapshots", id) + "/revert", idem: true}, &out)
	return &out, err
}

// UploadImage streams r (size bytes, -1 when unknown) into a storage as a new image. progress, when not
// nil, is called with the bytes sent so far. An upload is not retried: its body can be read only once.
func (c *Client) UploadImage(ctx context.Context, req image.CreateRequest, r io.Reader, size int64, progress func(sent int64)) (*image.Image, error) {
	q := url.Values{"storage_id": {req.StorageID.String()}, "name": {req.Name}}
	if req.Description != "" {
		q.Set("description", req.Description)
	}
	body := r
	if progress != nil {
		body = &progressReader{r: r, fn: progress}
	}
	var out image.Image
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/images?" + q.Encode(), body: body,
		ctype: "application/octet-stream", size: size, noRetry: true}, &out)
	return &out, err
}

// ImportImage downloads an image from a URL into a storage (image.Service.Import).
func (c *Client) ImportImage(ctx context.Context, req image.ImportRequest) (*image.Image, error) {
	var out image.Image
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/images", body: req, idem: true}, &out)
	return &out, err
}

// GetImage returns an image.
func (c *Client) GetImage(ctx context.Context, id uuid.UUID) (*image.Image, error) {
	var out image.Image
	_, err := c.do(ctx, request{method: http.MethodGet, path: idPath("images", id)}, &out)
	return &out, err
}

// DeleteImage deletes an image no VM or linked volume uses.
func (c *Client) DeleteImage(ctx context.Context, id uuid.UUID) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: idPath("images", id)}, nil)
	return err
}

// Operation is an operation as the server reports it.
type Operation = operation.Operation

// WaitOperation waits, for at most timeout (the server caps it), until an operation ends, and returns it.
func (c *Client) WaitOperation(ctx context.Context, id uuid.UUID, timeout int) (*Operation, error) {
	var out Operation
	_, err := c.do(ctx, request{method: http.MethodGet, path: idPath("operations", id) + "/wait?timeout=" + strconv.Itoa(timeout)}, &out)
	return &out, err
}

// CreateVolumeAsync starts a volume create as an operation (Prefer: respond-async) and returns it at once.
func (c *Client) CreateVolumeAsync(ctx context.Context, req volume.CreateRequest) (*Operation, error) {
	b := volumeBodyOf(req)
	var out Operation
	res, err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/volumes", body: b, idem: true,
		header: http.Header{"Prefer": {"respond-async"}}}, &out)
	if err == nil && res.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("client: %w: the server ran the create at once (status %d)", errBadAnswer, res.StatusCode)
	}
	return &out, err
}

// listAll follows the pages of a list.
func listAll[T any](ctx context.Context, c *Client, path string) ([]T, error) {
	var all []T
	cursor := ""
	for {
		p := path + "?limit=1000"
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		var pg page[T]
		if _, err := c.do(ctx, request{method: http.MethodGet, path: p}, &pg); err != nil {
			return nil, err
		}
		all = append(all, pg.Items...)
		if pg.NextCursor == "" {
			return all, nil
		}
		cursor = pg.NextCursor
	}
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
