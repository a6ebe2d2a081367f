package telemetry

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
)

// nopHV answers State at once: the cost of a call through the wrapper is then all overhead.
type nopHV struct{ driver.Hypervisor }

func (nopHV) State(context.Context, uuid.UUID) (driver.DomainState, error) {
	return driver.DomainState{Power: driver.PowerRunning}, nil
}

// BenchmarkDriverCall compares a hypervisor call made on the driver itself ("bare") with the same call
// through the wrapper: "instrumented" with metrics and tracing off (what a wrapper costs by itself; Open
// does not even wrap then), "metrics" (the reference server's default) and "metrics+tracing". "nop" is a
// driver that does nothing, so that its numbers are the overhead alone; "fake" is the fake driver.
func BenchmarkDriverCall(b *testing.B) {
	ctx := context.Background()
	f := fake.NewHypervisor()
	id := uuid.New()
	require.NoError(b, f.Define(ctx, driver.DomainSpec{ID: id, Name: "bench"}))
	metrics, err := New(prometheus.NewRegistry(), nil)
	require.NoError(b, err)
	tp := sdktrace.NewTracerProvider()
	b.Cleanup(func() { _ = tp.Shutdown(ctx) })
	both, err := New(prometheus.NewRegistry(), tp)
	require.NoError(b, err)
	for _, d := range []struct {
		name string
		hv   driver.Hypervisor
	}{{"nop", nopHV{f}}, {"fake", f}} {
		for _, c := range []struct {
			name string
			hv   driver.Hypervisor
		}{
			{"bare", d.hv},
			{"instrumented", (&Instruments{}).WrapHypervisor(d.hv)},
			{"metrics", metrics.WrapHypervisor(d.hv)},
			{"metrics+tracing", both.WrapHypervisor(d.hv)},
		} {
			b.Run(d.name+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.hv.State(ctx, id); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
