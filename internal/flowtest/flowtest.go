// Package flowtest is one set of end-to-end flows over storages, volumes, images and VMs, written once
// against small interfaces that both the SDK's services (*storage.Service, *volume.Service, *image.Service,
// *vm.Service) and the remote client's views (client.Storages, client.Volumes, client.Images, client.VMs)
// have. Run them embedded and remote: the same calls must give the same results and the same error kinds.
package flowtest

import (
	"bytes"
	"context"
	"io"
	"iter"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// Storages is what the flows need of storages.
type Storages interface {
	Create(ctx context.Context, req storage.CreateRequest) (*storage.Storage, error)
	Get(ctx context.Context, id uuid.UUID) (*storage.Storage, error)
	List(ctx context.Context, opts storage.ListOptions) (storage.Page, error)
	Edit(ctx context.Context, id uuid.UUID, req storage.EditRequest) (*storage.Storage, error)
	Delete(ctx context.Context, id uuid.UUID) error
}

// Volumes is what the flows need of volumes and their snapshots.
type Volumes interface {
	Create(ctx context.Context, req volume.CreateRequest) (*volume.Volume, error)
	CreateAsync(ctx context.Context, req volume.CreateRequest) (*operation.Operation, error)
	Get(ctx context.Context, id uuid.UUID) (*volume.Volume, error)
	List(ctx context.Context, opts volume.ListOptions) (volume.Page, error)
	Edit(ctx context.Context, id uuid.UUID, req volume.EditRequest) (*volume.Volume, error)
	Extend(ctx context.Context, id uuid.UUID, size int64) (*volume.Volume, error)
	Delete(ctx context.Context, id uuid.UUID) error
	DeleteWithSnapshots(ctx context.Context, id uuid.UUID) error
	CreateSnapshot(ctx context.Context, id uuid.UUID, req volume.SnapshotRequest) (*volume.Snapshot, error)
	Snapshots(ctx context.Context, volumeID uuid.UUID) ([]*volume.Snapshot, error)
	DeleteSnapshot(ctx context.Context, id uuid.UUID) error
	RevertSnapshot(ctx context.Context, id uuid.UUID) (*volume.Volume, error)
}

// Images is what the flows need of images.
type Images interface {
	Create(ctx context.Context, req image.CreateRequest, content io.Reader) (*image.Image, error)
	Get(ctx context.Context, id uuid.UUID) (*image.Image, error)
	List(ctx context.Context, opts image.ListOptions) (image.Page, error)
	Edit(ctx context.Context, id uuid.UUID, req image.EditRequest) (*image.Image, error)
	Delete(ctx context.Context, id uuid.UUID) error
}

// VMs is what the flows need of VMs.
type VMs interface {
	Create(ctx context.Context, req vm.CreateRequest) (*vm.VM, error)
	CreateAsync(ctx context.Context, req vm.CreateRequest) (*operation.Operation, error)
	Get(ctx context.Context, id uuid.UUID) (*vm.VM, error)
	List(ctx context.Context, opts vm.ListOptions) (vm.Page, error)
	Edit(ctx context.Context, id uuid.UUID, req vm.EditRequest) (*vm.VM, error)
	Delete(ctx context.Context, id uuid.UUID, opts vm.DeleteOptions) error
	Start(ctx context.Context, id uuid.UUID) (*vm.VM, error)
	Stop(ctx context.Context, id uuid.UUID, opts vm.StopOptions) (*vm.VM, error)
	Reboot(ctx context.Context, id uuid.UUID) (*vm.VM, error)
	Reset(ctx context.Context, id uuid.UUID) (*vm.VM, error)
	AttachVolume(ctx context.Context, id, volumeID uuid.UUID, bus string) (*vm.VM, error)
	DetachVolume(ctx context.Context, id, volumeID uuid.UUID) (*vm.VM, error)
	ConsoleLog(ctx context.Context, id uuid.UUID, max int64) ([]byte, error)
	Console(ctx context.Context, id uuid.UUID) (vm.Console, error)
	Networks(ctx context.Context) ([]vm.Network, error)
}

var (
	_ Storages = (*storage.Service)(nil)
	_ Volumes  = (*volume.Service)(nil)
	_ Images   = (*image.Service)(nil)
	_ VMs      = (*vm.Service)(nil)
)

// Services is what the flows run against: an SDK embedded or served, over a localfs backend and the fake
// hypervisor (with the network "default").
type Services struct {
	Storages Storages
	Volumes  Volumes
	Images   Images
	VMs      VMs
	// Wait waits until an operation ends and returns it, with an error of the operation's kind when it
	// failed.
	Wait func(ctx context.Context, op *operation.Operation) (*operation.Operation, error)
	// Dir returns a new absolute directory, not yet created, for a localfs storage.
	Dir func() string
	// AppendConsole, when not nil, adds guest output to a VM's console log (the fake hypervisor's).
	AppendConsole func(id uuid.UUID, p []byte)
	// Events, when not nil, follows the change log after event since (openvair.System.Events.Subscribe, or
	// the client's Events).
	Events func(ctx context.Context, since int64, f openvair.EventFilter) iter.Seq2[openvair.Event, error]
}

// flow carries the entities one run makes from step to step.
type flow struct {
	s   Services
	ctx context.Context

	st                    *storage.Storage
	img                   *image.Image
	content               []byte
	blank, copied, linked *volume.Volume
	machine               *vm.VM
	dataVolume            uuid.UUID // the volume the VM was created with (disk "new")
	asyncVolume, batch    uuid.UUID
}

// Run runs every flow against s, in order: each step uses what the previous ones made.
func Run(t *testing.T, s Services) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	f := &flow{s: s, ctx: ctx}
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"storage", f.storage},
		{"image", f.image},
		{"volumes", f.volumes},
		{"snapshots", f.snapshots},
		{"paging", f.paging},
		{"vm", f.vm},
		{"power", f.power},
		{"edit", f.edit},
		{"versions", f.versions},
		{"async", f.async},
		{"not found", f.notFound},
		{"invalid", f.invalid},
		{"teardown", f.teardown},
		{"events", f.events},
	}
	for _, st := range steps {
		if !t.Run(st.name, st.run) {
			return // later steps need what this one makes
		}
	}
}

