package client

import (
	"context"
	"io"
	"strconv"

	"github.com/google/uuid"

	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// The views below give the client's calls the method sets of the SDK's services (*storage.Service,
// *volume.Service, *image.Service, *vm.Service), so that code written against an interface of those methods
// runs embedded or remote alike. Their errors match the same kinds.

// Storages is the storage calls of a client with the method set of *storage.Service (Create, CreateAsync,
// Get, List, Edit, Delete, DeleteAsync).
type Storages struct{ c *Client }

// Storages returns the client's storage calls.
func (c *Client) Storages() Storages { return Storages{c} }

// Create creates a storage.
func (s Storages) Create(ctx context.Context, req storage.CreateRequest) (*storage.Storage, error) {
	return s.c.CreateStorage(ctx, req)
}

// CreateAsync starts a storage create as an operation and returns it at once.
func (s Storages) CreateAsync(ctx context.Context, req storage.CreateRequest) (*Operation, error) {
	return s.c.CreateStorageAsync(ctx, req)
}

// Get returns a storage.
func (s Storages) Get(ctx context.Context, id uuid.UUID) (*storage.Storage, error) {
	return s.c.GetStorage(ctx, id)
}

// List returns one page of storages.
func (s Storages) List(ctx context.Context, opts storage.ListOptions) (storage.Page, error) {
	p, err := listPage[*storage.Storage](ctx, s.c, "/api/v1/storages",
		query("status", string(opts.Status), "type", string(opts.Type), "name", opts.Name), opts.Limit, opts.Cursor)
	if err != nil {
		return storage.Page{}, err
	}
	return storage.Page{Items: p.Items, NextCursor: p.NextCursor}, nil
}

// Edit renames or describes a storage.
func (s Storages) Edit(ctx context.Context, id uuid.UUID, req storage.EditRequest) (*storage.Storage, error) {
	return s.c.EditStorage(ctx, id, req)
}

// Delete deletes a storage.
func (s Storages) Delete(ctx context.Context, id uuid.UUID) error { return s.c.DeleteStorage(ctx, id) }

// DeleteAsync starts a storage delete as an operation and returns it at once.
func (s Storages) DeleteAsync(ctx context.Context, id uuid.UUID) (*Operation, error) {
	return s.c.DeleteStorageAsync(ctx, id)
}

// Volumes is the volume calls of a client with the method set of *volume.Service (Create, CreateAsync, Get,
// List, Edit, Extend, ExtendAsync, Delete, DeleteWithSnapshots, DeleteAsync, CreateSnapshot, Snapshots,
// Snapshot, DeleteSnapshot, RevertSnapshot).
type Volumes struct{ c *Client }

// Volumes returns the client's volume calls.
func (c *Client) Volumes() Volumes { return Volumes{c} }

// Create creates a volume, blank or from a source.
func (v Volumes) Create(ctx context.Context, req volume.CreateRequest) (*volume.Volume, error) {
	return v.c.CreateVolume(ctx, req)
}

// CreateAsync starts a volume create as an operation and returns it at once.
func (v Volumes) CreateAsync(ctx context.Context, req volume.CreateRequest) (*Operation, error) {
	return v.c.CreateVolumeAsync(ctx, req)
}

// Get returns a volume.
func (v Volumes) Get(ctx context.Context, id uuid.UUID) (*volume.Volume, error) {
	return v.c.GetVolume(ctx, id)
}

// List returns one page of volumes.
func (v Volumes) List(ctx context.Context, opts volume.ListOptions) (volume.Page, error) {
	attached := ""
	if opts.Attached != nil {
		attached = strconv.FormatBool(*opts.Attached)
	}
	p, err := listPage[*volume.Volume](ctx, v.c, "/api/v1/volumes",
		query("storage_id", idParam(opts.StorageID), "status", string(opts.Status), "name", opts.Name, "attached", attached),
		opts.Limit, opts.Cursor)
	if err != nil {
		return volume.Page{}, err
	}
	return volume.Page{Items: p.Items, NextCursor: p.NextCursor}, nil
}

// Edit changes a volume's metadata.
func (v Volumes) Edit(ctx context.Context, id uuid.UUID, req volume.EditRequest) (*volume.Volume, error) {
	return v.c.EditVolume(ctx, id, req)
}

// Extend grows a volume.
func (v Volumes) Extend(ctx context.Context, id uuid.UUID, size int64) (*volume.Volume, error) {
	return v.c.ExtendVolume(ctx, id, size)
}

// ExtendAsync starts a volume extend as an operation and returns it at once.
func (v Volumes) ExtendAsync(ctx context.Context, id uuid.UUID, size int64) (*Operation, error) {
	return v.c.ExtendVolumeAsync(ctx, id, size)
}

// Delete deletes a volume that has no snapshots.
func (v Volumes) Delete(ctx context.Context, id uuid.UUID) error {
	return v.c.DeleteVolume(ctx, id, false)
}

// DeleteWithSnapshots deletes a volume and its snapshots.
func (v Volumes) DeleteWithSnapshots(ctx context.Context, id uuid.UUID) error {
	return v.c.DeleteVolume(ctx, id, true)
}

// DeleteAsync starts a volume delete as an operation and returns it at once.
func (v Volumes) DeleteAsync(ctx context.Context, id uuid.UUID) (*Operation, error) {
	return v.c.DeleteVolumeAsync(ctx, id)
}

// CreateSnapshot takes a snapshot of a volume.
func (v Volumes) CreateSnapshot(ctx context.Context, id uuid.UUID, req volume.SnapshotRequest) (*volume.Snapshot, error) {
	return v.c.CreateSnapshot(ctx, id, req)
}

// Snapshots returns a volume's snapshots, oldest first.
func (v Volumes) Snapshots(ctx context.Context, volumeID uuid.UUID) ([]*volume.Snapshot, error) {
	return v.c.ListSnapshots(ctx, volumeID)
}

// Snapshot returns a snapshot.
func (v Volumes) Snapshot(ctx context.Context, id uuid.UUID) (*volume.Snapshot, error) {
	return v.c.GetSnapshot(ctx, id)
}

// DeleteSnapshot deletes a snapshot.
func (v Volumes) DeleteSnapshot(ctx context.Context, id uuid.UUID) error {
	return v.c.DeleteSnapshot(ctx, id)
}

// RevertSnapshot reverts a snapshot's volume to it.
func (v Volumes) RevertSnapshot(ctx context.Context, id uuid.UUID) (*volume.Volume, error) {
	return v.c.RevertSnapshot(ctx, id)
}

// Images is the image calls of a client with the method set of *image.Service (Create, Import,
// ImportAsync, Get, List, Edit, Delete, DeleteAsync).
type Images struct{ c *Client }

// Images returns the client's image calls.
func (c *Client) Images() Images { return Images{c} }

// Create streams content into a storage as a new image. Its length is req.ContentLength when set (sent as
// Content-Length), else unknown (the body is sent chunked).
func (i Images) Create(ctx context.Context, req image.CreateRequest, content io.Reader) (*image.Image, error) {
	size := int64(-1)
	if req.ContentLength > 0 {
		size = req.ContentLength
	}
	return i.c.UploadImage(ctx, req, content, size, nil)
}

// Import downloads an image from a URL into a storage.
func (i Images) Import(ctx context.Context, req image.ImportRequest) (*image.Image, error) {
	return i.c.ImportImage(ctx, req)
}

// ImportAsync starts an image import as an operation and returns it at once.
func (i Images) ImportAsync(ctx context.Context, req image.ImportRequest) (*Operation, error) {
	return i.c.ImportImageAsync(ctx, req)
}

// Get returns an image.
func (i Images) Get(ctx context.Context, id uuid.UUID) (*image.Image, error) {
	return i.c.GetImage(ctx, id)
}

// List returns one page of images.
func (i Images) List(ctx context.Context, opts image.ListOptions) (image.Page, error) {
	p, err := listPage[*image.Image](ctx, i.c, "/api/v1/images",
		query("storage_id", idParam(opts.StorageID), "status", string(opts.Status), "name", opts.Name), opts.Limit, opts.Cursor)
	if err != nil {
		return image.Page{}, err
	}
	return image.Page{Items: p.Items, NextCursor: p.NextCursor}, nil
}

// Edit renames or describes an image.
func (i Images) Edit(ctx context.Context, id uuid.UUID, req image.EditRequest) (*image.Image, error) {
	return i.c.EditImage(ctx, id, req)
}

// Delete deletes an image.
func (i Images) Delete(ctx context.Context, id uuid.UUID) error { return i.c.DeleteImage(ctx, id) }

// DeleteAsync starts an image delete as an operation and returns it at once.
func (i Images) DeleteAsync(ctx context.Context, id uuid.UUID) (*Operation, error) {
	return i.c.DeleteImageAsync(ctx, id)
}

// VMs is the VM calls of a client with the method set of *vm.Service (Create, CreateAsync, Get, List, Edit,
// Delete, DeleteAsync, Start, StartAsync, Stop, StopAsync, Reboot, Reset, AttachVolume, DetachVolume,
// ConsoleLog, Console, SerialConsole, Host, Networks).
type VMs struct{ c *Client }

// VMs returns the client's VM calls.
func (c *Client) VMs() VMs { return VMs{c} }

// Create defines a VM.
func (v VMs) Create(ctx context.Context, req vm.CreateRequest) (*vm.VM, error) {
	return v.c.CreateVM(ctx, req)
}

// CreateAsync starts a VM create as an operation and returns it at once.
func (v VMs) CreateAsync(ctx context.Context, req vm.CreateRequest) (*Operation, error) {
	return v.c.CreateVMAsync(ctx, req)
}

// Get returns a VM.
func (v VMs) Get(ctx context.Context, id uuid.UUID) (*vm.VM, error) { return v.c.GetVM(ctx, id) }

// List returns one page of VMs.
func (v VMs) List(ctx context.Context, opts vm.ListOptions) (vm.Page, error) {
	p, err := listPage[*vm.VM](ctx, v.c, "/api/v1/vms",
		query("status", string(opts.Status), "power_state", string(opts.PowerState), "name", opts.Name), opts.Limit, opts.Cursor)
	if err != nil {
		return vm.Page{}, err
	}
	return vm.Page{Items: p.Items, NextCursor: p.NextCursor}, nil
}

// Edit changes a stopped VM.
func (v VMs) Edit(ctx context.Context, id uuid.UUID, req vm.EditRequest) (*vm.VM, error) {
	return v.c.EditVM(ctx, id, req)
}

// Delete deletes a stopped VM.
func (v VMs) Delete(ctx context.Context, id uuid.UUID, opts vm.DeleteOptions) error {
	return v.c.DeleteVM(ctx, id, opts)
}

// DeleteAsync starts a VM delete as an operation and returns it at once.
func (v VMs) DeleteAsync(ctx context.Context, id uuid.UUID, opts vm.DeleteOptions) (*Operation, error) {
	return v.c.DeleteVMAsync(ctx, id, opts)
}

// Start boots a VM.
func (v VMs) Start(ctx context.Context, id uuid.UUID) (*vm.VM, error) { return v.c.StartVM(ctx, id) }

// StartAsync starts a VM start as an operation and returns it at once.
func (v VMs) StartAsync(ctx context.Context, id uuid.UUID) (*Operation, error) {
	return v.c.StartVMAsync(ctx, id)
}

// Stop stops a VM.
func (v VMs) Stop(ctx context.Context, id uuid.UUID, opts vm.StopOptions) (*vm.VM, error) {
	return v.c.StopVM(ctx, id, opts)
}

// StopAsync starts a VM stop as an operation and returns it at once.
func (v VMs) StopAsync(ctx context.Context, id uuid.UUID, opts vm.StopOptions) (*Operation, error) {
	return v.c.StopVMAsync(ctx, id, opts)
}

// Reboot asks a running VM's guest to reboot.
func (v VMs) Reboot(ctx context.Context, id uuid.UUID) (*vm.VM, error) { return v.c.RebootVM(ctx, id) }

// Reset resets a running VM at once.
func (v VMs) Reset(ctx context.Context, id uuid.UUID) (*vm.VM, error) { return v.c.ResetVM(ctx, id) }

// AttachVolume attaches a volume to a stopped VM.
func (v VMs) AttachVolume(ctx context.Context, id, volumeID uuid.UUID, bus string) (*vm.VM, error) {
	return v.c.AttachVolume(ctx, id, volumeID, bus)
}

// DetachVolume detaches a volume from a stopped VM.
func (v VMs) DetachVolume(ctx context.Context, id, volumeID uuid.UUID) (*vm.VM, error) {
	return v.c.DetachVolume(ctx, id, volumeID)
}

// ConsoleLog returns the end of a VM's serial console output.
func (v VMs) ConsoleLog(ctx context.Context, id uuid.UUID, max int64) ([]byte, error) {
	return v.c.ConsoleLog(ctx, id, max)
}

// Console returns where a running VM's graphical console listens.
func (v VMs) Console(ctx context.Context, id uuid.UUID) (vm.Console, error) {
	return v.c.Console(ctx, id)
}

// SerialConsole connects to a running VM's first serial console.
func (v VMs) SerialConsole(ctx context.Context, id uuid.UUID) (io.ReadWriteCloser, error) {
	return v.c.SerialConsole(ctx, id)
}

// Host reports what the hypervisor's host offers to VMs.
func (v VMs) Host(ctx context.Context) (Host, error) {
	h, err := v.c.Host(ctx)
	if err != nil {
		return Host{}, err
	}
	return *h, nil
}

// Networks lists what network interfaces can be connected to.
func (v VMs) Networks(ctx context.Context) ([]vm.Network, error) { return v.c.Networks(ctx) }
