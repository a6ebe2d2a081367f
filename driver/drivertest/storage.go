// Package drivertest is the conformance suite every driver implementation must pass: RunStorageSuite for
// storage backends and RunHypervisorSuite for hypervisors. Drivers call it from their own tests with a
// harness that connects the suite to real components (a directory, a loop device, an NFS server, libvirtd).
// RunBenchmarks measures every storage backend the same way, and BenchmarkClone its volume clones against
// baseline commands (cp --reflink=always).
//
// The suites hold drivers to what they declare: a storage backend without Capabilities.Extend must refuse
// ExtendVolume with ErrUnsupported, one that does not declare a volume format must refuse to create it with
// ErrUnsupported, and a hypervisor without Capabilities.UEFI must refuse to run a UEFI domain
// (ErrUnrunnable or ErrUnsupported).
package drivertest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
)

// StorageHarness connects RunStorageSuite to a storage backend under test.
type StorageHarness struct {
	// Backend is the backend under test.
	Backend driver.StorageBackend
	// Pool returns the spec of a fresh storage that Prepare can set up: its id, type and configuration as a
	// user gives it (the suite checks it with CheckConfig, which fills Config and State, before Prepare).
	// It registers with t.Cleanup whatever it creates (directories, devices, servers); the suite tears the
	// storage down before those cleanups run.
	Pool func(t testing.TB) driver.PoolSpec
	// BadConfigs, optional, are configurations CheckConfig must refuse with a *driver.ValidationError, each
	// with the field path the error must name (such as "config.server"). The suite always tries a few that
	// every backend must refuse (not an object, an unknown field).
	BadConfigs map[string]string
	// Open, optional, opens a new instance of the backend under test with the same configuration as Backend
	// (data directory, options), as a restarted process does. The suite closes what it opens. Without it the
	// Reopen case is skipped.
	Open func(t testing.TB) driver.StorageBackend
	// Stop, optional, makes a prepared storage unreachable (stops the server, unmounts the device, removes
	// the directory). Status must then fail with ErrUnavailable.
	Stop func(t *testing.T, pool driver.PoolSpec)
	// Restart, optional, undoes Stop; the suite then calls Prepare and expects Status to work again.
	Restart func(t *testing.T, pool driver.PoolSpec)
}

// stTimeout bounds every backend call of the suite; generous, so a slow CI machine never flakes.
const stTimeout = 2 * time.Minute

// Sizes used by the suite.
const (
	stMiB = int64(1) << 20
	stGiB = int64(1) << 30
)

// RunStorageSuite runs the storage conformance suite against h.
func RunStorageSuite(t *testing.T, h StorageHarness) {
	require.NotNil(t, h.Backend, "harness without a backend")
	require.NotNil(t, h.Pool, "harness without a Pool function")

	t.Run("Info", func(t *testing.T) { stTestInfo(t, h) })
	t.Run("Config", func(t *testing.T) { stTestConfig(t, h) })
	t.Run("PrepareIdempotent", func(t *testing.T) { stTestPrepare(t, h) })
	t.Run("Teardown", func(t *testing.T) { stTestTeardown(t, h) })
	t.Run("Unavailable", func(t *testing.T) { stTestStop(t, h) })
	t.Run("Reopen", func(t *testing.T) { stTestReopen(t, h) })

	// The object tests share one storage: every object has its own id.
	pool := stPrepared(t, h)
	t.Run("Volumes", func(t *testing.T) { stTestVolumes(t, h, pool) })
	t.Run("Images", func(t *testing.T) { stTestImages(t, h, pool) })
	t.Run("Clone", func(t *testing.T) { stTestClone(t, h, pool) })
}

// stCtx is the context of one backend call.
func stCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), stTimeout)
	t.Cleanup(cancel)
	return ctx
}

// stPrepared returns a fresh storage, prepared, that is torn down when t ends.
func stPrepared(t *testing.T, h StorageHarness) driver.PoolSpec {
	t.Helper()
	pool := stNew(t, h.Backend, h)
	stPrepare(t, h, &pool)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stTimeout)
		defer cancel()
		if err := h.Backend.Teardown(ctx, pool); err != nil {
			t.Errorf("Teardown at cleanup: %v", err)
		}
	})
	return pool
}

// stNew returns the spec of a fresh storage from the harness, checked by b as openvair checks a new
// storage: its configuration normalized and its initial state filled in.
func stNew(t testing.TB, b driver.StorageBackend, h StorageHarness) driver.PoolSpec {
	t.Helper()
	pool := h.Pool(t)
	ctx, cancel := context.WithTimeout(context.Background(), stTimeout)
	defer cancel()
	checked, err := b.CheckConfig(ctx, pool.Config)
	require.NoError(t, err, "CheckConfig of the harness's configuration")
	require.NotEmpty(t, checked.Location, "CheckConfig returns a location key")
	pool.Config, pool.State = checked.Config, checked.State
	return pool
}

