package vm_test

import (
	"context"
	"testing"
	"time"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/internal/secret"
	"github.com/openvair/openvair/vm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// watch runs the power state monitor until the test ends.
func watch(t *testing.T, e *sdktest.Env) {
	ctx, cancel := context.WithCancel(e.Ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.Sys.VMs.Watch(ctx, time.Hour) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestPowerStateReasonRecorded(t *testing.T) {
	e := sdktest.New(t, nil)
	m := e.Running(t, "web")
	got, err := e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, driver.ReasonBooted, got.PowerStateReason, "start records the hypervisor's reason")
	assert.False(t, got.PowerStateObservedAt.IsZero())

	got, err = e.Sys.VMs.Stop(e.Ctx, m.ID, vm.StopOptions{Force: true})
	require.NoError(t, err)
	assert.Equal(t, vm.PowerShutOff, got.PowerState)
	assert.Equal(t, driver.ReasonDestroyed, got.PowerStateReason)

	// A guest that crashes while nobody asked: the event says so, and a read shows it.
	_, err = e.Sys.VMs.Start(e.Ctx, m.ID)
	require.NoError(t, err)
	watch(t, e)
	e.HV.SetStateReason(m.ID, vm.PowerShutOff, driver.ReasonCrashed)
	require.Eventually(t, func() bool {
		got, err = e.Sys.VMs.Get(e.Ctx, m.ID)
		return err == nil && got.PowerState == vm.PowerShutOff
	}, 10*time.Second, time.Millisecond)
	assert.Equal(t, driver.ReasonCrashed, got.PowerStateReason, "a crashed guest is not a plain shut_off")
}

// TestPowerStateStaleWhileHypervisorUnreachable: while the hypervisor cannot be followed, reads say that
// the power state is the last one observed; once it answers again (within the backoff), they are fresh and
// the state changes made meanwhile are picked up by the resync.
func TestPowerStateStaleWhileHypervisorUnreachable(t *testing.T) {
	e := sdktest.New(t, nil)
	m := e.Running(t, "web")
	watch(t, e)
	require.Eventually(t, func() bool { live, _ := e.Sys.VMs.PowerFollowed(); return live }, 10*time.Second, time.Millisecond)
	got, err := e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.False(t, got.PowerStateStale)
	before := got.PowerStateObservedAt

	down := errkind.New(errkind.Unavailable, "fake", "", "hypervisor down")
	e.HV.FailNext("WatchStates", down, -1)
	e.HV.FailNext("States", down, -1)
	e.HV.Disconnect()
	require.Eventually(t, func() bool {
		got, err = e.Sys.VMs.Get(e.Ctx, m.ID)
		return err == nil && got.PowerStateStale
	}, 10*time.Second, time.Millisecond, "reads must say the state is stale")
	assert.Equal(t, vm.PowerRunning, got.PowerState, "the last state observed")
	assert.False(t, got.PowerStateObservedAt.Before(before))
	_, lostAt := e.Sys.VMs.PowerFollowed()
	assert.False(t, lostAt.IsZero())
	page, err := e.Sys.VMs.List(e.Ctx, vm.ListOptions{})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.True(t, page.Items[0].PowerStateStale, "lists say so too")

	// Meanwhile the domain was destroyed; the hypervisor comes back.
	e.HV.SetStateReason(m.ID, vm.PowerShutOff, driver.ReasonDestroyed)
	e.HV.Clear()
	back := time.Now()
	require.Eventually(t, func() bool {
		got, err = e.Sys.VMs.Get(e.Ctx, m.ID)
		return err == nil && !got.PowerStateStale && got.PowerState == vm.PowerShutOff
	}, 10*time.Second, time.Millisecond)
	assert.Equal(t, driver.ReasonDestroyed, got.PowerStateReason)
	assert.True(t, got.PowerStateObservedAt.After(back), "observed after the hypervisor came back")
	assert.GreaterOrEqual(t, e.HV.Calls("WatchStates"), 2, "resubscribed")
}

func TestResetAndConsoleLog(t *testing.T) {
	e := sdktest.New(t, nil)
	m := e.VM(t, "web")
	_, err := e.Sys.VMs.Reset(e.Ctx, m.ID)
	assert.ErrorIs(t, err, errkind.WrongState, "a stopped VM cannot be reset")
	_, err = e.Sys.VMs.ConsoleLog(e.Ctx, m.ID, 0)
	assert.ErrorIs(t, err, errkind.NotFound, "no log before the first boot")

	_, err = e.Sys.VMs.Start(e.Ctx, m.ID)
	require.NoError(t, err)
	_, err = e.Sys.VMs.Reset(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, 1, e.HV.Domain(m.ID).Resets)
	got, err := e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.PowerRunning, got.PowerState)

	e.HV.AppendConsole(m.ID, []byte("booting\nlogin: "))
	b, err := e.Sys.VMs.ConsoleLog(e.Ctx, m.ID, 0)
	require.NoError(t, err)
	assert.Equal(t, "booting\nlogin: ", string(b))
	b, err = e.Sys.VMs.ConsoleLog(e.Ctx, m.ID, 7)
	require.NoError(t, err)
	assert.Equal(t, "login: ", string(b), "the tail")
}

func TestStartRefusalKeepsItsKind(t *testing.T) {
	e := sdktest.New(t, nil)
	m := e.VM(t, "web")
	refused := errkind.New(errkind.Unrunnable, "fake", m.ID.String(), "CPU model 'nope' is not supported")
	refused.Reason = "cpu"
	e.HV.FailNext("Start", refused, 1)
	_, err := e.Sys.VMs.Start(e.Ctx, m.ID)
	require.ErrorIs(t, err, errkind.Unrunnable)
	var oe *errkind.Error
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, "cpu", oe.Reason)
	got, err := e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.PowerShutOff, got.PowerState)
}

