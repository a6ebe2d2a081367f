package libvirt_test

import (
	"context"
	"sort"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/libvirt"
	"github.com/openvair/openvair/internal/testenv/libvirtd"
	"github.com/stretchr/testify/require"
)

// BenchmarkLifecycle runs define+start+destroy+undefine through the driver and the same four raw go-libvirt
// calls on the same test:///default daemon, alternating, and reports both and their ratio.
func BenchmarkLifecycle(b *testing.B) {
	d := libvirtd.Start(b)
	drv := openDriver(b, d, golibvirt.TestDefault)
	raw := d.Dial(b, golibvirt.TestDefault)
	ctx := context.Background()

	var viaDriver, viaRaw time.Duration
	for i := 0; i < b.N; i++ {
		id := uuid.New()
		spec := testSpec(nil, id)
		t0 := time.Now()
		require.NoError(b, drv.Define(ctx, spec))
		require.NoError(b, drv.Start(ctx, id))
		require.NoError(b, drv.Destroy(ctx, id))
		require.NoError(b, drv.Undefine(ctx, id))
		viaDriver += time.Since(t0)

		id = uuid.New()
		spec = testSpec(nil, id)
		dom, err := libvirt.BuildDomainXML(spec, libvirt.Caps{})
		require.NoError(b, err)
		doc, err := dom.Marshal()
		require.NoError(b, err)
		t0 = time.Now()
		rd, err := raw.DomainDefineXMLFlags(doc, golibvirt.DomainDefineValidate)
		require.NoError(b, err)
		require.NoError(b, raw.DomainCreate(rd))
		require.NoError(b, raw.DomainDestroy(rd))
		require.NoError(b, raw.DomainUndefineFlags(rd, 0))
		viaRaw += time.Since(t0)
	}
	b.ReportMetric(float64(viaDriver.Nanoseconds())/float64(b.N), "driver-ns/lifecycle")
	b.ReportMetric(float64(viaRaw.Nanoseconds())/float64(b.N), "raw-ns/lifecycle")
	b.ReportMetric(float64(viaDriver)/float64(viaRaw), "driver/raw")
}

// BenchmarkEventLatency measures the time from a raw DomainDestroy to the StateEvent arriving on the
// driver's WatchStates channel, and reports p50/p99.
func BenchmarkEventLatency(b *testing.B) {
	d := libvirtd.Start(b)
	drv := openDriver(b, d, golibvirt.TestDefault)
	raw := d.Dial(b, golibvirt.TestDefault)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := drv.WatchStates(ctx)
	require.NoError(b, err)

	id := uuid.New()
	require.NoError(b, drv.Define(ctx, testSpec(nil, id)))
	rd, err := raw.DomainLookupByUUID(golibvirt.UUID(id))
	require.NoError(b, err)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		require.NoError(b, raw.DomainCreate(rd))
		waitEventB(b, ch, id, driver.PowerRunning)
		t0 := time.Now()
		require.NoError(b, raw.DomainDestroy(rd))
		waitEventB(b, ch, id, driver.PowerShutOff)
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	require.NoError(b, drv.Undefine(ctx, id))
}

func waitEventB(b *testing.B, ch <-chan driver.StateEvent, id uuid.UUID, want driver.PowerState) {
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			require.True(b, ok, "event channel closed")
			if ev.ID == id && ev.State == want {
				return
			}
		case <-timer.C:
			b.Fatalf("no %s event", want)
		}
	}
}
