package openvair_test

import (
	"context"
	"sort"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	libvirtdrv "github.com/openvair/openvair/driver/libvirt"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/testenv/libvirtd"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// liveSystem opens a System on a throwaway libvirtd (test:///default) with a LocalFS storage, runs its
// monitors, and returns a stopped VM with one volume plus a raw libvirt connection to act behind its back.
func liveSystem(t testing.TB) (*openvair.System, *vm.VM, *golibvirt.Libvirt, context.Context) {
	t.Helper()
	sys, m, raw, ctx, _ := liveSystemOn(t)
	return sys, m, raw, ctx
}

// liveSystemOn is liveSystem that also returns the daemon.
func liveSystemOn(t testing.TB) (*openvair.System, *vm.VM, *golibvirt.Libvirt, context.Context, *libvirtd.Daemon) {
	t.Helper()
	d := libvirtd.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	dir := t.TempDir()
	sys, err := openvair.Open(ctx, openvair.Config{DataDir: dir, Hypervisor: "libvirt",
		HypervisorOptions: map[string]string{"uri": string(golibvirt.TestDefault), "socket": d.Socket()},
		PowerResync:       time.Hour, MonitorInterval: time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sys.Close() })
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = sys.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })

	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "local", Type: "localfs", Config: localfs.Config{Path: dir + "/pool"}})
	require.NoError(t, err)
	m, err := sys.VMs.Create(ctx, vm.CreateRequest{Name: "web", CPU: vm.CPU{Sockets: 1, Cores: 1, Threads: 1}, MemoryBytes: 64 << 20,
		Disks: []vm.DiskRequest{{New: &volume.CreateRequest{Name: "root", StorageID: st.ID, Format: volume.FormatQCOW2, Size: 1 << 30}}}})
	require.NoError(t, err)
	return sys, m, d.Dial(t, golibvirt.TestDefault), ctx, d
}

// TestLiveStateFollowsLibvirt checks that changes made directly through libvirt, behind the SDK's back,
// show up in the VM's stored state: a domain destroyed, started, and finally undefined.
func TestLiveStateFollowsLibvirt(t *testing.T) {
	sys, m, raw, ctx := liveSystem(t)
	m, err := sys.VMs.Start(ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.PowerRunning, m.PowerState)
	dom, err := raw.DomainLookupByUUID(golibvirt.UUID(m.ID))
	require.NoError(t, err)

	require.NoError(t, raw.DomainDestroy(dom))
	waitPower(t, sys, m, vm.PowerShutOff)
	require.NoError(t, raw.DomainCreate(dom))
	waitPower(t, sys, m, vm.PowerRunning)
	require.NoError(t, raw.DomainDestroy(dom))
	waitPower(t, sys, m, vm.PowerShutOff)
	require.NoError(t, raw.DomainUndefine(dom))
	got := waitPower(t, sys, m, vm.PowerMissing)
	assert.Equal(t, vm.StatusError, got.Status)
	assert.Contains(t, got.StatusReason, "disappeared")
	_, err = sys.VMs.Start(ctx, m.ID)
	assert.ErrorIs(t, err, openvair.ErrWrongState, "a vanished domain is not recreated behind the operator's back")
	require.NoError(t, sys.VMs.Delete(ctx, m.ID, vm.DeleteOptions{DeleteVolumes: true}))
}

