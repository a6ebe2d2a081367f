package storage_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/fsm/fsmtest"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/driver/nfs"
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

// TestCreateValidation: the service checks the request and the type's backend checks the configuration
// (here the real localfs and nfs backends); every bad field is reported at once, named as in the request.
func TestCreateValidation(t *testing.T) {
	e := checkedSystem(t)
	long := strings.Repeat("a", validate.MaxNameLen+1)
	ok := t.TempDir()
	cases := []struct {
		name   string
		req    storage.CreateRequest
		fields []string
	}{
		{"everything wrong at once", storage.CreateRequest{Name: "", Description: "bad\x00", Type: "ZFS!"}, []string{"name", "description", "type"}},
		{"unknown type", storage.CreateRequest{Name: "a", Type: "zfs"}, nil},
		{"name too long", storage.CreateRequest{Name: long, Type: "localfs", Config: localfs.Config{Path: ok}}, []string{"name"}},
		{"name with a slash", storage.CreateRequest{Name: "a/b", Type: "localfs", Config: localfs.Config{Path: ok}}, []string{"name"}},
		{"name and config wrong at once", storage.CreateRequest{Name: "a/b", Type: "localfs", Config: localfs.Config{Path: "srv/x"}}, []string{"name", "config.path"}},
		{"localfs without config", storage.CreateRequest{Name: "a", Type: "localfs"}, []string{"config"}},
		{"config not an object", storage.CreateRequest{Name: "a", Type: "localfs", Config: []string{"x"}}, []string{"config"}},
		{"relative path", storage.CreateRequest{Name: "a", Type: "localfs", Config: localfs.Config{Path: "srv/x"}}, []string{"config.path"}},
		{"path with ..", storage.CreateRequest{Name: "a", Type: "localfs", Config: localfs.Config{Path: "/srv/../etc"}}, []string{"config.path"}},
		{"root path", storage.CreateRequest{Name: "a", Type: "localfs", Config: localfs.Config{Path: "/"}}, []string{"config.path"}},
		{"path and device", storage.CreateRequest{Name: "a", Type: "localfs", Config: localfs.Config{Path: "/srv/x", Device: "/dev/vdb"}}, []string{"config"}},
		{"device outside /dev", storage.CreateRequest{Name: "a", Type: "localfs", Config: localfs.Config{Device: "/tmp/vdb", FSType: "ext4", Format: true}}, []string{"config.device"}},
		{"device without fs or intent", storage.CreateRequest{Name: "a", Type: "localfs", Config: localfs.Config{Device: "/dev/vdb", FSType: "zfs"}}, []string{"config.fs_type", "config"}},
		{"wipe without format", storage.CreateRequest{Name: "a", Type: "localfs", Config: localfs.Config{Device: "/dev/vdb", FSType: "ext4", ReuseFilesystem: true, Wipe: true}}, []string{"config.wipe"}},
		{"wipe in directory mode", storage.CreateRequest{Name: "a", Type: "localfs", Config: localfs.Config{Path: "/srv/x", Wipe: true}}, []string{"config"}},
		{"state from the caller", storage.CreateRequest{Name: "a", Type: "localfs", Config: json.RawMessage(`{"path":"/srv/x","real_path":"/srv/y"}`)}, []string{"config.real_path"}},
		{"wrong JSON type", storage.CreateRequest{Name: "a", Type: "localfs", Config: json.RawMessage(`{"path":7}`)}, []string{"config.path"}},
		{"nfs bad server and export", storage.CreateRequest{Name: "a", Type: "nfs", Config: nfs.Config{Server: "bad host!", Export: "x"}}, []string{"config.server", "config.export"}},
		{"nfs v4", storage.CreateRequest{Name: "a", Type: "nfs", Config: nfs.Config{Server: "10.0.0.1", Export: "/x", Version: 4}}, []string{"config.version"}},
		{"nfs given localfs fields", storage.CreateRequest{Name: "a", Type: "nfs", Config: localfs.Config{Path: "/x"}}, []string{"config.path"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.Storages.Create(t.Context(), c.req)
			if c.fields == nil {
				require.ErrorIs(t, err, errkind.Unavailable, "no backend for the type")
				return
			}
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
	page, err := e.Storages.List(t.Context(), storage.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, page.Items, "bad input creates nothing")
}

// TestCreateRequestShorthand: a request in JSON may give the configuration under a key named after the
// type, as earlier versions did; giving both forms, or an unknown key, is refused.
func TestCreateRequestShorthand(t *testing.T) {
	var r storage.CreateRequest
	require.NoError(t, json.Unmarshal([]byte(`{"name":"a","type":"nfs","nfs":{"server":"h","export":"/x"}}`), &r))
	assert.Equal(t, storage.Type("nfs"), r.Type)
	assert.JSONEq(t, `{"server":"h","export":"/x"}`, string(r.Config.(json.RawMessage)))
	require.NoError(t, json.Unmarshal([]byte(`{"name":"a","type":"nfs","config":{"server":"h"}}`), &r))
	assert.JSONEq(t, `{"server":"h"}`, string(r.Config.(json.RawMessage)))
	for body, field := range map[string]string{
		`{"name":"a","type":"nfs","config":{},"nfs":{}}`:    "nfs",
		`{"name":"a","type":"nfs","localfs":{"path":"/x"}}`: "localfs",
		`{"name":7,"type":"nfs"}`:                           "name",
	} {
		err := json.Unmarshal([]byte(body), &r)
		var ve *errkind.ValidationError
		require.ErrorAs(t, err, &ve, body)
		require.Len(t, ve.Fields, 1, body)
		assert.Equal(t, field, ve.Fields[0].Field, body)
	}
}

// checkedSystem opens a System on memory: whose localfs and nfs storages are checked by the real backends.
func checkedSystem(t *testing.T) *openvair.System {
	t.Helper()
	lb, err := localfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	nb, err := nfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	sys, err := openvair.Open(t.Context(), openvair.Config{DSN: "memory:", HypervisorInstance: fake.NewHypervisor(),
		StorageBackends: map[storage.Type]driver.StorageBackend{"localfs": lb, "nfs": nb}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sys.Close() })
	return sys
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

	_, err = e.Sys.Storages.Create(e.Ctx, storage.CreateRequest{Name: "fast", Type: "localfs", Config: localfs.Config{Path: "/srv/other"}})
	assert.ErrorIs(t, err, errkind.AlreadyExists, "same name")
	_, err = e.Sys.Storages.Create(e.Ctx, storage.CreateRequest{Name: "other", Type: "localfs", Config: localfs.Config{Path: "/srv/fast"}})
	assert.ErrorIs(t, err, errkind.AlreadyExists, "same directory")
	n1, err := e.Sys.Storages.Create(e.Ctx, storage.CreateRequest{Name: "n1", Type: "nfs", Config: nfs.Config{Server: "nfs.example", Export: "/a"}})
	require.NoError(t, err)
	assert.Equal(t, `fake:{"export":"/a","server":"nfs.example"}`, n1.Location, "the backend gives the location")
	_, err = e.Sys.Storages.Create(e.Ctx, storage.CreateRequest{Name: "n2", Type: "nfs", Config: nfs.Config{Server: "nfs.example", Export: "/a"}})
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

	page, err := e.Sys.Storages.List(e.Ctx, storage.ListOptions{Type: "nfs"})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Equal(t, "n1", page.Items[0].Name)
}

func TestCreateFailureLeavesNothing(t *testing.T) {
	e := sdktest.New(t, nil)
	e.FS.FailNext("Prepare", fake.ErrInjected, 1)
	_, err := e.Sys.Storages.Create(e.Ctx, storage.CreateRequest{Name: "broken", Type: "localfs", Config: localfs.Config{Path: "/srv/b"}})
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

// TestPool: the backend's view of a storage carries its type, configuration and state, as copies.
func TestPool(t *testing.T) {
	st := &storage.Storage{ID: uuid.New(), Type: "localfs", Config: json.RawMessage(`{"path":"/srv/a"}`),
		State: json.RawMessage(`{"created_dir":true}`), Location: "dir:/srv/a"}
	pool := st.Pool()
	assert.Equal(t, st.ID, pool.ID)
	assert.Equal(t, "localfs", pool.Type)
	assert.JSONEq(t, `{"path":"/srv/a"}`, string(pool.Config))
	assert.JSONEq(t, `{"created_dir":true}`, string(pool.State))
	pool.Config[2], pool.State[2] = 'X', 'X'
	assert.JSONEq(t, `{"path":"/srv/a"}`, string(st.Config), "Pool copies")
	assert.JSONEq(t, `{"created_dir":true}`, string(st.State), "Pool copies")
	c := st.Clone()
	c.Config[2] = 'X'
	assert.JSONEq(t, `{"path":"/srv/a"}`, string(st.Config), "Clone copies")
	var lc localfs.Config
	require.NoError(t, st.DecodeConfig(&lc))
	assert.Equal(t, "/srv/a", lc.Path)

}