// storage: create, read, list, edit a localfs storage; a second one on the same directory is refused.
func (f *flow) storage(t *testing.T) {
	s, ctx := f.s.Storages, f.ctx
	dir := f.s.Dir()
	st, err := s.Create(ctx, storage.CreateRequest{Name: "pool", Type: "localfs", Config: map[string]string{"path": dir}})
	require.NoError(t, err)
	assert.Equal(t, storage.StatusAvailable, st.Status)
	assert.Equal(t, storage.Type("localfs"), st.Type)
	assert.Positive(t, st.Capacity)
	f.st = st

	got, err := s.Get(ctx, st.ID)
	require.NoError(t, err)
	assert.Equal(t, st.Name, got.Name)
	assert.Equal(t, st.Location, got.Location)

	page, err := s.List(ctx, storage.ListOptions{Name: "pool"})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Equal(t, st.ID, page.Items[0].ID)

	desc := "the flow's pool"
	edited, err := s.Edit(ctx, st.ID, storage.EditRequest{Description: &desc})
	require.NoError(t, err)
	assert.Equal(t, desc, edited.Description)
	assert.Greater(t, edited.Version, st.Version)
	f.st = edited

	_, err = s.Create(ctx, storage.CreateRequest{Name: "again", Type: "localfs", Config: map[string]string{"path": dir}})
	require.ErrorIs(t, err, openvair.ErrAlreadyExists, "two storages on one directory")
	_, err = s.Create(ctx, storage.CreateRequest{Name: "pool", Type: "localfs", Config: map[string]string{"path": f.s.Dir()}})
	require.ErrorIs(t, err, openvair.ErrAlreadyExists, "two storages with one name")
}

