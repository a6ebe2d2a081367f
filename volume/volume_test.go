package volume_test

import (
	"github.com/openvair/openvair/internal/fsm/fsmtest"
	"testing"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTransitionTable(t *testing.T) {
	legal := map[volume.Status][]volume.Status{
		volume.StatusCreating:  {volume.StatusAvailable, volume.StatusError},
		volume.StatusAvailable: {volume.StatusAvailable, volume.StatusExtending, volume.StatusReverting, volume.StatusDeleting, volume.StatusError},
		volume.StatusReverting: {volume.StatusAvailable, volume.StatusError},
		volume.StatusExtending: {volume.StatusAvailable, volume.StatusError},
		volume.StatusDeleting:  {volume.StatusError},
		volume.StatusError:     {volume.StatusAvailable, volume.StatusError, volume.StatusReverting, volume.StatusDeleting},
	}
	fsmtest.Check(t, legal, volume.Status.CanTransition, func(from, to volume.Status) (volume.Status, error) {
		e := &volume.Volume{Status: from}
		err := e.SetStatus(to, "reason")
		if err == nil {
			assert.Equal(t, to == volume.StatusError, e.StatusReason == "reason", "a reason only with error")
		}
		return e.Status, err
	})
}

func TestCreateRules(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	other := e.Storage(t, "other")
	cases := []struct {
		name string
		req  volume.CreateRequest
		kind error
	}{
		{"every field bad", volume.CreateRequest{Name: "", Format: "vmdk", Size: 0}, errkind.Invalid},
		{"negative size", volume.CreateRequest{Name: "v", StorageID: st.ID, Format: volume.FormatRaw, Size: -1}, errkind.Invalid},
		{"unknown storage", volume.CreateRequest{Name: "v", StorageID: uuid.New(), Format: volume.FormatRaw, Size: 1}, errkind.NotFound},
		{"larger than the storage", volume.CreateRequest{Name: "v", StorageID: st.ID, Format: volume.FormatRaw, Size: sdktest.Capacity + 1}, errkind.TooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.Sys.Volumes.Create(e.Ctx, c.req)
			assert.ErrorIs(t, err, c.kind)
		})
	}
	_, err := e.Sys.Volumes.Create(e.Ctx, volume.CreateRequest{Name: "", Format: "vmdk"})
	var ve *errkind.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Len(t, ve.Fields, 4, "name, storage_id, format and size reported at once")

	v := e.Volume(t, st.ID, "disk", 1<<30)
	assert.Equal(t, volume.StatusAvailable, v.Status)
	require.NotNil(t, e.FS.Object(st.ID, v.ID), "the backend holds the volume")
	_, err = e.Sys.Volumes.Create(e.Ctx, volume.CreateRequest{Name: "disk", StorageID: st.ID, Format: volume.FormatRaw, Size: 1})
	assert.ErrorIs(t, err, errkind.AlreadyExists, "same name on the same storage")
	e.Volume(t, other.ID, "disk", 1<<20) // same name elsewhere is fine

	e.FS.FailNext("CreateVolume", fake.ErrInjected, 1)
	_, err = e.Sys.Volumes.Create(e.Ctx, volume.CreateRequest{Name: "fails", StorageID: st.ID, Format: volume.FormatRaw, Size: 1 << 20})
	require.ErrorIs(t, err, fake.ErrInjected)
	page, err := e.Sys.Volumes.List(e.Ctx, volume.ListOptions{Name: "fails"})
	require.NoError(t, err)
	assert.Empty(t, page.Items, "a failed create leaves no volume")
	assert.Equal(t, 1, e.FS.Objects(st.ID), "and no file")
}