func TestDefaultCPUMode(t *testing.T) {
	e := sdktest.New(t, nil)
	require.ErrorIs(t, e.Sys.VMs.SetDefaultCPU("custom", ""), errkind.Invalid, "custom needs a model")
	require.ErrorIs(t, e.Sys.VMs.SetDefaultCPU("bogus", ""), errkind.Invalid)
	require.NoError(t, e.Sys.VMs.SetDefaultCPU("custom", "qemu64"))
	m := e.VM(t, "web")
	assert.Equal(t, vm.CPU{Sockets: m.CPU.Sockets, Cores: m.CPU.Cores, Threads: m.CPU.Threads, Mode: "custom", Model: "qemu64"}, m.CPU)
	assert.Equal(t, "custom", e.HV.Domain(m.ID).Spec.CPU.Mode, "the domain gets it too")
}

// TestGraphicsPasswordSealedAtRest: the stored VM holds the password encrypted; the hypervisor gets it in
// clear; an edit without graphics keeps it, an edit with a new one seals the new one.
func TestGraphicsPasswordSealedAtRest(t *testing.T) {
	e := sdktest.New(t, nil)
	req := sdktest.VMRequest("web")
	req.Graphics = vm.Graphics{Type: "vnc", Password: "s3cret"}
	m, err := e.Sys.VMs.Create(e.Ctx, req)
	require.NoError(t, err)
	stored, err := e.Sys.Store.VMs().Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.NotContains(t, stored.Graphics.Password, "s3cret", "never stored in clear")
	assert.True(t, secret.IsSealed(stored.Graphics.Password))
	assert.Equal(t, "s3cret", e.HV.Domain(m.ID).Spec.Graphics.Password, "the hypervisor gets the real password")

	desc := "renamed"
	_, err = e.Sys.VMs.Edit(e.Ctx, m.ID, vm.EditRequest{Description: &desc})
	require.NoError(t, err)
	assert.Equal(t, "s3cret", e.HV.Domain(m.ID).Spec.Graphics.Password, "kept across an edit")
	_, err = e.Sys.VMs.Edit(e.Ctx, m.ID, vm.EditRequest{Graphics: &vm.Graphics{Type: "vnc", Password: "n3w"}})
	require.NoError(t, err)
	assert.Equal(t, "n3w", e.HV.Domain(m.ID).Spec.Graphics.Password)
	stored, err = e.Sys.Store.VMs().Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.True(t, secret.IsSealed(stored.Graphics.Password))
}