// image: upload a raw disk image, read, list and rename it.
func (f *flow) image(t *testing.T) {
	s, ctx := f.s.Images, f.ctx
	f.content = bytes.Repeat([]byte("disk"), 256<<10) // 1 MiB
	img, err := s.Create(ctx, image.CreateRequest{Name: "disk.raw", StorageID: f.st.ID}, bytes.NewReader(f.content))
	require.NoError(t, err)
	assert.Equal(t, image.FormatRaw, img.Format)
	assert.EqualValues(t, len(f.content), img.Size)
	assert.Equal(t, image.StatusAvailable, img.Status)
	assert.Len(t, img.SHA256, 64)

	page, err := s.List(ctx, image.ListOptions{StorageID: f.st.ID})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Equal(t, img.ID, page.Items[0].ID)

	name := "base.raw"
	img, err = s.Edit(ctx, img.ID, image.EditRequest{Name: &name})
	require.NoError(t, err)
	assert.Equal(t, name, img.Name)
	got, err := s.Get(ctx, img.ID)
	require.NoError(t, err)
	assert.Equal(t, name, got.Name)
	assert.Equal(t, img.SHA256, got.SHA256)
	f.img = got
}

// volumes: a blank volume, one copied from the image, one linked to the copy; edit and extend; a volume
// that is another's backing file is in use.
func (f *flow) volumes(t *testing.T) {
	s, ctx := f.s.Volumes, f.ctx
	blank, err := s.Create(ctx, volume.CreateRequest{Name: "blank", StorageID: f.st.ID, Format: volume.FormatQCOW2, Size: 64 << 20})
	require.NoError(t, err)
	assert.Equal(t, volume.StatusAvailable, blank.Status)
	assert.Equal(t, volume.FormatQCOW2, blank.Format)
	assert.EqualValues(t, 64<<20, blank.Size)

	copied, err := s.Create(ctx, volume.CreateRequest{Name: "copied", Format: volume.FormatQCOW2, Source: &volume.Source{ImageID: f.img.ID}})
	require.NoError(t, err)
	assert.Equal(t, f.st.ID, copied.StorageID, "a source's storage by default")
	assert.EqualValues(t, len(f.content), copied.Size, "a source's size by default")

	linked, err := s.Create(ctx, volume.CreateRequest{Name: "linked", Source: &volume.Source{VolumeID: copied.ID, Mode: volume.ModeLinked}})
	require.NoError(t, err)
	require.NotNil(t, linked.Backing)
	assert.Equal(t, copied.ID, linked.Backing.ID)

	err = s.Delete(ctx, copied.ID)
	require.ErrorIs(t, err, openvair.ErrInUse, "the backing file of a linked volume")

	desc, ro := "scratch", false
	edited, err := s.Edit(ctx, blank.ID, volume.EditRequest{Description: &desc, ReadOnly: &ro})
	require.NoError(t, err)
	assert.Equal(t, desc, edited.Description)
	extended, err := s.Extend(ctx, blank.ID, 128<<20)
	require.NoError(t, err)
	assert.EqualValues(t, 128<<20, extended.Size)
	_, err = s.Extend(ctx, blank.ID, 64<<20)
	require.ErrorIs(t, err, openvair.ErrInvalid, "volumes only grow")

	f.blank, f.copied, f.linked = extended, copied, linked
}

// snapshots: take, list and revert to a snapshot; a volume with snapshots is deleted only with them.
func (f *flow) snapshots(t *testing.T) {
	s, ctx := f.s.Volumes, f.ctx
	snap, err := s.CreateSnapshot(ctx, f.linked.ID, volume.SnapshotRequest{Name: "s1", Description: "before"})
	require.NoError(t, err)
	assert.Equal(t, f.linked.ID, snap.VolumeID)
	assert.Equal(t, "s1", snap.Name)
	_, err = s.CreateSnapshot(ctx, f.linked.ID, volume.SnapshotRequest{Name: "s1"})
	require.ErrorIs(t, err, openvair.ErrAlreadyExists, "snapshot names are unique per volume")

	list, err := s.Snapshots(ctx, f.linked.ID)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, snap.ID, list[0].ID)

	reverted, err := s.RevertSnapshot(ctx, snap.ID)
	require.NoError(t, err)
	assert.Equal(t, volume.StatusAvailable, reverted.Status)
	assert.Equal(t, f.linked.ID, reverted.ID)

	err = s.Delete(ctx, f.linked.ID)
	require.ErrorIs(t, err, openvair.ErrInUse, "a volume with snapshots")

	snap2, err := s.CreateSnapshot(ctx, f.linked.ID, volume.SnapshotRequest{Name: "s2"})
	require.NoError(t, err)
	require.NoError(t, s.DeleteSnapshot(ctx, snap2.ID))
	list, err = s.Snapshots(ctx, f.linked.ID)
	require.NoError(t, err)
	require.Len(t, list, 1)

	require.NoError(t, s.DeleteWithSnapshots(ctx, f.linked.ID))
	_, err = s.Get(ctx, f.linked.ID)
	require.ErrorIs(t, err, openvair.ErrNotFound)
	f.linked = nil
	require.ErrorIs(t, s.DeleteSnapshot(ctx, snap.ID), openvair.ErrNotFound, "gone with its volume")
}

