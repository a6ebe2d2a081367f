package openvair_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/internal/testenv/pg"
	"github.com/openvair/openvair/repo"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// opsOf lists the operations of a target, newest first.
func opsOf(t *testing.T, sys *openvair.System, target uuid.UUID) []*openvair.Operation {
	t.Helper()
	p, err := sys.Operations.List(context.Background(), openvair.OperationListOptions{TargetID: target})
	require.NoError(t, err)
	return p.Items
}

func TestSyncCallsRecordOperations(t *testing.T) {
	e := sdktest.New(t, nil)
	ctx := openvair.WithRequest(e.Ctx, "req-1", "alice")
	st := e.Storage(t, "pool")
	vol, err := e.Sys.Volumes.Create(ctx, volume.CreateRequest{Name: "disk", StorageID: st.ID, Format: volume.FormatQCOW2, Size: 1 << 20})
	require.NoError(t, err)

	ops := opsOf(t, e.Sys, vol.ID)
	require.Len(t, ops, 1)
	op := ops[0]
	assert.Equal(t, volume.OpCreate, op.Kind)
	assert.Equal(t, "volume", op.TargetType)
	assert.Equal(t, operation.StatusSucceeded, op.Status)
	assert.Equal(t, "req-1", op.RequestID)
	assert.Equal(t, "alice", op.Requester)
	require.NotNil(t, op.Result)
	assert.Equal(t, operation.Result{ID: vol.ID, Version: vol.Version}, *op.Result)
	assert.NotNil(t, op.StartedAt)
	assert.NotNil(t, op.FinishedAt)

	_, err = e.Sys.Volumes.Extend(ctx, vol.ID, 1<<10) // shrinking is refused
	require.Error(t, err)
	ops = opsOf(t, e.Sys, vol.ID)
	require.Len(t, ops, 2)
	assert.Equal(t, volume.OpExtend, ops[0].Kind)
	assert.Equal(t, operation.StatusFailed, ops[0].Status)
	require.NotNil(t, ops[0].Error)
	assert.Equal(t, "invalid", ops[0].Error.Kind, ops[0].Error.Message)
}

func TestNestedCallsAreChildOperations(t *testing.T) {
	e := sdktest.New(t, nil)
	ctx := openvair.WithRequest(e.Ctx, "req-vm", "bob")
	st := e.Storage(t, "pool")
	m, err := e.Sys.VMs.Create(ctx, sdktest.VMRequest("web", vm.DiskRequest{New: &volume.CreateRequest{Name: "root", StorageID: st.ID,
		Format: volume.FormatQCOW2, Size: 1 << 20}}))
	require.NoError(t, err)
	p, err := e.Sys.Operations.List(e.Ctx, openvair.OperationListOptions{RequestID: "req-vm"})
	require.NoError(t, err)
	kinds := map[string]uuid.UUID{}
	for _, op := range p.Items {
		kinds[op.Kind] = op.TargetID
		assert.Equal(t, operation.StatusSucceeded, op.Status, op.Kind)
		assert.Equal(t, "bob", op.Requester)
	}
	assert.Equal(t, m.ID, kinds[vm.OpCreate])
	for _, op := range p.Items {
		if op.Kind == vm.OpCreate {
			assert.Equal(t, operation.Progress{Step: 3, Steps: 3, Message: "defining the domain"}, op.Progress, "a VM create reports its steps")
		}
	}
	require.Len(t, m.Disks, 1)
	assert.Equal(t, m.Disks[0].VolumeID, kinds[volume.OpCreate], "the volume the VM create made has its own operation")
}

