package storage_test

import (
	"github.com/openvair/openvair/internal/fsm/fsmtest"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/internal/validate"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTransitionTable(t *testing.T) {
	legal := map[storage.Status][]storage.Status{
		storage.StatusCreating:  {storage.StatusAvailable, storage.StatusError},
		storage.StatusAvailable: {storage.StatusAvailable, storage.StatusError, storage.StatusDeleting},
		storage.StatusError:     {storage.StatusAvailable, storage.StatusError, storage.StatusDeleting},
		storage.StatusDeleting:  {storage.StatusError},
	}
	fsmtest.Check(t, legal, storage.Status.CanTransition, func(from, to storage.Status) (storage.Status, error) {
		e := &storage.Storage{Status: from}
		err := e.SetStatus(to, "reason")
		if err == nil {
			assert.Equal(t, to == storage.StatusError, e.StatusReason == "reason", "a reason only with error")
		}
		return e.Status, err
	})
}

func TestCreateValidation(t *testing.T) {
	e := sdktest.New(t, nil)
	long := strings.Repeat("a", validate.MaxNameLen+1)
	cases := []struct {
		name   string
		req    storage.CreateRequest
		fields []string
	}{
		{"everything wrong at once", storage.CreateRequest{Name: "", Description: "bad\x00", Type: "zfs"}, []string{"name", "description", "type"}},
		{"name too long", storage.CreateRequest{Name: long, Type: storage.TypeLocalFS, LocalFS: &storage.LocalFSSpec{Path: "/srv/x"}}, []string{"name"}},
		{"name with a slash", storage.CreateRequest{Name: "a/b", Type: storage.TypeLocalFS, LocalFS: &storage.LocalFSSpec{Path: "/srv/x"}}, []string{"name"}},
		{"localfs without spec", storage.CreateRequest{Name: "a", Type: storage.TypeLocalFS}, []string{"localfs"}},
		{"relative path", storage.CreateRequest{Name: "a", Type: storage.TypeLocalFS, LocalFS: &storage.LocalFSSpec{Path: "srv/x"}}, []string{"localfs.path"}},
		{"path with ..", storage.CreateRequest{Name: "a", Type: storage.TypeLocalFS, LocalFS: &storage.LocalFSSpec{Path: "/srv/../etc"}}, []string{"localfs.path"}},
		{"root path", storage.CreateRequest{Name: "a", Type: storage.TypeLocalFS, LocalFS: &storage.LocalFSSpec{Path: "/"}}, []string{"localfs.path"}},
		{"path and device", storage.CreateRequest{Name: "a", Type: storage.TypeLocalFS, LocalFS: &storage.LocalFSSpec{Path: "/srv/x", Device: "/dev/vdb"}}, []string{"localfs"}},
		{"device outside /dev", storage.CreateRequest{Name: "a", Type: storage.TypeLocalFS, LocalFS: &storage.LocalFSSpec{Device: "/tmp/vdb", FSType: "ext4", Format: true}}, []string{"localfs.device"}},
		{"device without fs or intent", storage.CreateRequest{Name: "a", Type: storage.TypeLocalFS, LocalFS: &storage.LocalFSSpec{Device: "/dev/vdb", FSType: "btrfs"}}, []string{"localfs.fs_type", "localfs"}},
		{"wipe without format", storage.CreateRequest{Name: "a", Type: storage.TypeLocalFS, LocalFS: &storage.LocalFSSpec{Device: "/dev/vdb", FSType: "ext4", ReuseFilesystem: true, Wipe: true}}, []string{"localfs.wipe"}},
		{"wipe in directory mode", storage.CreateRequest{Name: "a", Type: storage.TypeLocalFS, LocalFS: &storage.LocalFSSpec{Path: "/srv/x", Wipe: true}}, []string{"localfs"}},
		{"real path from the caller", storage.CreateRequest{Name: "a", Type: storage.TypeLocalFS, LocalFS: &storage.LocalFSSpec{Path: "/srv/x", RealPath: "/srv/y"}}, []string{"localfs.real_path"}},
		{"nfs bad server and export", storage.CreateRequest{Name: "a", Type: storage.TypeNFS, NFS: &storage.NFSSpec{Server: "bad host!", Export: "x"}}, []string{"nfs.server", "nfs.export"}},
		{"nfs v4", storage.CreateRequest{Name: "a", Type: storage.TypeNFS, NFS: &storage.NFSSpec{Server: "10.0.0.1", Export: "/x", Version: 4}}, []string{"nfs.version"}},
		{"both specs", storage.CreateRequest{Name: "a", Type: storage.TypeNFS, NFS: &storage.NFSSpec{Server: "h", Export: "/x"}, LocalFS: &storage.LocalFSSpec{Path: "/x"}}, []string{"localfs"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.Sys.Storages.Create(e.Ctx, c.req)
			require.ErrorIs(t, err, errkind.Invalid)
			var ve *errkind.ValidationError
			require.ErrorAs(t, err, &ve)
			var got []string
			for _, f := range ve.Fields {
				got = append(got, f.Field)
			}
			assert.ElementsMatch(t, c.fields, got)
		})
	}
	page, err := e.Sys.Storages.List(e.Ctx, storage.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, page.Items, "bad input creates nothing")
}