// paging: a list walked one item at a time with its cursor gives every item once.
func (f *flow) paging(t *testing.T) {
	s, ctx := f.s.Volumes, f.ctx
	var ids []uuid.UUID
	cursor := ""
	for range 10 {
		page, err := s.List(ctx, volume.ListOptions{StorageID: f.st.ID, Limit: 1, Cursor: cursor})
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Items), 1)
		for _, v := range page.Items {
			ids = append(ids, v.ID)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	assert.ElementsMatch(t, []uuid.UUID{f.blank.ID, f.copied.ID}, ids)

	free := false
	page, err := s.List(ctx, volume.ListOptions{Attached: &free, Name: "blank"})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Equal(t, f.blank.ID, page.Items[0].ID)
}

// vm: a VM with an existing volume, a new one, a NIC on the hypervisor's network and a VNC password; its
// volumes and its storage are then in use.
func (f *flow) vm(t *testing.T) {
	s, ctx := f.s.VMs, f.ctx
	nets, err := s.Networks(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, nets)
	assert.Equal(t, "default", nets[0].Name)

	v, err := s.Create(ctx, vm.CreateRequest{
		Name: "web", CPU: vm.CPU{Sockets: 1, Cores: 2, Threads: 1}, MemoryBytes: 256 << 20,
		Disks: []vm.DiskRequest{
			{VolumeID: f.copied.ID},
			{New: &volume.CreateRequest{Name: "web-data", StorageID: f.st.ID, Format: volume.FormatQCOW2, Size: 32 << 20}, Bus: "sata"},
		},
		Interfaces: []vm.Interface{{Type: "network", Source: "default"}},
		Graphics:   vm.Graphics{Type: "vnc", Password: "secret"},
	})
	require.NoError(t, err)
	assert.Equal(t, vm.StatusAvailable, v.Status)
	assert.Equal(t, vm.PowerShutOff, v.PowerState)
	assert.Equal(t, vm.CPUHostModel, v.CPU.Mode, "the default CPU mode")
	assert.Equal(t, "bios", v.Firmware)
	assert.Equal(t, []string{"hd", "cdrom"}, v.Boot)
	require.Len(t, v.Disks, 2)
	assert.Equal(t, f.copied.ID, v.Disks[0].VolumeID)
	assert.Equal(t, "virtio", v.Disks[0].Bus)
	assert.Equal(t, "sata", v.Disks[1].Bus)
	require.Len(t, v.Interfaces, 1)
	assert.Equal(t, "virtio", v.Interfaces[0].Model)
	assert.Regexp(t, `^52:54:00(:[0-9a-f]{2}){3}$`, v.Interfaces[0].MAC)
	assert.Equal(t, "127.0.0.1", v.Graphics.Listen)
	f.machine, f.dataVolume = v, v.Disks[1].VolumeID

	data, err := f.s.Volumes.Get(ctx, f.dataVolume)
	require.NoError(t, err)
	assert.Equal(t, "web-data", data.Name)
	require.Len(t, data.Attachments, 1)
	assert.Equal(t, v.ID, data.Attachments[0].VMID)
	assert.Equal(t, "web", data.Attachments[0].VMName)

	page, err := s.List(ctx, vm.ListOptions{PowerState: vm.PowerShutOff})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Equal(t, v.ID, page.Items[0].ID)

	require.ErrorIs(t, f.s.Volumes.Delete(ctx, f.copied.ID), openvair.ErrInUse, "a volume a VM uses")
	require.ErrorIs(t, f.s.Storages.Delete(ctx, f.st.ID), openvair.ErrInUse, "a storage that holds volumes")
}

