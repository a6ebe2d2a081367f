package repotest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// System opens the SDK over a fresh store with fake drivers, for service-level tests of a store.
func System(t *testing.T, open Opener) (*openvair.System, *fake.Storage, *fake.Hypervisor, context.Context) {
	t.Helper()
	e := sdktest.New(t, open(t))
	return e.Sys, e.FS, e.HV, e.Ctx
}

// RunRaces checks that concurrent service calls on one store produce only legal outcomes.
func RunRaces(t *testing.T, open Opener) {
	t.Run("SameNameCreates", func(t *testing.T) { raceSameName(t, open) })
	t.Run("DeleteExtendAttach", func(t *testing.T) { raceDeleteExtendAttach(t, open) })
}

const racers = 20

func raceSameName(t *testing.T, open Opener) {
	sys, _, _, ctx := System(t, open)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = sys.Storages.Create(ctx, storage.CreateRequest{Name: "same", Type: "localfs",
				Config: map[string]string{"path": fmt.Sprintf("/srv/race%d", i)}})
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
			continue
		}
		assert.ErrorIs(t, err, errkind.AlreadyExists)
	}
	assert.Equal(t, 1, wins, "exactly one storage named 'same'")
	page, err := sys.Storages.List(ctx, storage.ListOptions{})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Equal(t, storage.StatusAvailable, page.Items[0].Status)

	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = sys.Volumes.Create(ctx, volume.CreateRequest{Name: "disk", StorageID: page.Items[0].ID, Format: volume.FormatRaw, Size: 1 << 20})
		}()
	}
	wg.Wait()
	wins = 0
	for _, err := range errs {
		if err == nil {
			wins++
			continue
		}
		assert.ErrorIs(t, err, errkind.AlreadyExists)
	}
	assert.Equal(t, 1, wins, "exactly one volume named 'disk' on the storage")
}

// raceDeleteExtendAttach races deletes, extends and attaches of one volume.
func raceDeleteExtendAttach(t *testing.T, open Opener) {
	sys, fs, _, ctx := System(t, open)
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "pool", Type: "localfs", Config: map[string]string{"path": "/srv/pool"}})
	require.NoError(t, err)
	var vms []*vm.VM
	for i := range 10 {
		m, err := sys.VMs.Create(ctx, vm.CreateRequest{Name: fmt.Sprintf("vm%d", i), CPU: vm.CPU{Sockets: 1, Cores: 1, Threads: 1}, MemoryBytes: 256 << 20})
		require.NoError(t, err)
		vms = append(vms, m)
	}
	total := map[string]int{}
	for round := range 6 {
		for op, n := range raceRound(t, sys, fs, st, vms, round) {
			total[op] += n
		}
	}
	t.Logf("successful operations over 6 rounds: %v", total)
}

// raceRound races deletes, extends and attaches of one new volume; round rotates which goroutines do what.
func raceRound(t *testing.T, sys *openvair.System, fs *fake.Storage, st *storage.Storage, vms []*vm.VM, round int) map[string]int {
	ctx := context.Background()
	vol, err := sys.Volumes.Create(ctx, volume.CreateRequest{Name: fmt.Sprintf("contended%d", round), StorageID: st.ID, Format: volume.FormatQCOW2, Size: 1 << 30})
	require.NoError(t, err)

	type outcome struct {
		op     string
		target int64
		err    error
	}
	out := make([]outcome, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch (i + round) % 3 {
			case 0:
				out[i] = outcome{op: "delete", err: sys.Volumes.Delete(ctx, vol.ID)}
			case 1:
				target := int64(1<<30) + int64(i+1)<<20
				_, err := sys.Volumes.Extend(ctx, vol.ID, target)
				out[i] = outcome{op: "extend", target: target, err: err}
			default:
				_, err := sys.VMs.AttachVolume(ctx, vms[i%len(vms)].ID, vol.ID, "virtio")
				out[i] = outcome{op: "attach", err: err}
			}
		}()
	}
	wg.Wait()

	legal := []error{errkind.WrongState, errkind.InUse, errkind.Conflict, errkind.NotFound, errkind.Invalid, errkind.AlreadyExists}
	wins := map[string]int{}
	var maxExtend int64
	for _, o := range out {
		if o.err == nil {
			wins[o.op]++
			if o.op == "extend" && o.target > maxExtend {
				maxExtend = o.target
			}
			continue
		}
		assert.Truef(t, isAny(o.err, legal), "%s: unexpected error %v", o.op, o.err)
	}
	assert.LessOrEqual(t, wins["delete"], 1)
	assert.LessOrEqual(t, wins["attach"], 1, "a volume that is not shareable belongs to one VM")

	got, err := sys.Volumes.Get(ctx, vol.ID)
	attachedTo := 0
	for _, m := range vms {
		cur, err := sys.VMs.Get(ctx, m.ID)
		require.NoError(t, err)
		assert.Equal(t, vm.StatusAvailable, cur.Status, "no VM left in a transitional status")
		if cur.HasVolume(vol.ID) {
			attachedTo++
		}
	}
	if wins["delete"] == 1 {
		assert.ErrorIs(t, err, errkind.NotFound)
		assert.Zero(t, wins["attach"], "a volume attached cannot have been deleted")
		assert.Nil(t, fs.Object(st.ID, vol.ID), "deleted volume's file is gone")
		assert.Zero(t, attachedTo)
		return wins
	}
	require.NoError(t, err)
	assert.Equal(t, volume.StatusAvailable, got.Status, "no transitional status left behind")
	assert.Equal(t, wins["attach"], attachedTo)
	assert.Len(t, got.Attachments, attachedTo)
	want := int64(1 << 30)
	if maxExtend > 0 {
		want = maxExtend
	}
	assert.Equal(t, want, got.Size, "the largest successful extend is the size: no lost update")
	obj := fs.Object(st.ID, vol.ID)
	require.NotNil(t, obj)
	assert.Equal(t, got.Size, obj.Size, "store and backend agree")
	return wins
}

func isAny(err error, kinds []error) bool {
	for _, k := range kinds {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}
