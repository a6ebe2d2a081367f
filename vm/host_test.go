package vm_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/vm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// withoutHost hides every method but vm.Hypervisor's: a hypervisor that cannot report its host.
type withoutHost struct{ vm.Hypervisor }

// deadlineProbe reports the deadline of the context HostFacts was called with.
type deadlineProbe struct {
	vm.Hypervisor
	deadline    time.Time
	hasDeadline bool
}

func (p *deadlineProbe) HostFacts(ctx context.Context) (driver.HostFacts, error) {
	p.deadline, p.hasDeadline = ctx.Deadline()
	return driver.HostFacts{Hostname: "probe"}, nil
}

func TestHost(t *testing.T) {
	e := sdktest.New(t, nil)
	f, err := e.Sys.VMs.Host(e.Ctx)
	require.NoError(t, err)
	assert.Equal(t, fake.DefaultHostFacts(), f)
	assert.Equal(t, 1, e.HV.Calls("HostFacts"))
}

func TestHostHypervisorError(t *testing.T) {
	e := sdktest.New(t, nil)
	e.HV.FailNext("HostFacts", errkind.New(errkind.Unavailable, "fake", "", "libvirtd is down"), 1)
	f, err := e.Sys.VMs.Host(e.Ctx)
	require.ErrorIs(t, err, errkind.Unavailable)
	assert.Contains(t, err.Error(), "libvirtd is down")
	assert.Zero(t, f, "no partial facts with an error")
}

func TestHostNoHypervisor(t *testing.T) {
	e := sdktest.New(t, nil)
	vm.SetHypervisor(e.Sys.VMs, nil)
	_, err := e.Sys.VMs.Host(e.Ctx)
	require.ErrorIs(t, err, errkind.Unavailable)
	_, other := e.Sys.VMs.Console(e.Ctx, uuid.New())
	assert.EqualError(t, err, other.Error(), "the same error as every other VM call without a hypervisor")
}

func TestHostUnsupported(t *testing.T) {
	e := sdktest.New(t, nil)
	vm.SetHypervisor(e.Sys.VMs, withoutHost{e.HV})
	_, err := e.Sys.VMs.Host(e.Ctx)
	require.ErrorIs(t, err, errkind.Unsupported)
	assert.Zero(t, e.HV.Calls("HostFacts"))
}

func TestHostDeadline(t *testing.T) {
	e := sdktest.New(t, nil)
	probe := &deadlineProbe{Hypervisor: e.HV}
	vm.SetHypervisor(e.Sys.VMs, probe)
	e.Sys.VMs.OpTimeout = 3 * time.Second
	before := time.Now()
	f, err := e.Sys.VMs.Host(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "probe", f.Hostname)
	require.True(t, probe.hasDeadline, "the hypervisor call is bounded")
	assert.WithinDuration(t, before.Add(3*time.Second), probe.deadline, time.Second)
}