func TestAsyncOperationsRunOnWorkers(t *testing.T) {
	for _, store := range []string{"memory", "sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			var st repo.Store
			var err error
			switch store {
			case "sqlite":
				st, err = repo.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "ov.db"))
			case "postgres":
				st, err = repo.Open(context.Background(), pg.Start(t))
			}
			require.NoError(t, err)
			e := sdktest.New(t, st)
			pool := e.Storage(t, "pool")
			op, err := e.Sys.Volumes.CreateAsync(e.Ctx, volume.CreateRequest{Name: "a", StorageID: pool.ID, Format: volume.FormatRaw, Size: 4096})
			require.NoError(t, err)
			assert.Equal(t, volume.OpCreate, op.Kind)
			assert.Contains(t, []operation.Status{operation.StatusPending, operation.StatusRunning, operation.StatusSucceeded}, op.Status)

			wctx, cancel := context.WithTimeout(e.Ctx, 30*time.Second)
			defer cancel()
			done, err := e.Sys.Operations.Wait(wctx, op.ID)
			require.NoError(t, err)
			require.Equal(t, operation.StatusSucceeded, done.Status, "%+v", done.Error)
			require.NotNil(t, done.Result)
			vol, err := e.Sys.Volumes.Get(e.Ctx, done.Result.ID)
			require.NoError(t, err)
			assert.Equal(t, volume.StatusAvailable, vol.Status)
			assert.Equal(t, done.Result.ID, done.TargetID)

			// A failing asynchronous call fails its operation, not the submit.
			op, err = e.Sys.Volumes.ExtendAsync(e.Ctx, vol.ID, 1)
			require.NoError(t, err)
			done, err = e.Sys.Operations.Wait(wctx, op.ID)
			require.NoError(t, err)
			assert.Equal(t, operation.StatusFailed, done.Status)

			// Invalid requests are refused before anything is queued.
			_, err = e.Sys.Volumes.CreateAsync(e.Ctx, volume.CreateRequest{Name: "", StorageID: pool.ID, Format: volume.FormatRaw, Size: 4096})
			assert.ErrorIs(t, err, openvair.ErrInvalid)

			op, err = e.Sys.Volumes.DeleteAsync(e.Ctx, vol.ID)
			require.NoError(t, err)
			done, err = e.Sys.Operations.Wait(wctx, op.ID)
			require.NoError(t, err)
			assert.Equal(t, operation.StatusSucceeded, done.Status)
			_, err = e.Sys.Volumes.Get(e.Ctx, vol.ID)
			assert.ErrorIs(t, err, openvair.ErrNotFound)
		})
	}
}

func TestCancelARunningStop(t *testing.T) {
	e := sdktest.New(t, nil)
	m := e.Running(t, "web")
	e.HV.IgnoreShutdown = true
	op, err := e.Sys.VMs.StopAsync(e.Ctx, m.ID, vm.StopOptions{Timeout: time.Hour})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		cur, err := e.Sys.Operations.Get(e.Ctx, op.ID)
		return err == nil && cur.Status == operation.StatusRunning
	}, 10*time.Second, 5*time.Millisecond)
	_, err = e.Sys.Operations.Cancel(e.Ctx, op.ID)
	require.NoError(t, err)
	wctx, cancel := context.WithTimeout(e.Ctx, 10*time.Second)
	defer cancel()
	done, err := e.Sys.Operations.Wait(wctx, op.ID)
	require.NoError(t, err)
	assert.Equal(t, operation.StatusCancelled, done.Status)
	got, err := e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.NotEqual(t, vm.StatusStopping, got.Status, "a cancelled stop does not leave the VM stopping")

	// A finished operation is returned as it is; a running one that cannot be cancelled is refused.
	again, err := e.Sys.Operations.Cancel(e.Ctx, op.ID)
	require.NoError(t, err)
	assert.Equal(t, operation.StatusCancelled, again.Status)
}

func TestExpectedVersion(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	name := "renamed"
	_, err := e.Sys.Storages.Edit(openvair.ExpectVersion(e.Ctx, st.ID, st.Version+1), st.ID, storage.EditRequest{Name: &name})
	require.ErrorIs(t, err, openvair.ErrPreconditionFailed)
	got, err := e.Sys.Storages.Get(e.Ctx, st.ID)
	require.NoError(t, err)
	assert.Equal(t, "pool", got.Name, "nothing changed")
	assert.Equal(t, st.Version, got.Version)

	edited, err := e.Sys.Storages.Edit(openvair.ExpectVersion(e.Ctx, st.ID, st.Version), st.ID, storage.EditRequest{Name: &name})
	require.NoError(t, err)
	assert.Equal(t, name, edited.Name)
	err = e.Sys.Storages.Delete(openvair.ExpectVersion(e.Ctx, st.ID, st.Version), st.ID)
	require.ErrorIs(t, err, openvair.ErrPreconditionFailed, "the edit moved the version on")
}

