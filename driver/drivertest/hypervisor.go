package drivertest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// HypervisorHarness is what RunHypervisorSuite needs to exercise a hypervisor driver.
type HypervisorHarness struct {
	// Hypervisor is the driver under test.
	Hypervisor driver.Hypervisor
	// Spec returns a valid spec for a VM with the given id: memory, at least one disk whose source the
	// hypervisor can open, and VNC graphics. The suite changes Name and Description.
	Spec func(t *testing.T, id uuid.UUID) driver.DomainSpec
	// RealQEMU is set when domains run real QEMU processes: the VNC console listens, and a guest without an
	// operating system ignores the ACPI power button.
	RealQEMU bool
	// DefinitionXML returns the persistent definition of a domain as the hypervisor stores it, read through
	// the backend directly (not through the driver).
	DefinitionXML func(ctx context.Context, id uuid.UUID) (string, error)
	// DestroyBehind powers a running domain off directly through the backend, behind the driver's back.
	// Nil skips the cases that need it.
	DestroyBehind func(ctx context.Context, id uuid.UUID) error
	// FirmwareIgnored is set when the hypervisor runs domains without loading any firmware (libvirt's test
	// driver): it runs a UEFI domain whatever Capabilities.UEFI says, and the UEFIWithoutFirmware case is
	// skipped.
	FirmwareIgnored bool
	// Open, optional, opens a new instance of the driver under test with the same configuration as
	// Hypervisor. The suite closes what it opens. Without it the Close case is skipped.
	Open func(t testing.TB) driver.Hypervisor
	// Timeout bounds each wait for a state or an event (default 30s).
	Timeout time.Duration
}

// RunHypervisorSuite runs the hypervisor conformance cases against h. Each case uses its own VM id and
// removes its domain when it ends.
func RunHypervisorSuite(t *testing.T, h HypervisorHarness) {
	t.Helper()
	require.NotNil(t, h.Hypervisor, "harness needs a Hypervisor")
	require.NotNil(t, h.Spec, "harness needs a Spec")
	if h.Timeout == 0 {
		h.Timeout = 30 * time.Second
	}
	cases := []struct {
		name string
		fn   func(*testing.T, HypervisorHarness)
	}{
		{"Info", hvTestInfo},
		{"DefineIsShutOff", hvTestDefine},
		{"InvalidSpecRefused", hvTestInvalid},
		{"StartRunning", hvTestStart},
		{"ConsoleVNC", hvTestConsole},
		{"ShutdownAndDestroy", hvTestShutdownDestroy},
		{"RedefineChangesXML", hvTestRedefine},
		{"UndefineMissing", hvTestUndefine},
		{"MissingDomain", hvTestMissing},
		{"StatesLists", hvTestStates},
		{"WatchStates", hvTestWatch},
		{"UEFIWithoutFirmware", hvTestUEFI},
		{"Close", hvTestClose},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, h) })
	}
}

// hvCtx is a context bounded by the harness timeout.
func hvCtx(t *testing.T, h HypervisorHarness) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*h.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// hvRemoveAtEnd stops (if it runs) and undefines domain id when the test ends.
func hvRemoveAtEnd(t *testing.T, h HypervisorHarness, id uuid.UUID) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
		defer cancel()
		if st, err := hvPower(ctx, h, id); err == nil && st != driver.PowerShutOff && st != driver.PowerMissing {
			_ = h.Hypervisor.Destroy(ctx, id)
		}
		assert.NoError(t, h.Hypervisor.Undefine(ctx, id), "cleanup undefine")
	})
}

// hvDefine defines a fresh domain and removes it when the test ends.
func hvDefine(t *testing.T, h HypervisorHarness) (uuid.UUID, driver.DomainSpec) {
	t.Helper()
	id := uuid.New()
	spec := h.Spec(t, id)
	spec.ID = id
	spec.Name = "drivertest " + t.Name()
	ctx := hvCtx(t, h)
	require.NoError(t, h.Hypervisor.Define(ctx, spec))
	hvRemoveAtEnd(t, h, id)
	return id, spec
}

// hvPower is the power state part of State.
func hvPower(ctx context.Context, h HypervisorHarness, id uuid.UUID) (driver.PowerState, error) {
	st, err := h.Hypervisor.State(ctx, id)
	return st.Power, err
}

