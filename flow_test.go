package openvair_test

import (
	"context"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/flowtest"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/storage"
)

// The flows of internal/flowtest pass embedded: the SDK's services on memory:, the real localfs backend and
// the fake hypervisor. client's tests run the same flows through the reference server.
func TestFlowsEmbedded(t *testing.T) {
	base := t.TempDir()
	b, err := localfs.New(driver.Config{DataDir: filepath.Join(base, "data")})
	require.NoError(t, err)
	hv := fake.NewHypervisor()
	sys, err := openvair.Open(t.Context(), openvair.Config{DSN: "memory:", HypervisorInstance: hv,
		StorageBackends: map[storage.Type]driver.StorageBackend{localfs.Type: b}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sys.Close() })

	var dirs atomic.Int64
	flowtest.Run(t, flowtest.Services{
		Storages: sys.Storages, Volumes: sys.Volumes, Images: sys.Images, VMs: sys.VMs,
		Wait: func(ctx context.Context, op *operation.Operation) (*operation.Operation, error) {
			done, err := sys.Operations.Wait(ctx, op.ID)
			if err != nil {
				return done, err
			}
			return done, opError(done)
		},
		Dir:           func() string { return filepath.Join(base, "pool"+strconv.FormatInt(dirs.Add(1), 10)) },
		AppendConsole: hv.AppendConsole,
		Events:        sys.Events.Subscribe,
	})
}

// opError is the error of an operation that failed or was cancelled, of its kind (a cancelled one is
// ErrWrongState, as a cancelled call's error).
func opError(op *operation.Operation) error {
	if op.Status != operation.StatusFailed && op.Status != operation.StatusCancelled {
		return nil
	}
	kind, msg := openvair.ErrWrongState, "cancelled"
	if op.Error != nil {
		msg = op.Error.Message
		if k := errkind.ByName(op.Error.Kind); k != nil {
			kind = k
		}
	}
	return errkind.New(kind, "operation", op.ID.String(), "%s", msg)
}