func TestChangesAreEventsInCommitOrder(t *testing.T) {
	e := sdktest.New(t, nil)
	ctx := openvair.WithRequest(e.Ctx, "req-ev", "carol")
	st := e.Storage(t, "pool")
	vol, err := e.Sys.Volumes.Create(ctx, volume.CreateRequest{Name: "disk", StorageID: st.ID, Format: volume.FormatQCOW2, Size: 1 << 20})
	require.NoError(t, err)
	require.NoError(t, e.Sys.Volumes.Delete(ctx, vol.ID))

	sctx, cancel := context.WithTimeout(e.Ctx, 5*time.Second)
	defer cancel()
	var types []string
	var last int64
	for ev, err := range e.Sys.Events.Subscribe(sctx, 0, openvair.EventFilter{Resource: "volume", ResourceID: vol.ID}) {
		require.NoError(t, err)
		assert.Greater(t, ev.ID, last, "ids increase")
		last = ev.ID
		assert.Equal(t, "req-ev", ev.RequestID)
		assert.Equal(t, "carol", ev.Requester)
		assert.NotEqual(t, uuid.Nil, ev.OperationID)
		types = append(types, ev.Type)
		if ev.Type == "volume.deleted" {
			assert.Equal(t, "null", string(orNull(ev.Data)))
			break
		}
	}
	require.NotEmpty(t, types)
	assert.Equal(t, "volume.created", types[0])
	assert.Equal(t, "volume.deleted", types[len(types)-1])
}

func orNull(b []byte) []byte {
	if len(b) == 0 {
		return []byte("null")
	}
	return b
}

// TestRecoveryWaitsForTheLease: an entity in a transitional status whose operation belongs to another
// process is left alone while that process's lease runs, and recovered once it has expired.
func TestRecoveryWaitsForTheLease(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	vol := e.Volume(t, st.ID, "half", 1<<20)
	ctx := e.Ctx
	cur, err := e.Sys.Store.Volumes().Get(ctx, vol.ID)
	require.NoError(t, err)
	cur.Status = volume.StatusCreating
	require.NoError(t, e.Sys.Store.Volumes().Update(ctx, cur))
	now := time.Now().UTC()
	op := &operation.Operation{ID: uuid.Must(uuid.NewV7()), Kind: volume.OpCreate, TargetType: "volume", TargetID: vol.ID,
		Status: operation.StatusRunning, Owner: "another-process", LeaseUntil: now.Add(500 * time.Millisecond), CreatedAt: now, UpdatedAt: now, StartedAt: &now}
	require.NoError(t, e.Sys.Store.Operations().Create(ctx, op))

	require.NoError(t, e.Sys.Recover(ctx))
	got, err := e.Sys.Volumes.Get(ctx, vol.ID)
	require.NoError(t, err, "another live process's create is not undone")
	assert.Equal(t, volume.StatusCreating, got.Status)

	time.Sleep(time.Until(op.LeaseUntil.Add(10 * time.Millisecond))) // the other process stops renewing
	require.NoError(t, e.Sys.Recover(ctx))
	_, err = e.Sys.Volumes.Get(ctx, vol.ID)
	assert.ErrorIs(t, err, openvair.ErrNotFound, "once the lease expired, the half-created volume is removed")
	failed, err := e.Sys.Operations.Get(ctx, op.ID)
	require.NoError(t, err)
	assert.Equal(t, operation.StatusFailed, failed.Status)
	assert.Contains(t, failed.Error.Message, "another-process")
}

// TestMonitorsStoreOnlyChanges: a monitor cycle that finds nothing new changes no version (so ETags stay
// valid) and writes no event.
func TestMonitorsStoreOnlyChanges(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	vol := e.Volume(t, st.ID, "v", 1<<20)
	img := e.Image(t, st.ID, "i")
	e.Sys.MonitorOnce(e.Ctx)
	st1, err := e.Sys.Storages.Get(e.Ctx, st.ID)
	require.NoError(t, err)
	vol1, err := e.Sys.Volumes.Get(e.Ctx, vol.ID)
	require.NoError(t, err)
	img1, err := e.Sys.Images.Get(e.Ctx, img.ID)
	require.NoError(t, err)
	last, err := e.Sys.Events.Last(e.Ctx)
	require.NoError(t, err)

	e.Sys.MonitorOnce(e.Ctx)
	st2, err := e.Sys.Storages.Get(e.Ctx, st.ID)
	require.NoError(t, err)
	vol2, err := e.Sys.Volumes.Get(e.Ctx, vol.ID)
	require.NoError(t, err)
	img2, err := e.Sys.Images.Get(e.Ctx, img.ID)
	require.NoError(t, err)
	assert.Equal(t, st1.Version, st2.Version)
	assert.Equal(t, vol1.Version, vol2.Version)
	assert.Equal(t, img1.Version, img2.Version)
	after, err := e.Sys.Events.Last(e.Ctx)
	require.NoError(t, err)
	assert.Equal(t, last, after, "no event for a cycle that found nothing new")
}

