package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// stoppedVM makes a storage and a stopped VM with one new disk.
func stoppedVM(t *testing.T, e *env) *vm.VM {
	t.Helper()
	ctx := t.Context()
	st, err := e.c.CreateStorage(ctx, storage.CreateRequest{Name: "pool", Type: "localfs",
		Config: map[string]string{"path": e.base + "/pool"}})
	require.NoError(t, err)
	v, err := e.c.CreateVM(ctx, vm.CreateRequest{Name: "guest", CPU: vm.CPU{Sockets: 1, Cores: 1, Threads: 1},
		MemoryBytes: 64 << 20, Disks: []vm.DiskRequest{{New: &volume.CreateRequest{Name: "root", StorageID: st.ID,
			Format: volume.FormatQCOW2, Size: 16 << 20}}}})
	require.NoError(t, err)
	return v
}

// A running operation of a cancellable kind (a graceful stop the guest ignores) ends cancelled when it is
// cancelled: Wait returns it with an error of kind cancelled (ErrWrongState, as embedded), and the VM
// keeps running. Cancelling an ended operation returns it as it is; an unknown one is ErrNotFound.
func TestCancelOperation(t *testing.T) {
	hv := fake.NewHypervisor()
	hv.IgnoreShutdown = true // a guest without an OS
	e := newEnv(t, nil, hv)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	v := stoppedVM(t, e)
	_, err := e.c.StartVM(ctx, v.ID)
	require.NoError(t, err)

	op, err := e.c.StopVMAsync(ctx, v.ID, vm.StopOptions{Timeout: time.Hour})
	require.NoError(t, err)
	assert.Equal(t, "vm.stop", op.Kind)
	assert.True(t, op.Cancellable)
	require.Eventually(t, func() bool {
		cur, err := e.c.GetOperation(ctx, op.ID)
		return err == nil && cur.Status == operation.StatusRunning
	}, 10*time.Second, 5*time.Millisecond, "the stop runs")

	cancelled, err := e.c.CancelOperation(ctx, op.ID)
	require.NoError(t, err)
	assert.True(t, cancelled.CancelRequested || cancelled.Status == operation.StatusCancelled)

	done, err := e.c.Wait(ctx, op)
	require.ErrorIs(t, err, openvair.ErrWrongState, "a cancelled operation")
	var ce *client.Error
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 409, ce.Status)
	require.NotNil(t, done)
	assert.Equal(t, operation.StatusCancelled, done.Status)
	require.NotNil(t, done.Error)
	assert.Equal(t, ce.Kind, done.Error.Kind)
	assert.Contains(t, done.Error.Message, "cancelled", "the problem's detail")

	got, err := e.c.GetVM(ctx, v.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.PowerRunning, got.PowerState, "the stop was abandoned")

	again, err := e.c.CancelOperation(ctx, op.ID)
	require.NoError(t, err, "an ended operation is returned as it is")
	assert.Equal(t, operation.StatusCancelled, again.Status)
	_, err = e.c.CancelOperation(ctx, uuid.New())
	require.ErrorIs(t, err, openvair.ErrNotFound)

	ops, err := e.c.ListOperationsBy(ctx, client.OperationFilter{TargetID: v.ID, Kind: "vm.stop"})
	require.NoError(t, err)
	require.Len(t, ops, 1)
	assert.Equal(t, op.ID, ops[0].ID)
	all, err := e.c.ListOperations(ctx)
	require.NoError(t, err)
	assert.Greater(t, len(all), len(ops))
}

// Wait returns a failed operation with an error of its kind and detail; with a context that ends first,
// the operation as it was and the context's error.
func TestWait(t *testing.T) {
	hv := fake.NewHypervisor()
	hv.IgnoreShutdown = true
	e := newEnv(t, nil, hv)
	ctx := t.Context()
	v := stoppedVM(t, e)
	_, err := e.c.StartVM(ctx, v.ID)
	require.NoError(t, err)

	op, err := e.c.StopVMAsync(ctx, v.ID, vm.StopOptions{Timeout: time.Second})
	require.NoError(t, err)
	done, err := e.c.Wait(ctx, op)
	require.ErrorIs(t, err, openvair.ErrTimeout, "the guest ignored the stop")
	var ce *client.Error
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 504, ce.Status)
	assert.NotEmpty(t, ce.Detail)
	assert.Equal(t, operation.StatusFailed, done.Status)

	op, err = e.c.StopVMAsync(ctx, v.ID, vm.StopOptions{Timeout: time.Hour})
	require.NoError(t, err)
	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	last, err := e.c.Wait(short, op)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotNil(t, last)
	assert.False(t, last.Status.Final())
	_, err = e.c.CancelOperation(ctx, op.ID)
	require.NoError(t, err)
}