func TestExtendRules(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	v := e.Volume(t, st.ID, "disk", 1<<30)

	for _, size := range []int64{1 << 30, 1 << 29, 0} {
		_, err := e.Sys.Volumes.Extend(e.Ctx, v.ID, size)
		assert.ErrorIs(t, err, errkind.Invalid, "size %d does not grow", size)
	}
	_, err := e.Sys.Volumes.Extend(e.Ctx, v.ID, sdktest.Capacity*2)
	assert.ErrorIs(t, err, errkind.TooLarge)
	_, err = e.Sys.Volumes.Extend(e.Ctx, uuid.New(), 1<<31)
	assert.ErrorIs(t, err, errkind.NotFound)

	got, err := e.Sys.Volumes.Extend(e.Ctx, v.ID, 2<<30)
	require.NoError(t, err)
	assert.EqualValues(t, 2<<30, got.Size)
	assert.Equal(t, volume.StatusAvailable, got.Status)
	assert.EqualValues(t, 2<<30, e.FS.Object(st.ID, v.ID).Size)

	// Attached to a stopped VM: allowed; to a running one: refused.
	m := e.VM(t, "vm1", vm.DiskRequest{VolumeID: v.ID})
	_, err = e.Sys.Volumes.Extend(e.Ctx, v.ID, 3<<30)
	require.NoError(t, err, "extend while the VM is shut off")
	_, err = e.Sys.VMs.Start(e.Ctx, m.ID)
	require.NoError(t, err)
	_, err = e.Sys.Volumes.Extend(e.Ctx, v.ID, 4<<30)
	require.ErrorIs(t, err, errkind.InUse)
	assert.Contains(t, err.Error(), "vm1")

	// A failing backend leaves the volume in error with a reason, never extending.
	free := e.Volume(t, st.ID, "free", 1<<20)
	e.FS.FailNext("ExtendVolume", fake.ErrInjected, 1)
	_, err = e.Sys.Volumes.Extend(e.Ctx, free.ID, 2<<20)
	require.ErrorIs(t, err, fake.ErrInjected)
	got, err = e.Sys.Volumes.Get(e.Ctx, free.ID)
	require.NoError(t, err)
	assert.Equal(t, volume.StatusError, got.Status)
	assert.Contains(t, got.StatusReason, "extend failed")
	assert.EqualValues(t, 1<<20, got.Size)
	_, err = e.Sys.Volumes.Extend(e.Ctx, free.ID, 2<<20)
	assert.ErrorIs(t, err, errkind.WrongState, "no extend from error")

	// Monitoring brings it back: the file is there and healthy.
	got, err = e.Sys.Volumes.Refresh(e.Ctx, free.ID)
	require.NoError(t, err)
	assert.Equal(t, volume.StatusAvailable, got.Status)
}

func TestDeleteRules(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	v := e.Volume(t, st.ID, "disk", 1<<30)
	m := e.VM(t, "vm1", vm.DiskRequest{VolumeID: v.ID})

	err := e.Sys.Volumes.Delete(e.Ctx, v.ID)
	require.ErrorIs(t, err, errkind.InUse)
	var oe *errkind.Error
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, []errkind.Ref{{Kind: "vm", ID: m.ID.String(), Name: "vm1"}}, oe.Refs)

	_, err = e.Sys.VMs.DetachVolume(e.Ctx, m.ID, v.ID)
	require.NoError(t, err)
	e.FS.FailNext("DeleteVolume", fake.ErrInjected, 1)
	require.ErrorIs(t, e.Sys.Volumes.Delete(e.Ctx, v.ID), fake.ErrInjected)
	got, err := e.Sys.Volumes.Get(e.Ctx, v.ID)
	require.NoError(t, err)
	assert.Equal(t, volume.StatusError, got.Status)
	assert.Contains(t, got.StatusReason, "delete failed")

	require.NoError(t, e.Sys.Volumes.Delete(e.Ctx, v.ID), "retry from error")
	assert.Nil(t, e.FS.Object(st.ID, v.ID))
	_, err = e.Sys.Volumes.Get(e.Ctx, v.ID)
	assert.ErrorIs(t, err, errkind.NotFound)
}

