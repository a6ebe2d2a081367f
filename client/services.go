package client

import (
	"context"

	"github.com/google/uuid"

	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
)

// Storages is the storage calls of a client with the method set of *storage.Service (Create, Get, Delete),
// so that code written against an interface of those methods runs embedded or remote alike.
type Storages struct{ c *Client }

// Storages returns the client's storage calls.
func (c *Client) Storages() Storages { return Storages{c} }

// Create creates a storage.
func (s Storages) Create(ctx context.Context, req storage.CreateRequest) (*storage.Storage, error) {
	return s.c.CreateStorage(ctx, req)
}

// Get returns a storage.
func (s Storages) Get(ctx context.Context, id uuid.UUID) (*storage.Storage, error) {
	return s.c.GetStorage(ctx, id)
}

// Delete deletes a storage.
func (s Storages) Delete(ctx context.Context, id uuid.UUID) error { return s.c.DeleteStorage(ctx, id) }

// Volumes is the volume calls of a client with the method set of *volume.Service (Create, Get, Extend,
// Delete, CreateSnapshot, RevertSnapshot).
type Volumes struct{ c *Client }

// Volumes returns the client's volume calls.
func (c *Client) Volumes() Volumes { return Volumes{c} }

// Create creates a volume, blank or from a source.
func (v Volumes) Create(ctx context.Context, req volume.CreateRequest) (*volume.Volume, error) {
	return v.c.CreateVolume(ctx, req)
}

// Get returns a volume.
func (v Volumes) Get(ctx context.Context, id uuid.UUID) (*volume.Volume, error) {
	return v.c.GetVolume(ctx, id)
}

// Extend grows a volume.
func (v Volumes) Extend(ctx context.Context, id uuid.UUID, size int64) (*volume.Volume, error) {
	return v.c.ExtendVolume(ctx, id, size)
}

// Delete deletes a volume that has no snapshots.
func (v Volumes) Delete(ctx context.Context, id uuid.UUID) error {
	return v.c.DeleteVolume(ctx, id, false)
}

// CreateSnapshot takes a snapshot of a volume.
func (v Volumes) CreateSnapshot(ctx context.Context, id uuid.UUID, req volume.SnapshotRequest) (*volume.Snapshot, error) {
	return v.c.CreateSnapshot(ctx, id, req)
}

// RevertSnapshot reverts a snapshot's volume to it.
func (v Volumes) RevertSnapshot(ctx context.Context, id uuid.UUID) (*volume.Volume, error) {
	return v.c.RevertSnapshot(ctx, id)
}