// Every asynchronous call answers with an operation at once, which Wait follows to its end.
func TestAsyncCalls(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	op, err := e.c.CreateStorageAsync(ctx, storage.CreateRequest{Name: "pool", Type: "localfs",
		Config: map[string]string{"path": e.base + "/pool"}})
	require.NoError(t, err)
	done, err := e.c.Wait(ctx, op)
	require.NoError(t, err)
	require.NotNil(t, done.Result)
	st, err := e.c.GetStorage(ctx, done.Result.ID)
	require.NoError(t, err)
	assert.Equal(t, storage.StatusAvailable, st.Status)

	vol, err := e.c.CreateVolume(ctx, volume.CreateRequest{Name: "root", StorageID: st.ID, Format: volume.FormatQCOW2, Size: 16 << 20})
	require.NoError(t, err)
	v, err := e.c.CreateVM(ctx, vm.CreateRequest{Name: "guest", CPU: vm.CPU{Sockets: 1, Cores: 1, Threads: 1},
		MemoryBytes: 64 << 20, Disks: []vm.DiskRequest{{VolumeID: vol.ID}}})
	require.NoError(t, err)

	for _, tc := range []struct {
		name  string
		start func() (*client.Operation, error)
		kind  string
		check func(t *testing.T)
	}{
		{"extend volume", func() (*client.Operation, error) { return e.c.ExtendVolumeAsync(ctx, vol.ID, 32<<20) }, "volume.extend",
			func(t *testing.T) {
				got, err := e.c.GetVolume(ctx, vol.ID)
				require.NoError(t, err)
				assert.EqualValues(t, 32<<20, got.Size)
			}},
		{"start vm", func() (*client.Operation, error) { return e.c.StartVMAsync(ctx, v.ID) }, "vm.start",
			func(t *testing.T) {
				got, err := e.c.GetVM(ctx, v.ID)
				require.NoError(t, err)
				assert.Equal(t, vm.PowerRunning, got.PowerState)
			}},
		{"stop vm", func() (*client.Operation, error) { return e.c.StopVMAsync(ctx, v.ID, vm.StopOptions{Force: true}) }, "vm.stop",
			func(t *testing.T) {
				got, err := e.c.GetVM(ctx, v.ID)
				require.NoError(t, err)
				assert.Equal(t, vm.PowerShutOff, got.PowerState)
			}},
		{"delete vm", func() (*client.Operation, error) { return e.c.DeleteVMAsync(ctx, v.ID, vm.DeleteOptions{}) }, "vm.delete",
			func(t *testing.T) {
				_, err := e.c.GetVM(ctx, v.ID)
				require.ErrorIs(t, err, openvair.ErrNotFound)
			}},
		{"delete volume", func() (*client.Operation, error) { return e.c.DeleteVolumeAsync(ctx, vol.ID) }, "volume.delete",
			func(t *testing.T) {
				_, err := e.c.GetVolume(ctx, vol.ID)
				require.ErrorIs(t, err, openvair.ErrNotFound)
			}},
		{"delete storage", func() (*client.Operation, error) { return e.c.DeleteStorageAsync(ctx, st.ID) }, "storage.delete",
			func(t *testing.T) {
				_, err := e.c.GetStorage(ctx, st.ID)
				require.ErrorIs(t, err, openvair.ErrNotFound)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op, err := tc.start()
			require.NoError(t, err)
			assert.Equal(t, tc.kind, op.Kind)
			done, err := e.c.Wait(ctx, op)
			require.NoError(t, err)
			assert.Equal(t, operation.StatusSucceeded, done.Status)
			tc.check(t)
		})
	}
}
