package openvair_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// TestInstrumentedDriversKeepTheirCapabilities: with metrics on, the services still find the optional
// interfaces of the drivers they wrap: a linked clone (VolumeLinker), a copy from an image (ObjectReader,
// VolumeFiller), the console log (ConsoleLogger) and host facts (HostInspector) work, and every such call
// is counted under its method.
func TestInstrumentedDriversKeepTheirCapabilities(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	lfs, err := localfs.New(driver.Config{DataDir: filepath.Join(dir, "data")})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	hv := fake.NewHypervisor()
	sys, err := openvair.Open(ctx, openvair.Config{DataDir: filepath.Join(dir, "data"), HypervisorInstance: hv,
		StorageBackends: map[storage.Type]driver.StorageBackend{"localfs": lfs}, Metrics: reg})
	require.NoError(t, err)
	defer sys.Close()

	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "pool", Type: localfs.Type, Config: localfs.Config{Path: filepath.Join(dir, "pool")}})
	require.NoError(t, err)
	img, err := sys.Images.Create(ctx, image.CreateRequest{Name: "disk.raw", StorageID: st.ID}, bytes.NewReader(bytes.Repeat([]byte("d"), 1<<20)))
	require.NoError(t, err)
	_, err = sys.Volumes.Create(ctx, volume.CreateRequest{Name: "copy", StorageID: st.ID, Format: volume.FormatQCOW2,
		Source: &volume.Source{ImageID: img.ID}})
	require.NoError(t, err)
	_, err = sys.Volumes.Create(ctx, volume.CreateRequest{Name: "linked", StorageID: st.ID,
		Source: &volume.Source{ImageID: img.ID, Mode: volume.ModeLinked}})
	require.NoError(t, err, "a linked clone needs VolumeLinker: the wrapper keeps it")
	_, err = sys.VMs.Host(ctx)
	require.NoError(t, err, "host facts need HostInspector: the wrapper keeps it")

	calls := func(kind, drv, method string) float64 {
		t.Helper()
		var sum float64
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() != "openvair_driver_calls_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, p := range m.GetLabel() {
					l[p.GetName()] = p.GetValue()
				}
				if l["kind"] == kind && l["driver"] == drv && l["method"] == method {
					sum += m.GetCounter().GetValue()
				}
			}
		}
		return sum
	}
	for _, m := range []string{"CheckConfig", "Prepare", "WriteImage", "OpenObject", "FillVolume", "LinkVolume"} {
		assert.Positive(t, calls("storage", "localfs", m), "localfs.%s counted", m)
	}
	assert.Equal(t, float64(hv.Calls("HostFacts")), calls("hypervisor", "fake", "HostFacts"))
	assert.Positive(t, hv.Calls("HostFacts"))

	sys.MonitorOnce(ctx)
	assert.Equal(t, 1, testutil.CollectAndCount(reg, "openvair_monitor_cycle_duration_seconds"))
	n, err := testutil.GatherAndCount(reg, "openvair_storage_capacity_bytes", "openvair_vms")
	require.NoError(t, err)
	assert.Equal(t, 1+len(vmPowerStates), n, "one storage, every power state")

	// Two Systems may share a registry; closing one leaves the other's metrics.
	sys2, err := openvair.Open(ctx, openvair.Config{HypervisorInstance: fake.NewHypervisor(), Metrics: reg})
	require.NoError(t, err)
	require.NoError(t, sys2.Close())
}

var vmPowerStates = []vm.PowerState{vm.PowerShutOff, vm.PowerRunning, vm.PowerPaused, vm.PowerStopping, vm.PowerCrashed, vm.PowerMissing}
