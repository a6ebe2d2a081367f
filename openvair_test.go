package openvair_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpenRefusesUnknownNames(t *testing.T) {
	ctx := context.Background()
	_, err := openvair.Open(ctx, openvair.Config{DSN: "oracle://x"})
	assert.ErrorIs(t, err, openvair.ErrUnsupported)
	_, err = openvair.Open(ctx, openvair.Config{DSN: "no-scheme"})
	assert.ErrorIs(t, err, openvair.ErrInvalid)
	_, err = openvair.Open(ctx, openvair.Config{StorageDrivers: map[storage.Type]string{"nfs": "nope"}})
	assert.ErrorIs(t, err, openvair.ErrNotFound)
	_, err = openvair.Open(ctx, openvair.Config{Hypervisor: "nope"})
	assert.ErrorIs(t, err, openvair.ErrNotFound)
}

// TestEveryFailingStepLeavesNoTransitionalStatus runs every operation of the SDK with one driver step
// failing at a time, and checks that afterwards no entity is left in a transitional status: each ended
// available, in error with a reason, or was removed.
func TestEveryFailingStepLeavesNoTransitionalStatus(t *testing.T) {
	steps := []struct{ driver, op string }{
		{"storage", "Prepare"}, {"storage", "Teardown"}, {"storage", "CreateVolume"}, {"storage", "ExtendVolume"},
		{"storage", "DeleteVolume"}, {"storage", "WriteImage"}, {"storage", "DeleteImage"},
		{"hypervisor", "Define"}, {"hypervisor", "Start"}, {"hypervisor", "Shutdown"}, {"hypervisor", "Destroy"},
		{"hypervisor", "Undefine"}, {"hypervisor", "State"},
	}
	for _, step := range steps {
		t.Run(step.driver+"."+step.op, func(t *testing.T) {
			e := sdktest.New(t, nil)
			if step.driver == "storage" {
				e.FS.FailNext(step.op, fake.ErrInjected, -1)
			} else {
				e.HV.FailNext(step.op, fake.ErrInjected, -1)
			}
			ctx := e.Ctx
			s := e.Sys
			st, err := s.Storages.Create(ctx, storage.CreateRequest{Name: "pool", Type: "localfs", Config: localfs.Config{Path: "/srv/pool"}})
			if err != nil {
				assertClean(t, e)
				return
			}
			vol, _ := s.Volumes.Create(ctx, volume.CreateRequest{Name: "disk", StorageID: st.ID, Format: volume.FormatQCOW2, Size: 1 << 30})
			img, _ := s.Images.Create(ctx, image.CreateRequest{Name: "cd", StorageID: st.ID}, bytes.NewReader(sdktest.ISO()))
			if vol != nil {
				_, _ = s.Volumes.Extend(ctx, vol.ID, 2<<30)
			}
			req := sdktest.VMRequest("web", vm.DiskRequest{New: &volume.CreateRequest{Name: "root", StorageID: st.ID, Format: volume.FormatRaw, Size: 1 << 20}})
			if img != nil {
				req.CDROMs = []vm.CDROM{{ImageID: img.ID}}
			}
			if m, err := s.VMs.Create(ctx, req); err == nil {
				_, _ = s.VMs.Start(ctx, m.ID)
				_, _ = s.VMs.Stop(ctx, m.ID, vm.StopOptions{Timeout: 1, ForceAfterTimeout: true})
				_, _ = s.VMs.Stop(ctx, m.ID, vm.StopOptions{Force: true})
				_ = s.VMs.Delete(ctx, m.ID, vm.DeleteOptions{DeleteVolumes: true})
			}
			if img != nil {
				_ = s.Images.Delete(ctx, img.ID)
			}
			if vol != nil {
				_ = s.Volumes.Delete(ctx, vol.ID)
			}
			_ = s.Storages.Delete(ctx, st.ID)
			assertClean(t, e)
		})
	}
}