func TestEditAndList(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	a := e.Volume(t, st.ID, "a", 1<<20)
	b := e.Volume(t, st.ID, "b", 1<<20)
	e.VM(t, "vm1", vm.DiskRequest{VolumeID: a.ID})

	name, ro := "a2", true
	got, err := e.Sys.Volumes.Edit(e.Ctx, a.ID, volume.EditRequest{Name: &name, ReadOnly: &ro})
	require.NoError(t, err)
	assert.Equal(t, "a2", got.Name)
	assert.True(t, got.ReadOnly)
	dup := "b"
	_, err = e.Sys.Volumes.Edit(e.Ctx, a.ID, volume.EditRequest{Name: &dup})
	assert.ErrorIs(t, err, errkind.AlreadyExists)

	attached, free := true, false
	page, err := e.Sys.Volumes.List(e.Ctx, volume.ListOptions{Attached: &attached})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Equal(t, a.ID, page.Items[0].ID)
	page, err = e.Sys.Volumes.List(e.Ctx, volume.ListOptions{Attached: &free})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Equal(t, b.ID, page.Items[0].ID)
	page, err = e.Sys.Volumes.List(e.Ctx, volume.ListOptions{StorageID: uuid.New()})
	require.NoError(t, err)
	assert.Empty(t, page.Items)
}

func TestRefreshMissingFile(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	v := e.Volume(t, st.ID, "disk", 1<<30)
	got, err := e.Sys.Volumes.Refresh(e.Ctx, v.ID)
	require.NoError(t, err)
	assert.EqualValues(t, 1<<29, got.Allocated, "allocated size from the backend")

	e.FS.RemoveObject(st.ID, v.ID)
	got, err = e.Sys.Volumes.Refresh(e.Ctx, v.ID)
	require.NoError(t, err)
	assert.Equal(t, volume.StatusError, got.Status)
	assert.Contains(t, got.StatusReason, "missing")

	// An unreachable storage leaves its volumes alone.
	w := e.Volume(t, st.ID, "w", 1<<20)
	e.FS.SetDown(st.ID, true)
	_, err = e.Sys.Storages.Refresh(e.Ctx, st.ID)
	require.NoError(t, err)
	got, err = e.Sys.Volumes.Refresh(e.Ctx, w.ID)
	require.NoError(t, err)
	assert.Equal(t, volume.StatusAvailable, got.Status)
	_, err = e.Sys.Volumes.Create(e.Ctx, volume.CreateRequest{Name: "x", StorageID: st.ID, Format: volume.FormatRaw, Size: 1})
	assert.ErrorIs(t, err, errkind.WrongState)
	s, err := e.Sys.Storages.Get(e.Ctx, st.ID)
	require.NoError(t, err)
	assert.Equal(t, storage.StatusError, s.Status)
}

func TestRecover(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	a := e.Volume(t, st.ID, "half-created", 1<<20)
	b := e.Volume(t, st.ID, "half-extended", 1<<20)
	for id, status := range map[uuid.UUID]volume.Status{a.ID: volume.StatusCreating, b.ID: volume.StatusExtending} {
		cur, err := e.Sys.Store.Volumes().Get(e.Ctx, id)
		require.NoError(t, err)
		cur.Status = status // what a crash leaves behind
		require.NoError(t, e.Sys.Store.Volumes().Update(e.Ctx, cur))
	}
	require.NoError(t, e.Sys.Volumes.Recover(e.Ctx))
	_, err := e.Sys.Volumes.Get(e.Ctx, a.ID)
	assert.ErrorIs(t, err, errkind.NotFound, "a half-created volume is removed")
	assert.Nil(t, e.FS.Object(st.ID, a.ID), "with its file")
	got, err := e.Sys.Volumes.Get(e.Ctx, b.ID)
	require.NoError(t, err)
	assert.Equal(t, volume.StatusError, got.Status)
	assert.Contains(t, got.StatusReason, "interrupted")
}

func TestExtendAsksTheHypervisor(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	v := e.Volume(t, st.ID, "disk", 1<<30)
	m := e.VM(t, "vm1", vm.DiskRequest{VolumeID: v.ID})
	e.HV.SetState(m.ID, vm.PowerRunning) // started outside openvair; no event processed yet
	_, err := e.Sys.Volumes.Extend(e.Ctx, v.ID, 2<<30)
	require.ErrorIs(t, err, errkind.InUse)
	assert.Contains(t, err.Error(), "hypervisor reports running")
	got, err := e.Sys.Volumes.Get(e.Ctx, v.ID)
	require.NoError(t, err)
	assert.Equal(t, volume.StatusAvailable, got.Status, "the refused extend released the volume")
	assert.EqualValues(t, 1<<30, got.Size)
	assert.EqualValues(t, 1<<30, e.FS.Object(st.ID, v.ID).Size, "and never touched the file")
}