// stPrepare calls Prepare and records the state it reports in *pool, the way a caller must (the filesystem
// UUID of a device, whether Prepare created the directory), so that later calls find the same storage and
// Teardown knows what is its own.
func stPrepare(t *testing.T, h StorageHarness, pool *driver.PoolSpec) driver.PoolState {
	t.Helper()
	return stPrepareWith(t, h.Backend, pool)
}

// stPrepareWith is stPrepare with another instance of the backend.
func stPrepareWith(t testing.TB, b driver.StorageBackend, pool *driver.PoolSpec) driver.PoolState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stTimeout)
	defer cancel()
	state, err := b.Prepare(ctx, *pool)
	require.NoError(t, err, "Prepare")
	*pool = state.Apply(*pool)
	return state
}

func stTestInfo(t *testing.T, h StorageHarness) {
	info := h.Backend.Info()
	require.NotEmpty(t, info.Name)
	require.NotEmpty(t, info.Capabilities.VolumeFormats, "a backend must create at least one volume format")
	for _, f := range info.Capabilities.VolumeFormats {
		require.Contains(t, []driver.VolumeFormat{driver.FormatQCOW2, driver.FormatRaw}, f)
	}
}

func stTestPrepare(t *testing.T, h StorageHarness) {
	pool := stNew(t, h.Backend, h)
	ctx := stCtx(t)
	first, err := h.Backend.Prepare(ctx, pool)
	require.NoError(t, err, "first Prepare")
	t.Cleanup(func() { _ = h.Backend.Teardown(context.Background(), pool) })
	stCheckState(t, first)

	// The second call gets the spec exactly as before (as when a caller retries before recording the state).
	second, err := h.Backend.Prepare(ctx, pool)
	require.NoError(t, err, "second Prepare must succeed (idempotent)")
	stCheckState(t, second)
	pool = first.Apply(pool) // as a caller records it
	third := stPrepare(t, h, &pool)
	require.Equal(t, first.Capacity, third.Capacity, "Prepare with the recorded state")
	require.Equal(t, first.MountPoint, third.MountPoint)
	stEqualState(t, first.State, third.State, "Prepare with the recorded state reports the same state")
	require.Equal(t, first.Capacity, second.Capacity)
	require.Equal(t, first.MountPoint, second.MountPoint)

	status, err := h.Backend.Status(ctx, pool)
	require.NoError(t, err, "Status of a prepared storage")
	stCheckState(t, status)
	require.Equal(t, first.Capacity, status.Capacity)
}

func stCheckState(t *testing.T, s driver.PoolState) {
	t.Helper()
	require.Positive(t, s.Capacity, "capacity")
	require.GreaterOrEqual(t, s.Available, int64(0), "available")
	require.LessOrEqual(t, s.Available, s.Capacity, "available <= capacity")
}

func stTestTeardown(t *testing.T, h StorageHarness) {
	pool := stNew(t, h.Backend, h)
	ctx := stCtx(t)
	stPrepare(t, h, &pool)
	require.NoError(t, h.Backend.Teardown(ctx, pool), "Teardown")
	require.NoError(t, h.Backend.Teardown(ctx, pool), "a second Teardown must succeed")
	// Prepare works again after a teardown, and objects survive it.
	stPrepare(t, h, &pool)
	id := stNewID()
	_, err := h.Backend.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: h.Backend.Info().Capabilities.VolumeFormats[0], Size: stMiB})
	require.NoError(t, err)
	require.NoError(t, h.Backend.Teardown(ctx, pool))
	stPrepare(t, h, &pool)
	_, err = h.Backend.InspectVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: h.Backend.Info().Capabilities.VolumeFormats[0]})
	require.NoError(t, err, "a volume survives Teardown and Prepare")
	require.NoError(t, h.Backend.DeleteVolume(ctx, pool, id))
	require.NoError(t, h.Backend.Teardown(ctx, pool))
}

func stTestStop(t *testing.T, h StorageHarness) {
	if h.Stop == nil {
		t.Skip("harness cannot make the storage unreachable")
	}
	pool := stPrepared(t, h)
	ctx := stCtx(t)
	h.Stop(t, pool)
	_, err := h.Backend.Status(ctx, pool)
	require.ErrorIs(t, err, driver.ErrUnavailable, "Status of a stopped storage")
	if h.Open != nil {
		// A new instance whose first call fails closes cleanly.
		fresh := h.Open(t)
		_, err := fresh.Status(ctx, pool)
		require.ErrorIs(t, err, driver.ErrUnavailable, "Status of a stopped storage, new instance")
		require.NoError(t, fresh.Close(), "Close after a failed call")
		require.NoError(t, fresh.Close(), "Close is idempotent")
	}
	_, err = h.Backend.CreateVolume(ctx, pool, driver.VolumeSpec{ID: stNewID(), Format: h.Backend.Info().Capabilities.VolumeFormats[0], Size: stMiB})
	require.Error(t, err, "CreateVolume on a stopped storage")
	if h.Restart == nil {
		return
	}
	h.Restart(t, pool)
	stPrepare(t, h, &pool)
	_, err = h.Backend.Status(ctx, pool)
	require.NoError(t, err, "Status after Restart")
}