func TestCreateGetListEdit(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "fast")
	assert.Equal(t, storage.StatusAvailable, st.Status)
	assert.EqualValues(t, sdktest.Capacity, st.Capacity)
	assert.EqualValues(t, sdktest.Capacity, st.Available)

	got, err := e.Sys.Storages.Get(e.Ctx, st.ID)
	require.NoError(t, err)
	assert.Equal(t, st.Name, got.Name)
	_, err = e.Sys.Storages.Get(e.Ctx, uuid.New())
	assert.ErrorIs(t, err, errkind.NotFound)

	_, err = e.Sys.Storages.Create(e.Ctx, storage.CreateRequest{Name: "fast", Type: storage.TypeLocalFS, LocalFS: &storage.LocalFSSpec{Path: "/srv/other"}})
	assert.ErrorIs(t, err, errkind.AlreadyExists, "same name")
	_, err = e.Sys.Storages.Create(e.Ctx, storage.CreateRequest{Name: "other", Type: storage.TypeLocalFS, LocalFS: &storage.LocalFSSpec{Path: "/srv/fast"}})
	assert.ErrorIs(t, err, errkind.AlreadyExists, "same directory")
	n1, err := e.Sys.Storages.Create(e.Ctx, storage.CreateRequest{Name: "n1", Type: storage.TypeNFS, NFS: &storage.NFSSpec{Server: "nfs.example", Export: "/a"}})
	require.NoError(t, err)
	assert.Equal(t, 3, n1.NFS.Version, "NFS version defaults to 3")
	_, err = e.Sys.Storages.Create(e.Ctx, storage.CreateRequest{Name: "n2", Type: storage.TypeNFS, NFS: &storage.NFSSpec{Server: "nfs.example", Export: "/a"}})
	assert.ErrorIs(t, err, errkind.AlreadyExists, "same server and export")

	name, desc := "renamed", "ssd pool"
	edited, err := e.Sys.Storages.Edit(e.Ctx, st.ID, storage.EditRequest{Name: &name, Description: &desc})
	require.NoError(t, err)
	assert.Equal(t, "renamed", edited.Name)
	assert.Equal(t, "ssd pool", edited.Description)
	dup := "n1"
	_, err = e.Sys.Storages.Edit(e.Ctx, st.ID, storage.EditRequest{Name: &dup})
	assert.ErrorIs(t, err, errkind.AlreadyExists)
	bad := ""
	_, err = e.Sys.Storages.Edit(e.Ctx, st.ID, storage.EditRequest{Name: &bad})
	assert.ErrorIs(t, err, errkind.Invalid)

	page, err := e.Sys.Storages.List(e.Ctx, storage.ListOptions{Type: storage.TypeNFS})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Equal(t, "n1", page.Items[0].Name)
}