// TestLateEventNeverOverwritesAnOperation: an event the hypervisor sent before an operation recorded its
// outcome (delivered late, as a busy event stream does) is ignored; newer ones apply.
func TestLateEventNeverOverwritesAnOperation(t *testing.T) {
	e := sdktest.New(t, nil)
	m := e.Running(t, "web")
	before := time.Now()
	got, err := e.Sys.VMs.Stop(e.Ctx, m.ID, vm.StopOptions{Force: true})
	require.NoError(t, err)
	require.Equal(t, vm.PowerShutOff, got.PowerState)

	late := driver.DomainState{Power: vm.PowerStopping, Reason: driver.ReasonShutdown}
	require.NoError(t, e.Sys.VMs.ObservePower(e.Ctx, m.ID, late, before))
	got, err = e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.PowerShutOff, got.PowerState, "the stop's answer is what the next read shows")
	require.NoError(t, e.Sys.VMs.Delete(e.Ctx, m.ID, vm.DeleteOptions{}), "and a delete right after works")

	n := e.Running(t, "db")
	require.NoError(t, e.Sys.VMs.ObservePower(e.Ctx, n.ID, driver.DomainState{Power: vm.PowerShutOff, Reason: driver.ReasonCrashed}, time.Now()))
	got, err = e.Sys.VMs.Get(e.Ctx, n.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.PowerShutOff, got.PowerState, "news newer than the operation apply")
	assert.Equal(t, driver.ReasonCrashed, got.PowerStateReason)
}

func TestStopRefusesANegativeTimeout(t *testing.T) {
	e := sdktest.New(t, nil)
	m := e.Running(t, "web")
	_, err := e.Sys.VMs.Stop(e.Ctx, m.ID, vm.StopOptions{Timeout: -time.Second})
	var ve *errkind.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, "timeout", ve.Fields[0].Field)
	got, err := e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.PowerRunning, got.PowerState, "nothing happened")
	assert.Equal(t, vm.StatusAvailable, got.Status)
}

// slowDefine holds Define until the test lets it go, to order a resync between a create's start and the
// domain's definition.
type slowDefine struct {
	*fake.Hypervisor
	called, proceed chan struct{}
}

func (h *slowDefine) Define(ctx context.Context, spec driver.DomainSpec) error {
	close(h.called)
	<-h.proceed
	return h.Hypervisor.Define(ctx, spec)
}

// TestResyncBeforeDefineDoesNotMarkANewVMMissing: a resync that listed the domains after a create began but
// before it defined the domain says "missing" for the new VM; that is older news than the create's answer.
func TestResyncBeforeDefineDoesNotMarkANewVMMissing(t *testing.T) {
	e := sdktest.New(t, nil)
	hv := &slowDefine{Hypervisor: e.HV, called: make(chan struct{}), proceed: make(chan struct{})}
	svc := vm.NewService(vm.Deps{Repo: e.Sys.Store.VMs(), Tx: e.Sys.Store, Volumes: e.Sys.Store.Volumes(),
		Storages: e.Sys.Store.Storages(), Images: e.Sys.Store.Images(), VolumeSvc: e.Sys.Volumes, Hypervisor: hv})
	created := make(chan *vm.VM, 1)
	go func() {
		m, err := svc.Create(e.Ctx, sdktest.VMRequest("web"))
		assert.NoError(t, err)
		created <- m
	}()
	<-hv.called
	listedAt := time.Now() // the resync lists the domains now: "web" is not defined yet
	close(hv.proceed)
	m := <-created
	require.NotNil(t, m)
	require.NoError(t, svc.ObservePower(e.Ctx, m.ID, driver.DomainState{Power: vm.PowerMissing}, listedAt))
	got, err := svc.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.StatusAvailable, got.Status, "not put in error as missing")
	assert.Equal(t, vm.PowerShutOff, got.PowerState)
}