// power: start, reboot, reset and stop the VM; what needs it stopped refuses while it runs.
func (f *flow) power(t *testing.T) {
	s, ctx := f.s.VMs, f.ctx
	id := f.machine.ID
	v, err := s.Start(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, vm.PowerRunning, v.PowerState)
	assert.Equal(t, vm.StatusAvailable, v.Status)

	_, err = s.Start(ctx, id)
	require.ErrorIs(t, err, openvair.ErrWrongState, "a running VM")
	name := "renamed"
	_, err = s.Edit(ctx, id, vm.EditRequest{Name: &name})
	require.ErrorIs(t, err, openvair.ErrWrongState, "edits need a stopped VM")
	require.ErrorIs(t, s.Delete(ctx, id, vm.DeleteOptions{}), openvair.ErrWrongState, "deletes need a stopped VM")
	active := true
	page, err := f.s.Volumes.List(ctx, volume.ListOptions{Attached: &active})
	require.NoError(t, err)
	assert.Len(t, page.Items, 2)

	con, err := s.Console(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, "vnc", con.Type)
	assert.True(t, con.PasswordSet, "the password was sent")

	if f.s.AppendConsole != nil {
		f.s.AppendConsole(id, []byte("booting\nlogin: "))
		log, err := s.ConsoleLog(ctx, id, 7)
		require.NoError(t, err)
		assert.Equal(t, "login: ", string(log))
	}

	v, err = s.Reboot(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, vm.PowerRunning, v.PowerState)
	v, err = s.Reset(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, vm.PowerRunning, v.PowerState)

	v, err = s.Stop(ctx, id, vm.StopOptions{Timeout: 5 * time.Second})
	require.NoError(t, err)
	assert.Equal(t, vm.PowerShutOff, v.PowerState)
	assert.Equal(t, vm.PowerReason("shutdown"), v.PowerStateReason, "a graceful stop")
	_, err = s.Stop(ctx, id, vm.StopOptions{Force: true})
	require.ErrorIs(t, err, openvair.ErrWrongState, "a stopped VM")
	f.machine = v
}

// edit: change the stopped VM, detach and attach volumes.
func (f *flow) edit(t *testing.T) {
	s, ctx := f.s.VMs, f.ctx
	id := f.machine.ID
	name, mem := "web-1", int64(512<<20)
	cpu := vm.CPU{Sockets: 1, Cores: 1, Threads: 1, Mode: vm.CPUCustom, Model: "qemu64"}
	v, err := s.Edit(ctx, id, vm.EditRequest{Name: &name, MemoryBytes: &mem, CPU: &cpu,
		Graphics: &vm.Graphics{Type: "vnc", Listen: "127.0.0.1"}})
	require.NoError(t, err)
	assert.Equal(t, name, v.Name)
	assert.Equal(t, mem, v.MemoryBytes)
	assert.Equal(t, cpu, v.CPU)
	assert.Greater(t, v.Version, f.machine.Version)

	v, err = s.DetachVolume(ctx, id, f.dataVolume)
	require.NoError(t, err)
	require.Len(t, v.Disks, 1)
	data, err := f.s.Volumes.Get(ctx, f.dataVolume)
	require.NoError(t, err)
	assert.Empty(t, data.Attachments, "detached, kept")

	v, err = s.AttachVolume(ctx, id, f.blank.ID, "scsi")
	require.NoError(t, err)
	require.Len(t, v.Disks, 2)
	assert.Equal(t, f.blank.ID, v.Disks[1].VolumeID)
	assert.Equal(t, "scsi", v.Disks[1].Bus)
	_, err = s.AttachVolume(ctx, id, f.blank.ID, "")
	require.ErrorIs(t, err, openvair.ErrAlreadyExists, "a volume attached twice")

	got, err := s.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, v.Version, got.Version)
	assert.Equal(t, name, got.Name)
	f.machine = got
}