func TestCreateFailureLeavesNothing(t *testing.T) {
	e := sdktest.New(t, nil)
	e.FS.FailNext("Prepare", fake.ErrInjected, 1)
	_, err := e.Sys.Storages.Create(e.Ctx, storage.CreateRequest{Name: "broken", Type: storage.TypeLocalFS, LocalFS: &storage.LocalFSSpec{Path: "/srv/b"}})
	require.ErrorIs(t, err, fake.ErrInjected)
	page, err := e.Sys.Storages.List(e.Ctx, storage.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, page.Items)
	e.Storage(t, "broken") // the name and directory are free again
}

func TestDeleteRules(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	vol := e.Volume(t, st.ID, "disk1", 1<<30)
	img := e.Image(t, st.ID, "installer")

	err := e.Sys.Storages.Delete(e.Ctx, st.ID)
	require.ErrorIs(t, err, errkind.InUse)
	var oe *errkind.Error
	require.ErrorAs(t, err, &oe)
	assert.ElementsMatch(t, []errkind.Ref{{Kind: "volume", ID: vol.ID.String(), Name: "disk1"}, {Kind: "image", ID: img.ID.String(), Name: "installer"}}, oe.Refs)
	assert.Contains(t, err.Error(), `"disk1"`)
	assert.Contains(t, err.Error(), `"installer"`)
	got, err := e.Sys.Storages.Get(e.Ctx, st.ID)
	require.NoError(t, err)
	assert.Equal(t, storage.StatusAvailable, got.Status, "a refused delete changes nothing")

	require.NoError(t, e.Sys.Volumes.Delete(e.Ctx, vol.ID))
	require.NoError(t, e.Sys.Images.Delete(e.Ctx, img.ID))

	e.FS.FailNext("Teardown", fake.ErrInjected, 1)
	require.ErrorIs(t, e.Sys.Storages.Delete(e.Ctx, st.ID), fake.ErrInjected)
	got, err = e.Sys.Storages.Get(e.Ctx, st.ID)
	require.NoError(t, err)
	assert.Equal(t, storage.StatusError, got.Status, "a failed delete leaves error, not deleting")
	assert.Contains(t, got.StatusReason, "injected")

	require.NoError(t, e.Sys.Storages.Delete(e.Ctx, st.ID), "a storage in error can be deleted")
	_, err = e.Sys.Storages.Get(e.Ctx, st.ID)
	assert.ErrorIs(t, err, errkind.NotFound)
	assert.ErrorIs(t, e.Sys.Storages.Delete(e.Ctx, st.ID), errkind.NotFound)
}

func TestRefreshHealth(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	e.Volume(t, st.ID, "d", 1<<30)

	got, err := e.Sys.Storages.Refresh(e.Ctx, st.ID)
	require.NoError(t, err)
	assert.EqualValues(t, sdktest.Capacity-(1<<30), got.Available, "capacity comes from the backend")

	e.FS.SetDown(st.ID, true)
	got, err = e.Sys.Storages.Refresh(e.Ctx, st.ID)
	require.NoError(t, err)
	assert.Equal(t, storage.StatusError, got.Status)
	assert.Contains(t, got.StatusReason, "unreachable")

	_, err = e.Sys.Volumes.Create(e.Ctx, volumeReq(st.ID))
	assert.ErrorIs(t, err, errkind.WrongState, "no volumes on a storage in error")

	e.FS.SetDown(st.ID, false)
	got, err = e.Sys.Storages.Refresh(e.Ctx, st.ID)
	require.NoError(t, err)
	assert.Equal(t, storage.StatusAvailable, got.Status, "monitoring makes it available again")
	assert.Empty(t, got.StatusReason)
}