// assertClean checks that no entity is in a transitional status and every error has a reason.
func assertClean(t *testing.T, e *sdktest.Env) {
	t.Helper()
	ctx := e.Ctx
	sts, err := e.Sys.Storages.List(ctx, storage.ListOptions{})
	require.NoError(t, err)
	for _, st := range sts.Items {
		assert.Contains(t, []storage.Status{storage.StatusAvailable, storage.StatusError}, st.Status, "storage %s", st.Name)
		assert.Equal(t, st.Status == storage.StatusError, st.StatusReason != "", "storage %s: reason iff error", st.Name)
	}
	vols, err := e.Sys.Volumes.List(ctx, volume.ListOptions{})
	require.NoError(t, err)
	for _, v := range vols.Items {
		assert.Contains(t, []volume.Status{volume.StatusAvailable, volume.StatusError}, v.Status, "volume %s", v.Name)
		assert.Equal(t, v.Status == volume.StatusError, v.StatusReason != "", "volume %s: reason iff error", v.Name)
		assert.NotNil(t, e.FS.Object(v.StorageID, v.ID), "volume %s has its file", v.Name)
	}
	imgs, err := e.Sys.Images.List(ctx, image.ListOptions{})
	require.NoError(t, err)
	for _, img := range imgs.Items {
		assert.Contains(t, []image.Status{image.StatusAvailable, image.StatusError}, img.Status, "image %s", img.Name)
		assert.Equal(t, img.Status == image.StatusError, img.StatusReason != "", "image %s: reason iff error", img.Name)
	}
	vms, err := e.Sys.VMs.List(ctx, vm.ListOptions{})
	require.NoError(t, err)
	for _, m := range vms.Items {
		assert.Contains(t, []vm.Status{vm.StatusAvailable, vm.StatusError}, m.Status, "vm %s", m.Name)
		assert.Equal(t, m.Status == vm.StatusError, m.StatusReason != "", "vm %s: reason iff error", m.Name)
		assert.NotNil(t, e.HV.Domain(m.ID), "vm %s has its domain", m.Name)
	}
}

func TestOpenSQLitePersists(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := openvair.Config{DSN: "sqlite://" + dir + "/openvair.db", DataDir: dir}
	sys, err := openvair.Open(ctx, cfg)
	require.NoError(t, err)
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "local", Type: "localfs", Config: localfs.Config{Path: dir + "/pool"}})
	require.NoError(t, err)
	require.NoError(t, sys.Close())

	sys, err = openvair.Open(ctx, cfg)
	require.NoError(t, err)
	defer sys.Close()
	got, err := sys.Storages.Get(ctx, st.ID)
	require.NoError(t, err)
	assert.Equal(t, "local", got.Name)
	assert.Equal(t, storage.StatusAvailable, got.Status)
}

// TestReopenAfterCrashLeavesNothingHalfDone simulates a process that died in the middle of operations (the
// rows still say creating, extending and uploading, with files half there) and checks that the next Open
// resolves every one of them: half-created objects are removed with their files, an interrupted extend is
// left in error with a reason.
func TestReopenAfterCrashLeavesNothingHalfDone(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := openvair.Config{DSN: "sqlite://" + dir + "/openvair.db", DataDir: dir}
	sys, err := openvair.Open(ctx, cfg)
	require.NoError(t, err)
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "local", Type: "localfs", Config: localfs.Config{Path: dir + "/pool"}})
	require.NoError(t, err)
	creating, err := sys.Volumes.Create(ctx, volume.CreateRequest{Name: "creating", StorageID: st.ID, Format: volume.FormatQCOW2, Size: 1 << 30})
	require.NoError(t, err)
	extending, err := sys.Volumes.Create(ctx, volume.CreateRequest{Name: "extending", StorageID: st.ID, Format: volume.FormatRaw, Size: 1 << 20})
	require.NoError(t, err)
	uploading, err := sys.Images.Create(ctx, image.CreateRequest{Name: "uploading", StorageID: st.ID}, bytes.NewReader(sdktest.ISO()))
	require.NoError(t, err)
	// What a crash leaves behind: statuses that no running operation will ever finish.
	for id, status := range map[uuid.UUID]volume.Status{creating.ID: volume.StatusCreating, extending.ID: volume.StatusExtending} {
		v, err := sys.Store.Volumes().Get(ctx, id)
		require.NoError(t, err)
		v.Status = status
		require.NoError(t, sys.Store.Volumes().Update(ctx, v))
	}
	img, err := sys.Store.Images().Get(ctx, uploading.ID)
	require.NoError(t, err)
	img.Status = image.StatusUploading
	require.NoError(t, sys.Store.Images().Update(ctx, img))
	require.NoError(t, sys.Close())

	sys, err = openvair.Open(ctx, cfg)
	require.NoError(t, err)
	defer sys.Close()
	_, err = sys.Volumes.Get(ctx, creating.ID)
	assert.ErrorIs(t, err, openvair.ErrNotFound, "a half-created volume is removed")
	assert.NoFileExists(t, dir+"/pool/volume-"+creating.ID.String(), "with its file")
	_, err = sys.Images.Get(ctx, uploading.ID)
	assert.ErrorIs(t, err, openvair.ErrNotFound, "an interrupted upload is removed")
	assert.NoFileExists(t, dir+"/pool/image-"+uploading.ID.String())
	got, err := sys.Volumes.Get(ctx, extending.ID)
	require.NoError(t, err)
	assert.Equal(t, volume.StatusError, got.Status)
	assert.Contains(t, got.StatusReason, "interrupted")
	got, err = sys.Volumes.Refresh(ctx, extending.ID)
	require.NoError(t, err)
	assert.Equal(t, volume.StatusAvailable, got.Status, "a refresh finds the file healthy and clears the error")
}