// versions: a change that expects another version of the entity is refused and changes nothing.
func (f *flow) versions(t *testing.T) {
	ctx := f.ctx
	id := f.machine.ID
	stale := openvair.ExpectVersion(ctx, id, f.machine.Version-1)
	desc := "stale"
	_, err := f.s.VMs.Edit(stale, id, vm.EditRequest{Description: &desc})
	require.ErrorIs(t, err, openvair.ErrPreconditionFailed)
	got, err := f.s.VMs.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, f.machine.Version, got.Version, "nothing changed")

	desc = "current"
	v, err := f.s.VMs.Edit(openvair.ExpectVersion(ctx, id, f.machine.Version), id, vm.EditRequest{Description: &desc})
	require.NoError(t, err)
	assert.Equal(t, desc, v.Description)
	f.machine = v

	stName := "renamed-pool"
	_, err = f.s.Storages.Edit(openvair.ExpectVersion(ctx, f.st.ID, f.st.Version+1), f.st.ID, storage.EditRequest{Name: &stName})
	require.ErrorIs(t, err, openvair.ErrPreconditionFailed)
}

// async: creates started as operations end with the entity they made.
func (f *flow) async(t *testing.T) {
	ctx := f.ctx
	op, err := f.s.Volumes.CreateAsync(ctx, volume.CreateRequest{Name: "later", Source: &volume.Source{ImageID: f.img.ID}})
	require.NoError(t, err)
	assert.Equal(t, "volume.create", op.Kind)
	done, err := f.s.Wait(ctx, op)
	require.NoError(t, err)
	assert.Equal(t, operation.StatusSucceeded, done.Status)
	require.NotNil(t, done.Result)
	later, err := f.s.Volumes.Get(ctx, done.Result.ID)
	require.NoError(t, err)
	assert.Equal(t, "later", later.Name)
	f.asyncVolume = later.ID

	op, err = f.s.VMs.CreateAsync(ctx, vm.CreateRequest{Name: "batch", CPU: vm.CPU{Sockets: 1, Cores: 1, Threads: 1},
		MemoryBytes: 64 << 20, Disks: []vm.DiskRequest{{VolumeID: later.ID}}})
	require.NoError(t, err)
	done, err = f.s.Wait(ctx, op)
	require.NoError(t, err)
	require.NotNil(t, done.Result)
	batch, err := f.s.VMs.Get(ctx, done.Result.ID)
	require.NoError(t, err)
	assert.Equal(t, "batch", batch.Name)
	f.batch = batch.ID

	// An operation that fails reports the kind of its error (or the call does, when the SDK checks
	// before queueing).
	op, err = f.s.VMs.CreateAsync(ctx, vm.CreateRequest{Name: "batch", CPU: vm.CPU{Sockets: 1, Cores: 1, Threads: 1},
		MemoryBytes: 64 << 20})
	if err == nil {
		_, err = f.s.Wait(ctx, op)
	}
	require.ErrorIs(t, err, openvair.ErrAlreadyExists, "a second VM named batch")
}

// notFound: every kind of entity, unknown, is ErrNotFound.
func (f *flow) notFound(t *testing.T) {
	ctx, id := f.ctx, uuid.New()
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"storage get", func() error { _, err := f.s.Storages.Get(ctx, id); return err }},
		{"storage delete", func() error { return f.s.Storages.Delete(ctx, id) }},
		{"volume get", func() error { _, err := f.s.Volumes.Get(ctx, id); return err }},
		{"volume extend", func() error { _, err := f.s.Volumes.Extend(ctx, id, 1<<30); return err }},
		{"snapshot revert", func() error { _, err := f.s.Volumes.RevertSnapshot(ctx, id); return err }},
		{"image get", func() error { _, err := f.s.Images.Get(ctx, id); return err }},
		{"image delete", func() error { return f.s.Images.Delete(ctx, id) }},
		{"vm get", func() error { _, err := f.s.VMs.Get(ctx, id); return err }},
		{"vm start", func() error { _, err := f.s.VMs.Start(ctx, id); return err }},
		{"vm delete", func() error { return f.s.VMs.Delete(ctx, id, vm.DeleteOptions{}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.ErrorIs(t, tc.call(), openvair.ErrNotFound)
		})
	}
}