func TestRecoverInterrupted(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	// Simulate a crash mid-delete: the row says deleting.
	cur, err := e.Sys.Store.Storages().Get(e.Ctx, st.ID)
	require.NoError(t, err)
	require.NoError(t, cur.SetStatus(storage.StatusDeleting, ""))
	require.NoError(t, e.Sys.Store.Storages().Update(e.Ctx, cur))

	got, err := e.Sys.Storages.Refresh(e.Ctx, st.ID)
	require.NoError(t, err)
	assert.Equal(t, storage.StatusDeleting, got.Status, "monitoring never overwrites a transitional status")

	// Recovery finishes the delete that was asked for.
	require.NoError(t, e.Sys.Storages.Recover(e.Ctx))
	_, err = e.Sys.Storages.Get(e.Ctx, st.ID)
	require.ErrorIs(t, err, errkind.NotFound, "an interrupted delete is completed")

	// When the backend cannot tear it down now, it is left in error with the reason, and can be deleted later.
	st = e.Storage(t, "pool2")
	cur, err = e.Sys.Store.Storages().Get(e.Ctx, st.ID)
	require.NoError(t, err)
	require.NoError(t, cur.SetStatus(storage.StatusDeleting, ""))
	require.NoError(t, e.Sys.Store.Storages().Update(e.Ctx, cur))
	e.FS.FailNext("Teardown", errkind.New(errkind.Unavailable, "fake", "", "server down"), 1)
	require.NoError(t, e.Sys.Storages.Recover(e.Ctx))
	got, err = e.Sys.Storages.Get(e.Ctx, st.ID)
	require.NoError(t, err)
	assert.Equal(t, storage.StatusError, got.Status)
	assert.Contains(t, got.StatusReason, "delete failed")
	require.NoError(t, e.Sys.Storages.Delete(e.Ctx, st.ID), "and can then be deleted")

	// A create interrupted before Prepare returned goes to error.
	st = e.Storage(t, "pool3")
	cur, err = e.Sys.Store.Storages().Get(e.Ctx, st.ID)
	require.NoError(t, err)
	cur.Status = storage.StatusCreating
	require.NoError(t, e.Sys.Store.Storages().Update(e.Ctx, cur))
	require.NoError(t, e.Sys.Storages.Recover(e.Ctx))
	got, err = e.Sys.Storages.Get(e.Ctx, st.ID)
	require.NoError(t, err)
	assert.Equal(t, storage.StatusError, got.Status)
	assert.Contains(t, got.StatusReason, "interrupted while creating")
}

func volumeReq(storageID uuid.UUID) volume.CreateRequest {
	return volume.CreateRequest{Name: "v", StorageID: storageID, Format: volume.FormatRaw, Size: 1 << 20}
}

// TestLocationAndPool: the location of a local storage is its resolved path when recorded (else the given
// one), and the backend's view carries CreatedDir.
func TestLocationAndPool(t *testing.T) {
	cases := []struct {
		name string
		spec storage.LocalFSSpec
		want string
	}{
		{"directory", storage.LocalFSSpec{Path: "/srv/a"}, "dir:/srv/a"},
		{"directory resolved", storage.LocalFSSpec{Path: "/srv/link", RealPath: "/data/a"}, "dir:/data/a"},
		{"device", storage.LocalFSSpec{Device: "/dev/vdb"}, "dev:/dev/vdb"},
		{"device resolved", storage.LocalFSSpec{Device: "/dev/disk/by-id/x", RealPath: "/dev/vdb"}, "dev:/dev/vdb"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := c.spec
			st := &storage.Storage{Type: storage.TypeLocalFS, LocalFS: &spec, CreatedDir: true}
			assert.Equal(t, c.want, st.Location())
			assert.True(t, st.Pool().LocalFS.CreatedDir)
			assert.False(t, st.LocalFS.CreatedDir, "Pool copies")
		})
	}
}