// hvAwaitState polls State until it reports want.
func hvAwaitState(t *testing.T, h HypervisorHarness, id uuid.UUID, want driver.PowerState) {
	t.Helper()
	deadline := time.Now().Add(h.Timeout)
	var last driver.PowerState
	for {
		st, err := hvPower(hvCtx(t, h), h, id)
		require.NoError(t, err)
		if st == want {
			return
		}
		last = st
		if time.Now().After(deadline) {
			require.Failf(t, "state not reached", "domain %s: want %s, still %s after %s", id, want, last, h.Timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hvTestInfo(t *testing.T, h HypervisorHarness) {
	info := h.Hypervisor.Info()
	assert.NotEmpty(t, info.Name)
	assert.Contains(t, []string{"kvm", "qemu", "test"}, info.Capabilities.DomainType)
}

func hvTestDefine(t *testing.T, h HypervisorHarness) {
	id, spec := hvDefine(t, h)
	ctx := hvCtx(t, h)
	st, err := hvPower(ctx, h, id)
	require.NoError(t, err)
	assert.Equal(t, driver.PowerShutOff, st)
	// Defining the same spec again is a redefinition, not an error.
	require.NoError(t, h.Hypervisor.Define(ctx, spec))
	st, err = hvPower(ctx, h, id)
	require.NoError(t, err)
	assert.Equal(t, driver.PowerShutOff, st)
}

func hvTestInvalid(t *testing.T, h HypervisorHarness) {
	ctx := hvCtx(t, h)
	id := uuid.New()
	bad := h.Spec(t, id)
	bad.ID = uuid.Nil
	err := h.Hypervisor.Define(ctx, bad)
	require.Error(t, err)
	assert.ErrorIs(t, err, driver.ErrInvalid)

	bad = h.Spec(t, id)
	bad.ID = id
	bad.MemoryBytes = -1
	err = h.Hypervisor.Define(ctx, bad)
	assert.ErrorIs(t, err, driver.ErrInvalid)
	st, err := hvPower(ctx, h, id)
	require.NoError(t, err)
	assert.Equal(t, driver.PowerMissing, st, "a refused spec must not leave a domain behind")
}

func hvTestStart(t *testing.T, h HypervisorHarness) {
	id, _ := hvDefine(t, h)
	ctx := hvCtx(t, h)
	require.NoError(t, h.Hypervisor.Start(ctx, id))
	hvAwaitState(t, h, id, driver.PowerRunning)
	st, err := h.Hypervisor.State(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, driver.ReasonBooted, st.Reason, "a started domain was booted")
	err = h.Hypervisor.Start(ctx, id)
	require.Error(t, err, "starting a running domain must fail")
	assert.ErrorIs(t, err, errkind.WrongState)
	require.NoError(t, h.Hypervisor.Reset(ctx, id), "a hard reset of a running domain")
	hvAwaitState(t, h, id, driver.PowerRunning)
	require.NoError(t, h.Hypervisor.Destroy(ctx, id))
	hvAwaitState(t, h, id, driver.PowerShutOff)
	st, err = h.Hypervisor.State(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, driver.ReasonDestroyed, st.Reason, "a destroyed domain says so")
	assert.ErrorIs(t, h.Hypervisor.Reset(ctx, id), errkind.WrongState, "resetting a stopped domain")
	err = h.Hypervisor.Destroy(ctx, id)
	assert.ErrorIs(t, err, errkind.WrongState, "destroying a stopped domain")
}

func hvTestConsole(t *testing.T, h HypervisorHarness) {
	if !h.RealQEMU {
		t.Skip("consoles only listen with real QEMU")
	}
	id, spec := hvDefine(t, h)
	require.Equal(t, "vnc", spec.Graphics.Type, "harness Spec must have VNC graphics")
	ctx := hvCtx(t, h)
	_, err := h.Hypervisor.Console(ctx, id)
	assert.ErrorIs(t, err, errkind.WrongState, "a stopped domain has no console port")
	require.NoError(t, h.Hypervisor.Start(ctx, id))
	c, err := h.Hypervisor.Console(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, "vnc", c.Type)
	assert.Greater(t, c.Port, 0)
	assert.NotEmpty(t, c.Host)
}

func hvTestShutdownDestroy(t *testing.T, h HypervisorHarness) {
	id, _ := hvDefine(t, h)
	ctx := hvCtx(t, h)
	require.NoError(t, h.Hypervisor.Start(ctx, id))
	hvAwaitState(t, h, id, driver.PowerRunning)
	require.NoError(t, h.Hypervisor.Shutdown(ctx, id))
	if h.RealQEMU {
		// A guest without an operating system ignores the ACPI power button: still running a while later.
		time.Sleep(1500 * time.Millisecond)
		st, err := hvPower(ctx, h, id)
		require.NoError(t, err)
		assert.Equal(t, driver.PowerRunning, st, "graceful shutdown must not force the VM off")
		require.NoError(t, h.Hypervisor.Destroy(ctx, id))
	} else if st, err := hvPower(ctx, h, id); err == nil && st != driver.PowerShutOff {
		require.NoError(t, h.Hypervisor.Destroy(ctx, id))
	}
	hvAwaitState(t, h, id, driver.PowerShutOff)
}

func hvTestRedefine(t *testing.T, h HypervisorHarness) {
	if h.DefinitionXML == nil {
		t.Skip("harness has no DefinitionXML")
	}
	id, spec := hvDefine(t, h)
	ctx := hvCtx(t, h)
	before, err := h.DefinitionXML(ctx, id)
	require.NoError(t, err)
	assert.Contains(t, before, spec.Name)

	spec.Name = "renamed-" + id.String()[:8]
	spec.Description = "redefined by the conformance suite"
	require.NoError(t, h.Hypervisor.Define(ctx, spec))
	after, err := h.DefinitionXML(ctx, id)
	require.NoError(t, err)
	assert.NotEqual(t, before, after)
	assert.Contains(t, after, spec.Name)
	assert.Contains(t, after, spec.Description)
	assert.NotContains(t, after, "drivertest ")
	st, err := hvPower(ctx, h, id)
	require.NoError(t, err)
	assert.Equal(t, driver.PowerShutOff, st)
}

func hvTestUndefine(t *testing.T, h HypervisorHarness) {
	id, _ := hvDefine(t, h)
	ctx := hvCtx(t, h)
	require.NoError(t, h.Hypervisor.Undefine(ctx, id))
	st, err := hvPower(ctx, h, id)
	require.NoError(t, err)
	assert.Equal(t, driver.PowerMissing, st)
	require.NoError(t, h.Hypervisor.Undefine(ctx, id), "undefining twice succeeds")
}

func hvTestMissing(t *testing.T, h HypervisorHarness) {
	ctx := hvCtx(t, h)
	id := uuid.New()
	st, err := hvPower(ctx, h, id)
	require.NoError(t, err)
	assert.Equal(t, driver.PowerMissing, st)
	assert.NoError(t, h.Hypervisor.Undefine(ctx, id))
	for name, op := range map[string]func(context.Context, uuid.UUID) error{
		"Start": h.Hypervisor.Start, "Shutdown": h.Hypervisor.Shutdown,
		"Destroy": h.Hypervisor.Destroy, "Reboot": h.Hypervisor.Reboot, "Reset": h.Hypervisor.Reset,
	} {
		assert.ErrorIs(t, op(ctx, id), driver.ErrNotFound, name)
	}
	_, err = h.Hypervisor.Console(ctx, id)
	assert.ErrorIs(t, err, driver.ErrNotFound, "Console")
}

func hvTestStates(t *testing.T, h HypervisorHarness) {
	lister, ok := h.Hypervisor.(driver.StateLister)
	if !ok {
		t.Skip("driver does not implement StateLister")
	}
	stopped, _ := hvDefine(t, h)
	running, _ := hvDefine(t, h)
	ctx := hvCtx(t, h)
	require.NoError(t, h.Hypervisor.Start(ctx, running))
	hvAwaitState(t, h, running, driver.PowerRunning)
	all, err := lister.States(ctx)
	require.NoError(t, err)
	assert.Equal(t, driver.PowerShutOff, all[stopped].Power)
	assert.Equal(t, driver.PowerRunning, all[running].Power)
	assert.Equal(t, driver.ReasonBooted, all[running].Reason)
	require.NoError(t, h.Hypervisor.Undefine(ctx, stopped))
	all, err = lister.States(ctx)
	require.NoError(t, err)
	assert.NotContains(t, all, stopped)
}

// hvAwait waits for an event of id with the wanted state, skipping others.
func hvAwait(t *testing.T, h HypervisorHarness, ch <-chan driver.StateEvent, id uuid.UUID, want driver.PowerState) driver.StateEvent {
	t.Helper()
	timer := time.NewTimer(h.Timeout)
	defer timer.Stop()
	var seen []string
	for {
		select {
		case ev, ok := <-ch:
			require.True(t, ok, "event channel closed while waiting for %s (seen %v)", want, seen)
			if ev.ID == id && ev.State == want {
				assert.False(t, ev.At.IsZero(), "event time set")
				return ev
			}
			seen = append(seen, ev.ID.String()[:8]+"="+string(ev.State))
		case <-timer.C:
			require.Failf(t, "event not delivered", "no %s event for %s within %s (seen %s)", want, id, h.Timeout, strings.Join(seen, ", "))
		}
	}
}

func hvTestWatch(t *testing.T, h HypervisorHarness) {
	w, ok := h.Hypervisor.(driver.StateWatcher)
	if !ok {
		t.Skip("driver does not implement StateWatcher")
	}
	ctx, cancel := context.WithCancel(hvCtx(t, h))
	ch, err := w.WatchStates(ctx)
	require.NoError(t, err)

	id, _ := hvDefine(t, h)
	hvAwait(t, h, ch, id, driver.PowerShutOff) // defined
	require.NoError(t, h.Hypervisor.Start(ctx, id))
	hvAwait(t, h, ch, id, driver.PowerRunning)
	require.NoError(t, h.Hypervisor.Destroy(ctx, id))
	ev := hvAwait(t, h, ch, id, driver.PowerShutOff)
	assert.Equal(t, driver.ReasonDestroyed, ev.Reason, "the stop event says why")

	if h.DestroyBehind != nil {
		require.NoError(t, h.Hypervisor.Start(ctx, id))
		hvAwait(t, h, ch, id, driver.PowerRunning)
		require.NoError(t, h.DestroyBehind(ctx, id))
		hvAwait(t, h, ch, id, driver.PowerShutOff)
	}
	require.NoError(t, h.Hypervisor.Undefine(ctx, id))
	hvAwait(t, h, ch, id, driver.PowerMissing)

	// Ending the context closes the channel.
	cancel()
	timer := time.NewTimer(h.Timeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timer.C:
			require.Fail(t, "event channel not closed after its context ended")
		}
	}
}

// hvTestUEFI: a hypervisor that says it has no UEFI firmware (Capabilities.UEFI false) must refuse to run a
// domain with firmware "uefi", at Define or at Start, with ErrUnrunnable or ErrUnsupported, and leave it
// not running.
func hvTestUEFI(t *testing.T, h HypervisorHarness) {
	if h.Hypervisor.Info().Capabilities.UEFI {
		t.Skip("the hypervisor offers UEFI")
	}
	if h.FirmwareIgnored {
		t.Skip("the hypervisor loads no firmware (HypervisorHarness.FirmwareIgnored)")
	}
	ctx := hvCtx(t, h)
	id := uuid.New()
	spec := h.Spec(t, id)
	spec.ID = id
	spec.Name = "drivertest " + t.Name()
	spec.Firmware = "uefi"
	err := h.Hypervisor.Define(ctx, spec)
	if err == nil {
		hvRemoveAtEnd(t, h, id)
		err = h.Hypervisor.Start(ctx, id)
	}
	require.Error(t, err, "a UEFI domain on a hypervisor without UEFI firmware must be refused (Define or Start)")
	t.Logf("refused: %v", err)
	assert.True(t, errors.Is(err, driver.ErrUnrunnable) || errors.Is(err, driver.ErrUnsupported),
		"refused with ErrUnrunnable or ErrUnsupported, got: %v", err)
	st, err := hvPower(ctx, h, id)
	require.NoError(t, err)
	assert.Contains(t, []driver.PowerState{driver.PowerShutOff, driver.PowerMissing}, st, "the refused domain does not run")
}

// hvTestClose: Close of an instance never used, of one used (its event channel closes), twice each; the
// domains it defined outlive it.
func hvTestClose(t *testing.T, h HypervisorHarness) {
	if h.Open == nil {
		t.Skip("harness cannot open another instance (HypervisorHarness.Open)")
	}
	unused := h.Open(t)
	require.NoError(t, unused.Close(), "Close of a driver that never connected")
	require.NoError(t, unused.Close(), "Close is idempotent")

	ctx := hvCtx(t, h)
	other := h.Open(t)
	id := uuid.New()
	spec := h.Spec(t, id)
	spec.ID = id
	spec.Name = "drivertest " + t.Name()
	require.NoError(t, other.Define(ctx, spec))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
		defer cancel()
		assert.NoError(t, h.Hypervisor.Undefine(ctx, id), "cleanup undefine")
	})
	var ch <-chan driver.StateEvent
	if w, ok := other.(driver.StateWatcher); ok {
		var err error
		ch, err = w.WatchStates(ctx)
		require.NoError(t, err)
	}
	require.NoError(t, other.Close(), "Close of a driver that was used")
	require.NoError(t, other.Close(), "Close is idempotent")
	if ch != nil {
		timer := time.NewTimer(h.Timeout)
		defer timer.Stop()
	drain:
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					break drain
				}
			case <-timer.C:
				require.Fail(t, "event channel not closed by Close")
			}
		}
	}
	st, err := hvPower(ctx, h, id)
	require.NoError(t, err)
	assert.Equal(t, driver.PowerShutOff, st, "a domain outlives the driver instance that defined it")
}
