// Package repotest is the conformance suite every repo.Store implementation runs: the repository
// contracts (uniqueness, foreign keys, optimistic versions, pagination, filters, attachments, units of work)
// and the service-level races they must make safe.
package repotest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/repo"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Opener returns a fresh, empty store for one test; the suite closes it.
type Opener func(t *testing.T) repo.Store

// Run runs the whole suite.
func Run(t *testing.T, open Opener) {
	t.Run("Storages", func(t *testing.T) { testStorages(t, open) })
	t.Run("Volumes", func(t *testing.T) { testVolumes(t, open) })
	t.Run("Images", func(t *testing.T) { testImages(t, open) })
	t.Run("LinkedVolumes", func(t *testing.T) { testLinkedVolumes(t, open) })
	t.Run("CloudInit", func(t *testing.T) { testCloudInit(t, open) })
	t.Run("VMs", func(t *testing.T) { testVMs(t, open) })
	t.Run("Pagination", func(t *testing.T) { testPagination(t, open) })
	t.Run("UnitOfWork", func(t *testing.T) { testUnitOfWork(t, open) })
	t.Run("Races", func(t *testing.T) { RunRaces(t, open) })
	t.Run("Records", func(t *testing.T) { RunRecords(t, open) })
}

func fresh(t *testing.T, open Opener) (repo.Store, context.Context) {
	t.Helper()
	st := open(t)
	t.Cleanup(func() { _ = st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return st, ctx
}

func newID() uuid.UUID { return uuid.Must(uuid.NewV7()) }

// NewStorage returns a valid storage on a directory.
func NewStorage(name string) *storage.Storage {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &storage.Storage{ID: newID(), Name: name, Type: "localfs", Config: json.RawMessage(`{"path":"/srv/` + name + `"}`),
		State: json.RawMessage(`{"real_path":"/srv/` + name + `"}`), Location: "dir:/srv/" + name, Status: storage.StatusAvailable, Capacity: 1 << 40, Available: 1 << 39, CreatedAt: now, UpdatedAt: now}
}

// NewVolume returns a valid volume on a storage.
func NewVolume(storageID uuid.UUID, name string) *volume.Volume {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &volume.Volume{ID: newID(), Name: name, StorageID: storageID, Format: volume.FormatQCOW2, Size: 1 << 30,
		Status: volume.StatusAvailable, CreatedAt: now, UpdatedAt: now}
}

// NewImage returns a valid image on a storage.
func NewImage(storageID uuid.UUID, name string) *image.Image {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &image.Image{ID: newID(), Name: name, StorageID: storageID, Format: image.FormatISO, Size: 1 << 20,
		SHA256: "00", Status: image.StatusAvailable, CreatedAt: now, UpdatedAt: now}
}

// NewVM returns a valid VM using the given volumes and images.
func NewVM(name string, vols []uuid.UUID, imgs []uuid.UUID, macs ...string) *vm.VM {
	now := time.Now().UTC().Truncate(time.Microsecond)
	v := &vm.VM{ID: newID(), Name: name, CPU: vm.CPU{Sockets: 1, Cores: 2, Threads: 1, Mode: vm.CPUHostModel},
		MemoryBytes: 1 << 30, Firmware: "bios", Boot: []string{"hd", "cdrom"}, Graphics: vm.Graphics{Type: "vnc", Listen: "127.0.0.1", Password: "secret"},
		Status: vm.StatusAvailable, PowerState: vm.PowerShutOff, CreatedAt: now, UpdatedAt: now,
		Disks: []vm.Disk{}, CDROMs: []vm.CDROM{}, Interfaces: []vm.Interface{}}
	for i, id := range vols {
		v.Disks = append(v.Disks, vm.Disk{VolumeID: id, Bus: "virtio", BootOrder: i + 1, ReadIOPS: 100})
	}
	for _, id := range imgs {
		v.CDROMs = append(v.CDROMs, vm.CDROM{ImageID: id})
	}
	for _, m := range macs {
		v.Interfaces = append(v.Interfaces, vm.Interface{Type: "bridge", Source: "br0", Model: "virtio", MAC: m})
	}
	return v
}

func testStorages(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	r := st.Storages()
	a := NewStorage("alpha")
	require.NoError(t, r.Create(ctx, a))
	assert.EqualValues(t, 1, a.Version)

	got, err := r.Get(ctx, a.ID)
	require.NoError(t, err)
	assert.Equal(t, a.Name, got.Name)
	assert.JSONEq(t, string(a.Config), string(got.Config), "config round trips")
	assert.JSONEq(t, string(a.State), string(got.State), "state round trips")
	assert.Equal(t, a.Location, got.Location)
	assert.Equal(t, a.Capacity, got.Capacity)
	assert.True(t, a.CreatedAt.Equal(got.CreatedAt), "created_at round trips")

	_, err = r.Get(ctx, newID())
	assert.ErrorIs(t, err, errkind.NotFound)

	dupName := NewStorage("alpha")
	dupName.Location = "dir:/srv/other"
	assert.ErrorIs(t, r.Create(ctx, dupName), errkind.AlreadyExists, "same name")
	dupLoc := NewStorage("beta")
	dupLoc.Location = a.Location
	assert.ErrorIs(t, r.Create(ctx, dupLoc), errkind.AlreadyExists, "same directory")

	nfsA := &storage.Storage{ID: newID(), Name: "nfs-a", Type: "nfs", Config: json.RawMessage(`{"server":"10.0.0.1","export":"/x","version":3}`),
		Location: "nfs:10.0.0.1:/x", Status: storage.StatusAvailable, CreatedAt: time.Now().UTC(), UpdatedAt: time.Now().UTC()}
	require.NoError(t, r.Create(ctx, nfsA))
	nfsB := nfsA.Clone()
	nfsB.ID, nfsB.Name = newID(), "nfs-b"
	assert.ErrorIs(t, r.Create(ctx, nfsB), errkind.AlreadyExists, "same server and export")
	nfsB.Config, nfsB.Location = json.RawMessage(`{"server":"10.0.0.1","export":"/y","version":3}`), "nfs:10.0.0.1:/y"
	require.NoError(t, r.Create(ctx, nfsB), "same server, other export")
	got, err = r.Get(ctx, nfsB.ID)
	require.NoError(t, err)
	assert.JSONEq(t, string(nfsB.Config), string(got.Config))
	assert.Empty(t, got.State, "no state stays no state")

	// Optimistic versions.
	stale := a.Clone()
	a.Description = "first"
	a.Status, a.StatusReason = storage.StatusError, "unreachable"
	require.NoError(t, r.Update(ctx, a))
	assert.EqualValues(t, 2, a.Version)
	stale.Description = "second"
	assert.ErrorIs(t, r.Update(ctx, stale), errkind.Conflict)
	got, err = r.Get(ctx, a.ID)
	require.NoError(t, err)
	assert.Equal(t, "first", got.Description)
	assert.Equal(t, storage.StatusError, got.Status)
	assert.Equal(t, "unreachable", got.StatusReason)

	rename := got.Clone()
	rename.Name = "nfs-a"
	assert.ErrorIs(t, r.Update(ctx, rename), errkind.AlreadyExists, "rename onto another name")

	// Dependents and delete.
	vol := NewVolume(a.ID, "disk")
	require.NoError(t, st.Volumes().Create(ctx, vol))
	img := NewImage(a.ID, "cd")
	require.NoError(t, st.Images().Create(ctx, img))
	deps, err := r.Dependents(ctx, a.ID)
	require.NoError(t, err)
	assert.ElementsMatch(t, []errkind.Ref{{Kind: "volume", ID: vol.ID.String(), Name: "disk"}, {Kind: "image", ID: img.ID.String(), Name: "cd"}}, deps)
	assert.ErrorIs(t, r.Delete(ctx, a.ID), errkind.InUse, "storage with volumes")
	require.NoError(t, st.Volumes().Delete(ctx, vol.ID))
	require.NoError(t, st.Images().Delete(ctx, img.ID))
	require.NoError(t, r.Delete(ctx, a.ID))
	assert.ErrorIs(t, r.Delete(ctx, a.ID), errkind.NotFound)
	_, err = r.Get(ctx, a.ID)
	assert.ErrorIs(t, err, errkind.NotFound)
}

func testVolumes(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	s1, s2 := NewStorage("s1"), NewStorage("s2")
	require.NoError(t, st.Storages().Create(ctx, s1))
	require.NoError(t, st.Storages().Create(ctx, s2))
	r := st.Volumes()

	v := NewVolume(s1.ID, "disk")
	v.ReadOnly, v.Shareable, v.Allocated = true, true, 4096
	require.NoError(t, r.Create(ctx, v))
	got, err := r.Get(ctx, v.ID)
	require.NoError(t, err)
	assert.Equal(t, v.Size, got.Size)
	assert.Equal(t, v.Allocated, got.Allocated)
	assert.True(t, got.ReadOnly)
	assert.True(t, got.Shareable)
	assert.Empty(t, got.Attachments)

	assert.ErrorIs(t, r.Create(ctx, NewVolume(s1.ID, "disk")), errkind.AlreadyExists, "same name, same storage")
	require.NoError(t, r.Create(ctx, NewVolume(s2.ID, "disk")), "same name, other storage")
	assert.ErrorIs(t, r.Create(ctx, NewVolume(newID(), "orphan")), errkind.NotFound, "unknown storage")

	stale := got.Clone()
	got.Size, got.Status = 2<<30, volume.StatusExtending
	require.NoError(t, r.Update(ctx, got))
	assert.ErrorIs(t, r.Update(ctx, stale), errkind.Conflict)
	got, err = r.Get(ctx, v.ID)
	require.NoError(t, err)
	assert.EqualValues(t, 2<<30, got.Size)
	assert.Equal(t, volume.StatusExtending, got.Status)

	_, err = r.Get(ctx, newID())
	assert.ErrorIs(t, err, errkind.NotFound)
	assert.ErrorIs(t, r.Delete(ctx, newID()), errkind.NotFound)
}

func testImages(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	s1 := NewStorage("s1")
	require.NoError(t, st.Storages().Create(ctx, s1))
	r := st.Images()
	img := NewImage(s1.ID, "cd")
	img.SHA256 = "abc123"
	require.NoError(t, r.Create(ctx, img))
	got, err := r.Get(ctx, img.ID)
	require.NoError(t, err)
	assert.Equal(t, "abc123", got.SHA256)
	assert.Equal(t, image.FormatISO, got.Format)
	assert.Empty(t, got.Attachments)
	assert.ErrorIs(t, r.Create(ctx, NewImage(s1.ID, "cd")), errkind.AlreadyExists)
	assert.ErrorIs(t, r.Create(ctx, NewImage(newID(), "x")), errkind.NotFound)

	stale := got.Clone()
	got.Name = "renamed"
	require.NoError(t, r.Update(ctx, got))
	assert.ErrorIs(t, r.Update(ctx, stale), errkind.Conflict)
	page, err := r.List(ctx, image.ListOptions{Name: "renamed"})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Equal(t, img.ID, page.Items[0].ID)
}

func testVMs(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	s1 := NewStorage("s1")
	require.NoError(t, st.Storages().Create(ctx, s1))
	v1, v2 := NewVolume(s1.ID, "d1"), NewVolume(s1.ID, "d2")
	require.NoError(t, st.Volumes().Create(ctx, v1))
	require.NoError(t, st.Volumes().Create(ctx, v2))
	img := NewImage(s1.ID, "cd")
	require.NoError(t, st.Images().Create(ctx, img))
	r := st.VMs()

	m := NewVM("web", []uuid.UUID{v1.ID, v2.ID}, []uuid.UUID{img.ID}, "52:54:00:00:00:01", "52:54:00:00:00:02")
	m.CPU.Mode, m.CPU.Model, m.Firmware, m.MachineType = vm.CPUCustom, "Skylake-Client", "uefi", "q35"
	m.Description = "front end"
	require.NoError(t, r.Create(ctx, m))
	got, err := r.Get(ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, m.CPU, got.CPU)
	assert.Equal(t, m.MemoryBytes, got.MemoryBytes)
	assert.Equal(t, m.Firmware, got.Firmware)
	assert.Equal(t, m.MachineType, got.MachineType)
	assert.Equal(t, m.Boot, got.Boot)
	assert.Equal(t, m.Disks, got.Disks, "disks keep their order and settings")
	assert.Equal(t, m.CDROMs, got.CDROMs)
	assert.Equal(t, m.Interfaces, got.Interfaces)
	assert.Equal(t, m.Graphics, got.Graphics, "graphics with password round trip")
	assert.Equal(t, "front end", got.Description)

	vol, err := st.Volumes().Get(ctx, v1.ID)
	require.NoError(t, err)
	require.Len(t, vol.Attachments, 1)
	assert.Equal(t, volume.Attachment{VMID: m.ID, VMName: "web", Active: false}, vol.Attachments[0])
	im, err := st.Images().Get(ctx, img.ID)
	require.NoError(t, err)
	assert.Equal(t, []image.Attachment{{VMID: m.ID, VMName: "web"}}, im.Attachments)

	attached, free := true, false
	page, err := st.Volumes().List(ctx, volume.ListOptions{Attached: &attached})
	require.NoError(t, err)
	assert.Len(t, page.Items, 2)
	page, err = st.Volumes().List(ctx, volume.ListOptions{Attached: &free})
	require.NoError(t, err)
	assert.Empty(t, page.Items)

	assert.ErrorIs(t, st.Volumes().Delete(ctx, v1.ID), errkind.InUse, "attached volume")
	assert.ErrorIs(t, st.Images().Delete(ctx, img.ID), errkind.InUse, "image used as cdrom")

	assert.ErrorIs(t, r.Create(ctx, NewVM("web", nil, nil)), errkind.AlreadyExists, "same name")
	assert.ErrorIs(t, r.Create(ctx, NewVM("db", nil, nil, "52:54:00:00:00:02")), errkind.AlreadyExists, "same MAC")
	assert.ErrorIs(t, r.Create(ctx, NewVM("ghost", []uuid.UUID{newID()}, nil)), errkind.NotFound, "unknown volume")

	// Running VM: attachments become active; detach by update.
	got.PowerState = vm.PowerRunning
	require.NoError(t, r.Update(ctx, got))
	vol, err = st.Volumes().Get(ctx, v1.ID)
	require.NoError(t, err)
	assert.True(t, vol.Attachments[0].Active)
	got.Disks = got.Disks[1:]
	got.CDROMs = []vm.CDROM{}
	got.Interfaces = got.Interfaces[:1]
	require.NoError(t, r.Update(ctx, got))
	vol, err = st.Volumes().Get(ctx, v1.ID)
	require.NoError(t, err)
	assert.Empty(t, vol.Attachments)
	require.NoError(t, r.Create(ctx, NewVM("db", nil, nil, "52:54:00:00:00:02")), "MAC freed by the update")

	running := vm.PowerRunning
	vms, err := r.List(ctx, vm.ListOptions{PowerState: running})
	require.NoError(t, err)
	require.Len(t, vms.Items, 1)
	assert.Equal(t, "web", vms.Items[0].Name)

	require.NoError(t, r.Delete(ctx, m.ID))
	require.NoError(t, st.Volumes().Delete(ctx, v2.ID), "detached by VM delete")
	_, err = r.Get(ctx, m.ID)
	assert.ErrorIs(t, err, errkind.NotFound)
}

func testPagination(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	s1, s2 := NewStorage("s1"), NewStorage("s2")
	require.NoError(t, st.Storages().Create(ctx, s1))
	require.NoError(t, st.Storages().Create(ctx, s2))
	var want []uuid.UUID
	for i := 0; i < 25; i++ {
		sid := s1.ID
		if i%5 == 0 {
			sid = s2.ID
		}
		v := NewVolume(sid, fmt.Sprintf("v%02d", i))
		if i%2 == 0 {
			v.Status = volume.StatusError
		}
		require.NoError(t, st.Volumes().Create(ctx, v))
		if sid == s1.ID {
			want = append(want, v.ID)
		}
	}
	var got []uuid.UUID
	opts := volume.ListOptions{Limit: 7, StorageID: s1.ID}
	pages := 0
	for {
		page, err := st.Volumes().List(ctx, opts)
		require.NoError(t, err)
		assert.LessOrEqual(t, len(page.Items), 7)
		for _, v := range page.Items {
			got = append(got, v.ID)
		}
		pages++
		if page.NextCursor == "" {
			break
		}
		opts.Cursor = page.NextCursor
	}
	assert.Equal(t, want, got, "every volume of the storage once, in id (creation) order")
	assert.Equal(t, 3, pages)

	page, err := st.Volumes().List(ctx, volume.ListOptions{StorageID: s1.ID, Status: volume.StatusError})
	require.NoError(t, err)
	assert.Len(t, page.Items, 10)
	page, err = st.Volumes().List(ctx, volume.ListOptions{Name: "v03"})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Equal(t, "v03", page.Items[0].Name)

	_, err = st.Volumes().List(ctx, volume.ListOptions{Cursor: "not a cursor!"})
	assert.ErrorIs(t, err, errkind.Invalid)
	sp, err := st.Storages().List(ctx, storage.ListOptions{Limit: 1})
	require.NoError(t, err)
	assert.Len(t, sp.Items, 1)
	assert.NotEmpty(t, sp.NextCursor)
}

func testUnitOfWork(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	s1 := NewStorage("s1")
	boom := errors.New("boom")
	err := st.InTx(ctx, func(ctx context.Context) error {
		require.NoError(t, st.Storages().Create(ctx, s1))
		require.NoError(t, st.Volumes().Create(ctx, NewVolume(s1.ID, "inside")))
		return boom
	})
	assert.ErrorIs(t, err, boom)
	_, err = st.Storages().Get(ctx, s1.ID)
	assert.ErrorIs(t, err, errkind.NotFound, "rolled back")
	page, err := st.Volumes().List(ctx, volume.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, page.Items, "rolled back")

	// Nested units of work join the outer one.
	err = st.InTx(ctx, func(ctx context.Context) error {
		require.NoError(t, st.Storages().Create(ctx, s1))
		return st.InTx(ctx, func(ctx context.Context) error {
			got, err := st.Storages().Get(ctx, s1.ID)
			if err != nil {
				return err
			}
			got.Description = "nested"
			return st.Storages().Update(ctx, got)
		})
	})
	require.NoError(t, err)
	got, err := st.Storages().Get(ctx, s1.ID)
	require.NoError(t, err)
	assert.Equal(t, "nested", got.Description)

	// An update undone by a later failure in the same unit of work.
	err = st.InTx(ctx, func(ctx context.Context) error {
		got.Description = "lost"
		require.NoError(t, st.Storages().Update(ctx, got))
		return boom
	})
	assert.ErrorIs(t, err, boom)
	again, err := st.Storages().Get(ctx, s1.ID)
	require.NoError(t, err)
	assert.Equal(t, "nested", again.Description)
}