// invalid: requests the SDK refuses, with ErrInvalid.
func (f *flow) invalid(t *testing.T) {
	ctx := f.ctx
	empty := ""
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"storage path", func() error {
			_, err := f.s.Storages.Create(ctx, storage.CreateRequest{Name: "rel", Type: "localfs", Config: map[string]string{"path": "relative"}})
			return err
		}},
		{"volume size", func() error {
			_, err := f.s.Volumes.Create(ctx, volume.CreateRequest{Name: "zero", StorageID: f.st.ID, Format: volume.FormatRaw})
			return err
		}},
		{"volume format", func() error {
			_, err := f.s.Volumes.Create(ctx, volume.CreateRequest{Name: "vmdk", StorageID: f.st.ID, Format: "vmdk", Size: 1 << 20})
			return err
		}},
		{"volume source", func() error {
			_, err := f.s.Volumes.Create(ctx, volume.CreateRequest{Name: "x", Source: &volume.Source{ImageID: uuid.New()}})
			return err
		}},
		{"image name", func() error { _, err := f.s.Images.Edit(ctx, f.img.ID, image.EditRequest{Name: &empty}); return err }},
		{"vm memory", func() error {
			_, err := f.s.VMs.Create(ctx, vm.CreateRequest{Name: "tiny", CPU: vm.CPU{Sockets: 1, Cores: 1, Threads: 1}, MemoryBytes: 1000})
			return err
		}},
		{"vm network", func() error {
			_, err := f.s.VMs.Create(ctx, vm.CreateRequest{Name: "nic", CPU: vm.CPU{Sockets: 1, Cores: 1, Threads: 1}, MemoryBytes: 64 << 20,
				Interfaces: []vm.Interface{{Type: "network", Source: "nowhere"}}})
			return err
		}},
		{"vm stop timeout", func() error {
			_, err := f.s.VMs.Stop(ctx, f.machine.ID, vm.StopOptions{Timeout: -time.Second})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.ErrorIs(t, tc.call(), openvair.ErrInvalid)
		})
	}
}

// teardown: delete the VMs (one with its volumes), the rest of the volumes, the image and the storage.
func (f *flow) teardown(t *testing.T) {
	ctx := f.ctx
	require.NoError(t, f.s.VMs.Delete(ctx, f.machine.ID, vm.DeleteOptions{DeleteVolumes: true}))
	_, err := f.s.VMs.Get(ctx, f.machine.ID)
	require.ErrorIs(t, err, openvair.ErrNotFound)
	for _, id := range []uuid.UUID{f.copied.ID, f.blank.ID} {
		_, err := f.s.Volumes.Get(ctx, id)
		assert.ErrorIs(t, err, openvair.ErrNotFound, "deleted with the VM")
	}
	require.NoError(t, f.s.VMs.Delete(ctx, f.batch, vm.DeleteOptions{}))
	v, err := f.s.Volumes.Get(ctx, f.asyncVolume)
	require.NoError(t, err)
	assert.Empty(t, v.Attachments, "kept, detached")

	for _, id := range []uuid.UUID{f.asyncVolume, f.dataVolume} {
		require.NoError(t, f.s.Volumes.Delete(ctx, id))
	}
	require.NoError(t, f.s.Images.Delete(ctx, f.img.ID))
	require.NoError(t, f.s.Storages.Delete(ctx, f.st.ID))
	_, err = f.s.Storages.Get(ctx, f.st.ID)
	require.ErrorIs(t, err, openvair.ErrNotFound)
}

// events: the change log holds the VM's life in order: created, updated at growing versions, deleted at
// its last version.
func (f *flow) events(t *testing.T) {
	if f.s.Events == nil {
		t.Skip("no change log to follow")
	}
	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	var types []string
	var version int64
	for ev, err := range f.s.Events(ctx, 0, openvair.EventFilter{Resource: "vm", ResourceID: f.machine.ID}) {
		require.NoError(t, err)
		assert.Equal(t, f.machine.ID, ev.ResourceID)
		if ev.Type == "vm.deleted" {
			assert.Equal(t, version, ev.Version, "a delete carries the last version")
		} else {
			assert.Greater(t, ev.Version, version, "versions grow")
		}
		version = ev.Version
		types = append(types, ev.Type)
		if ev.Type == "vm.deleted" {
			break
		}
	}
	require.NotEmpty(t, types)
	assert.Equal(t, "vm.created", types[0])
	assert.Equal(t, "vm.deleted", types[len(types)-1])
	assert.Greater(t, len(types), 5, "starts, stops and edits are updates")
	for _, typ := range types[1 : len(types)-1] {
		assert.Equal(t, "vm.updated", typ)
	}
}
