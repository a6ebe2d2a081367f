package openvair_test

import (
	"context"
	"errors"
	"testing"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/repo"
	"github.com/openvair/openvair/repo/memory"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rerunStore runs every outermost unit of work twice, as PostgreSQL does after a serialization failure:
// once rolled back, then for real. The repo.Store contract allows it, so every function given to InTx must
// be safe to run again.
type rerunStore struct {
	repo.Store
	// between, when set, runs between the two attempts (the concurrent writer that made the first fail).
	between *func()
}

type rerunKey struct{}

var errRollBack = errors.New("rolled back to run again")

func (s rerunStore) InTx(ctx context.Context, fn func(ctx context.Context) error) error {
	if ctx.Value(rerunKey{}) != nil {
		return s.Store.InTx(ctx, fn)
	}
	ctx = context.WithValue(ctx, rerunKey{}, true)
	err := s.Store.InTx(ctx, func(ctx context.Context) error {
		if err := fn(ctx); err != nil {
			return err
		}
		return errRollBack
	})
	if !errors.Is(err, errRollBack) {
		return err
	}
	if s.between != nil && *s.between != nil {
		(*s.between)()
	}
	return s.Store.InTx(ctx, fn)
}

// TestUnitsOfWorkRunTwice drives the services over a store that runs every unit of work twice and checks
// the outcome is the one a single run gives: the same entities, versions, operations and preconditions.
func TestUnitsOfWorkRunTwice(t *testing.T) {
	var between func()
	mem := memory.New()
	e := sdktest.New(t, rerunStore{Store: mem, between: &between})
	ctx := e.Ctx
	st := e.Storage(t, "pool")
	vol, err := e.Sys.Volumes.Create(ctx, volume.CreateRequest{Name: "disk", StorageID: st.ID, Format: volume.FormatQCOW2, Size: 1 << 20})
	require.NoError(t, err)
	assert.EqualValues(t, 2, vol.Version, "created, then made available")
	vol, err = e.Sys.Volumes.Extend(ctx, vol.ID, 2<<20)
	require.NoError(t, err)
	assert.EqualValues(t, 2<<20, vol.Size)

	// A stale expected version is refused on the second run too; a right one passes once.
	desc := "x"
	_, err = e.Sys.Volumes.Edit(openvair.ExpectVersion(ctx, vol.ID, vol.Version-1), vol.ID, volume.EditRequest{Description: &desc})
	require.ErrorIs(t, err, openvair.ErrPreconditionFailed)
	edited, err := e.Sys.Volumes.Edit(openvair.ExpectVersion(ctx, vol.ID, vol.Version), vol.ID, volume.EditRequest{Description: &desc})
	require.NoError(t, err)
	assert.Equal(t, vol.Version+1, edited.Version)

	// Another writer changes the volume between the two runs of a conditional edit: the second run checks
	// the precondition again, so the edit is refused instead of overwriting that change.
	other := "other writer"
	units := 0
	between = func() {
		if units++; units != 2 { // the edit's own unit of work (after the one that records its operation)
			return
		}
		cur, err := mem.Volumes().Get(context.Background(), vol.ID)
		require.NoError(t, err)
		cur.Description = other
		require.NoError(t, mem.Volumes().Update(context.Background(), cur))
	}
	late := "late"
	_, err = e.Sys.Volumes.Edit(openvair.ExpectVersion(ctx, vol.ID, edited.Version), vol.ID, volume.EditRequest{Description: &late})
	require.ErrorIs(t, err, openvair.ErrPreconditionFailed, "no lost update")
	between = nil
	assert.GreaterOrEqual(t, units, 2, "the other writer ran")
	got, err := e.Sys.Volumes.Get(ctx, vol.ID)
	require.NoError(t, err)
	assert.Equal(t, other, got.Description)
	vol = got

	m := e.Running(t, "web", vm.DiskRequest{VolumeID: vol.ID})
	_, err = e.Sys.VMs.Stop(ctx, m.ID, vm.StopOptions{Force: true})
	require.NoError(t, err)
	require.NoError(t, e.Sys.VMs.Delete(ctx, m.ID, vm.DeleteOptions{DeleteVolumes: true}))
	require.NoError(t, e.Sys.Storages.Delete(ctx, st.ID))

	_, err = e.Sys.Storages.Get(ctx, st.ID)
	assert.ErrorIs(t, err, openvair.ErrNotFound)
	ops, err := e.Sys.Operations.List(ctx, openvair.OperationListOptions{Limit: 1000})
	require.NoError(t, err)
	for _, op := range ops.Items {
		assert.True(t, op.Status.Final(), "%s is %s", op.Kind, op.Status)
	}
	evs, err := e.Sys.Store.Events().After(ctx, 0, 1000)
	require.NoError(t, err)
	seen := map[int64]bool{}
	for _, ev := range evs {
		assert.False(t, seen[ev.ID], "event %d once", ev.ID)
		seen[ev.ID] = true
	}
}