// TestAsyncExpectedVersionTravelsWithTheOperation: an expected version given with an asynchronous call is
// checked by the worker, so a stale one fails the operation and changes nothing.
func TestAsyncExpectedVersionTravelsWithTheOperation(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	vol := e.Volume(t, st.ID, "v", 1<<20)
	desc := "changed"
	op, err := operation.Async(openvair.ExpectVersion(e.Ctx, vol.ID, vol.Version+5), e.Sys.Operations, func(ctx context.Context) error {
		_, err := e.Sys.Volumes.Edit(ctx, vol.ID, volume.EditRequest{Description: &desc})
		return err
	})
	require.NoError(t, err)
	wctx, cancel := context.WithTimeout(e.Ctx, 10*time.Second)
	defer cancel()
	done, err := e.Sys.Operations.Wait(wctx, op.ID)
	require.NoError(t, err)
	assert.Equal(t, operation.StatusFailed, done.Status)
	require.NotNil(t, done.Error)
	assert.Equal(t, "precondition_failed", done.Error.Kind)
	got, err := e.Sys.Volumes.Get(e.Ctx, vol.ID)
	require.NoError(t, err)
	assert.Equal(t, vol.Version, got.Version, "nothing changed")
}

// TestInstanceIdentity: a process has a stable identity per data directory, so after a restart it fails at
// once what it left running; a second process on the same directory gets an identity of its own.
func TestInstanceIdentity(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := openvair.Config{DSN: "sqlite://" + filepath.Join(dir, "ov.db"), DataDir: dir}
	first, err := openvair.Open(ctx, cfg)
	require.NoError(t, err)
	owner := first.Operations.Owner()
	second, err := openvair.Open(ctx, cfg)
	require.NoError(t, err)
	assert.NotEqual(t, owner, second.Operations.Owner(), "the data directory is held by the first process")
	require.NoError(t, second.Close())

	// What a kill -9 leaves: an operation of this process, running, with a lease far from over.
	now := time.Now().UTC()
	left := &operation.Operation{ID: uuid.Must(uuid.NewV7()), Kind: volume.OpCreate, TargetType: "volume",
		Status: operation.StatusRunning, Owner: owner, LeaseUntil: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now, StartedAt: &now}
	require.NoError(t, first.Store.Operations().Create(ctx, left))
	require.NoError(t, first.Close())

	again, err := openvair.Open(ctx, cfg)
	require.NoError(t, err)
	defer again.Close()
	assert.Equal(t, owner, again.Operations.Owner(), "the identity survives a restart")
	got, err := again.Operations.Get(ctx, left.ID)
	require.NoError(t, err)
	assert.Equal(t, operation.StatusFailed, got.Status, "what the earlier life left running is failed at once")
}

// TestAsyncFormsOfLongCalls: the asynchronous forms of the long calls return a pending or running operation
// at once, and the work is done when it ends.
func TestAsyncFormsOfLongCalls(t *testing.T) {
	e := sdktest.New(t, nil)
	wait := func(op *openvair.Operation, err error) *openvair.Operation {
		t.Helper()
		require.NoError(t, err)
		wctx, cancel := context.WithTimeout(e.Ctx, 10*time.Second)
		defer cancel()
		done, err := e.Sys.Operations.Wait(wctx, op.ID)
		require.NoError(t, err)
		require.Equal(t, operation.StatusSucceeded, done.Status, "%s: %+v", done.Kind, done.Error)
		return done
	}
	st := wait(e.Sys.Storages.CreateAsync(e.Ctx, storage.CreateRequest{Name: "pool", Type: "localfs",
		Config: localfs.Config{Path: "/srv/pool"}}))
	m := wait(e.Sys.VMs.CreateAsync(e.Ctx, sdktest.VMRequest("web", vm.DiskRequest{New: &volume.CreateRequest{Name: "root",
		StorageID: st.Result.ID, Format: volume.FormatQCOW2, Size: 1 << 20}})))
	wait(e.Sys.VMs.StartAsync(e.Ctx, m.Result.ID))
	got, err := e.Sys.VMs.Get(e.Ctx, m.Result.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.PowerRunning, got.PowerState)
	wait(e.Sys.VMs.StopAsync(e.Ctx, m.Result.ID, vm.StopOptions{Force: true}))
	wait(e.Sys.VMs.DeleteAsync(e.Ctx, m.Result.ID, vm.DeleteOptions{DeleteVolumes: true}))
	wait(e.Sys.Storages.DeleteAsync(e.Ctx, st.Result.ID))
	_, err = e.Sys.Storages.Get(e.Ctx, st.Result.ID)
	assert.ErrorIs(t, err, openvair.ErrNotFound)
}