// TestLiveStateAfterLibvirtdRestart restarts libvirtd under a running System: the SDK reconnects,
// resynchronises (the test driver forgets its domains, so the VM is marked missing, not recreated) and
// follows events again on the new connection.
func TestLiveStateAfterLibvirtdRestart(t *testing.T) {
	sys, m, _, ctx, d := liveSystemOn(t)
	_, err := sys.VMs.Start(ctx, m.ID)
	require.NoError(t, err)
	d.Restart()
	got := waitPower(t, sys, m, vm.PowerMissing)
	assert.Equal(t, vm.StatusError, got.Status)

	var second *vm.VM
	require.Eventually(t, func() bool { // the driver reconnects with backoff
		second, err = sys.VMs.Create(ctx, vm.CreateRequest{Name: "second", CPU: vm.CPU{Sockets: 1, Cores: 1, Threads: 1}, MemoryBytes: 64 << 20})
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "create after the restart: %v", err)
	_, err = sys.VMs.Start(ctx, second.ID)
	require.NoError(t, err)
	raw := d.Dial(t, golibvirt.TestDefault)
	dom, err := raw.DomainLookupByUUID(golibvirt.UUID(second.ID))
	require.NoError(t, err)
	require.NoError(t, raw.DomainDestroy(dom))
	waitPower(t, sys, second, vm.PowerShutOff)
}

func waitPower(t testing.TB, sys *openvair.System, m *vm.VM, want vm.PowerState) *vm.VM {
	t.Helper()
	var got *vm.VM
	require.Eventually(t, func() bool {
		var err error
		got, err = sys.VMs.Get(context.Background(), m.ID)
		return err == nil && got.PowerState == want
	}, 30*time.Second, time.Millisecond, "power state %s", want)
	return got
}

// BenchmarkEventToStoredState measures the time from a lifecycle change made directly through libvirt to
// the VM's stored power state, as p50 and p99 over starts and destroys.
func BenchmarkEventToStoredState(b *testing.B) {
	sys, m, raw, ctx := liveSystem(b)
	_, err := sys.VMs.Start(ctx, m.ID)
	require.NoError(b, err)
	dom, err := raw.DomainLookupByUUID(golibvirt.UUID(m.ID))
	require.NoError(b, err)
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		want, act := vm.PowerShutOff, raw.DomainDestroy
		if i%2 == 1 {
			want, act = vm.PowerRunning, raw.DomainCreate
		}
		start := time.Now()
		require.NoError(b, act(dom))
		for {
			got, err := sys.VMs.Get(ctx, m.ID)
			require.NoError(b, err)
			if got.PowerState == want {
				break
			}
			time.Sleep(20 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
}

// BenchmarkLifecycleSDKvsRaw runs create (define) + start + forced stop + delete (undefine) of a VM through
// the SDK, and the same four raw go-libvirt calls with the same domain XML, on one test:///default daemon in
// the same run, and reports their ratio. The SDK's share is its store writes, rule checks and status changes.
func BenchmarkLifecycleSDKvsRaw(b *testing.B) {
	d := libvirtd.Start(b)
	ctx := context.Background()
	sys, err := openvair.Open(ctx, openvair.Config{DataDir: b.TempDir(), Hypervisor: "libvirt",
		HypervisorOptions: map[string]string{"uri": string(golibvirt.TestDefault), "socket": d.Socket()}})
	require.NoError(b, err)
	defer sys.Close()
	raw := d.Dial(b, golibvirt.TestDefault)
	req := vm.CreateRequest{Name: "bench", CPU: vm.CPU{Sockets: 1, Cores: 1, Threads: 1}, MemoryBytes: 64 << 20}

	var viaSDK, viaRaw time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		m, err := sys.VMs.Create(ctx, req)
		require.NoError(b, err)
		_, err = sys.VMs.Start(ctx, m.ID)
		require.NoError(b, err)
		_, err = sys.VMs.Stop(ctx, m.ID, vm.StopOptions{Force: true})
		require.NoError(b, err)
		require.NoError(b, sys.VMs.Delete(ctx, m.ID, vm.DeleteOptions{}))
		viaSDK += time.Since(t0)

		// The same domain, defined directly.
		dom, err := libvirtBuild(m)
		require.NoError(b, err)
		t0 = time.Now()
		rd, err := raw.DomainDefineXMLFlags(dom, golibvirt.DomainDefineValidate)
		require.NoError(b, err)
		require.NoError(b, raw.DomainCreate(rd))
		require.NoError(b, raw.DomainDestroy(rd))
		require.NoError(b, raw.DomainUndefineFlags(rd, 0))
		viaRaw += time.Since(t0)
	}
	b.ReportMetric(float64(viaSDK.Microseconds())/float64(b.N), "sdk-us/lifecycle")
	b.ReportMetric(float64(viaRaw.Microseconds())/float64(b.N), "raw-us/lifecycle")
	b.ReportMetric(float64(viaSDK)/float64(viaRaw), "sdk/raw")
}

// libvirtBuild renders the domain XML the driver would define for m (with a fresh id).
func libvirtBuild(m *vm.VM) (string, error) {
	dom, err := libvirtdrv.BuildDomainXML(driver.DomainSpec{ID: uuid.New(), Name: m.Name, MemoryBytes: m.MemoryBytes,
		CPU: driver.CPUSpec{Sockets: 1, Cores: 1, Threads: 1, Mode: m.CPU.Mode}, Firmware: m.Firmware, Boot: m.Boot,
		Graphics: driver.GraphicsSpec{Type: m.Graphics.Type, Listen: m.Graphics.Listen}}, libvirtdrv.Caps{})
	if err != nil {
		return "", err
	}
	return dom.Marshal()
}
