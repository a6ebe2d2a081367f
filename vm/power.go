package vm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/deadline"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/fsm"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
)

// start boots a VM that is shut off. Its volumes must be available (not being extended or deleted) on
// available storages.
func (s *Service) start(ctx context.Context, id uuid.UUID) (*VM, error) {
	hv, err := s.hypervisor()
	if err != nil {
		return nil, err
	}
	if _, err := s.update(ctx, id, func(ctx context.Context, cur *VM) error {
		if err := requireStopped(cur, "start"); err != nil {
			return err
		}
		if cur.PowerState == PowerMissing {
			return errkind.New(errkind.WrongState, "vm", id.String(), "its domain is missing from the hypervisor: %s", cur.StatusReason)
		}
		if err := s.checkDisksUsable(ctx, cur); err != nil {
			return err
		}
		return cur.SetStatus(StatusStarting, "")
	}); err != nil {
		return nil, err
	}
	err = s.call(ctx, func(ctx context.Context) error { return hv.Start(ctx, id) })
	return s.finishPower(ctx, hv, id, "start", err, PowerRunning)
}

// checkDisksUsable refuses to start a VM whose volumes are busy or whose storages are not available.
func (s *Service) checkDisksUsable(ctx context.Context, v *VM) error {
	for _, d := range v.Disks {
		vol, err := s.d.Volumes.Get(ctx, d.VolumeID)
		if err != nil {
			return err
		}
		if err := fsm.Require("volume", vol.ID.String(), "start a VM using it", vol.Status, volume.StatusAvailable); err != nil {
			return err
		}
		st, err := s.d.Storages.Get(ctx, vol.StorageID)
		if err != nil {
			return err
		}
		if err := fsm.Require("storage", st.ID.String(), "start a VM using it", st.Status, storage.StatusAvailable); err != nil {
			return err
		}
	}
	return nil
}

// finishPower ends a power operation: on success the VM is available in state want; on failure it is in
// error with the reason and the power state the hypervisor reports. An operation the hypervisor refused
// because the domain is already in state want (the stored power state was stale) succeeded.
func (s *Service) finishPower(ctx context.Context, hv Hypervisor, id uuid.UUID, op string, opErr error, want PowerState) (*VM, error) {
	ctx = context.WithoutCancel(ctx)
	st, err := s.state(ctx, hv, id)
	if err != nil && opErr == nil {
		st = driver.DomainState{Power: want} // it succeeded: the hypervisor just did not answer the check
	}
	if opErr != nil && st.Power == want && errkind.KindOf(opErr) == errkind.WrongState {
		opErr = nil
	}
	out, err := s.update(ctx, id, func(_ context.Context, cur *VM) error {
		if st.Power != "" {
			cur.observe(st, s.now().UTC())
		}
		if opErr != nil {
			return cur.SetStatus(StatusError, op+" failed: "+opErr.Error())
		}
		return cur.SetStatus(StatusAvailable, "")
	})
	if opErr != nil {
		return nil, fmt.Errorf("%s vm %s: %w", op, id, opErr)
	}
	return out, err
}

// stop powers a VM off: gracefully (the guest is asked to shut down, and Stop waits up to opts.Timeout) or
// at once with opts.Force. A graceful stop that times out leaves the VM running and returns an error
// wrapping errkind.Timeout, unless opts.ForceAfterTimeout is set.
func (s *Service) stop(ctx context.Context, id uuid.UUID, opts StopOptions) (*VM, error) {
	if opts.Timeout < 0 {
		return nil, &errkind.ValidationError{Entity: "vm stop", Fields: []errkind.FieldError{{Field: "timeout", Message: "must not be negative"}}}
	}
	hv, err := s.hypervisor()
	if err != nil {
		return nil, err
	}
	if _, err := s.update(ctx, id, func(_ context.Context, cur *VM) error {
		if err := fsm.Require("vm", id.String(), "stop", cur.Status, StatusAvailable, StatusError); err != nil {
			return err
		}
		switch cur.PowerState {
		case PowerRunning, PowerPaused, PowerStopping, PowerCrashed:
		default:
			return errkind.New(errkind.WrongState, "vm", id.String(), "cannot stop while power state is %q", cur.PowerState)
		}
		return cur.SetStatus(StatusStopping, "")
	}); err != nil {
		return nil, err
	}
	if opts.Force {
		err = s.call(ctx, func(ctx context.Context) error { return hv.Destroy(ctx, id) })
		return s.finishPower(ctx, hv, id, "stop", err, PowerShutOff)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = s.DefaultStopTimeout
	}
	err = s.call(ctx, func(ctx context.Context) error { return hv.Shutdown(ctx, id) })
	if err == nil {
		err = s.waitShutOff(ctx, hv, id, timeout)
		if errkind.KindOf(err) == errkind.Timeout && opts.ForceAfterTimeout {
			err = s.call(ctx, func(ctx context.Context) error { return hv.Destroy(ctx, id) })
		} else if errkind.KindOf(err) == errkind.Timeout {
			// The guest ignored the request: it is still running, which is not an error of the VM.
			st, serr := s.state(context.WithoutCancel(ctx), hv, id)
			_, uerr := s.update(context.WithoutCancel(ctx), id, func(_ context.Context, cur *VM) error {
				if serr == nil {
					cur.observe(st, s.now().UTC())
				}
				return cur.SetStatus(StatusAvailable, "")
			})
			s.logErr("end a timed out stop", id, uerr)
			return nil, err
		}
	}
	return s.finishPower(ctx, hv, id, "stop", err, PowerShutOff)
}

// waitShutOff polls the power state until the domain is shut off or timeout passes.
func (s *Service) waitShutOff(ctx context.Context, hv Hypervisor, id uuid.UUID, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(s.PollInterval)
	defer tick.Stop()
	for {
		st, err := hv.State(ctx, id)
		if err == nil && (st.Power == PowerShutOff || st.Power == PowerMissing) {
			return nil
		}
		select {
		case <-ctx.Done():
			return errkind.New(errkind.Timeout, "vm", id.String(), "guest did not shut down within %s", timeout)
		case <-tick.C:
		}
	}
}

// reboot asks a running VM's guest to reboot (the ACPI reset request: the guest decides, and one without
// ACPI support ignores it). See Reset for a hard reset.
func (s *Service) reboot(ctx context.Context, id uuid.UUID) (*VM, error) {
	return s.whileRunning(ctx, id, "reboot", Hypervisor.Reboot)
}

// reset restarts a running VM at once, like a hardware reset button: the guest is not asked and loses
// what it did not write to disk.
func (s *Service) reset(ctx context.Context, id uuid.UUID) (*VM, error) {
	return s.whileRunning(ctx, id, "reset", Hypervisor.Reset)
}

// whileRunning runs op on a VM that is available and running; the VM's record does not change.
func (s *Service) whileRunning(ctx context.Context, id uuid.UUID, op string, fn func(Hypervisor, context.Context, uuid.UUID) error) (*VM, error) {
	hv, err := s.hypervisor()
	if err != nil {
		return nil, err
	}
	cur, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := fsm.Require("vm", id.String(), op, cur.Status, StatusAvailable); err != nil {
		return nil, err
	}
	if cur.PowerState != PowerRunning {
		return nil, errkind.New(errkind.WrongState, "vm", id.String(), "cannot %s while power state is %q", op, cur.PowerState)
	}
	if err := s.call(ctx, func(ctx context.Context) error { return fn(hv, ctx, id) }); err != nil {
		return nil, fmt.Errorf("%s vm %q: %w", op, cur.Name, err)
	}
	return cur, nil
}

// ConsoleLog returns at most max bytes from the end of what the VM wrote on its serial console (its boot
// messages, a kernel panic), as the hypervisor keeps it across boots (all of it when max <= 0). It fails
// with ErrUnsupported when the hypervisor keeps no console log, and ErrNotFound when the VM has not run.
func (s *Service) ConsoleLog(ctx context.Context, id uuid.UUID, max int64) ([]byte, error) {
	hv, err := s.hypervisor()
	if err != nil {
		return nil, err
	}
	if _, err := s.d.Repo.Get(ctx, id); err != nil {
		return nil, err
	}
	cl, ok := hv.(driver.ConsoleLogger)
	if !ok {
		return nil, errkind.New(errkind.Unsupported, "vm", id.String(), "the hypervisor keeps no console log")
	}
	var out []byte
	err = s.call(ctx, func(ctx context.Context) (err error) { out, err = cl.ConsoleLog(ctx, id, max); return err })
	return out, err
}

// Console returns where a running VM's graphical console listens.
func (s *Service) Console(ctx context.Context, id uuid.UUID) (Console, error) {
	hv, err := s.hypervisor()
	if err != nil {
		return Console{}, err
	}
	cur, err := s.d.Repo.Get(ctx, id)
	if err != nil {
		return Console{}, err
	}
	if cur.Graphics.Type == "none" {
		return Console{}, errkind.New(errkind.NotFound, "vm", id.String(), "has no graphical console")
	}
	if cur.PowerState != PowerRunning && cur.PowerState != PowerPaused {
		return Console{}, errkind.New(errkind.WrongState, "vm", id.String(), "console is only there while the VM runs (power state %q)", cur.PowerState)
	}
	var c Console
	err = s.call(ctx, func(ctx context.Context) error {
		dc, err := hv.Console(ctx, id)
		c = Console{Type: dc.Type, Host: dc.Host, Port: dc.Port, PasswordSet: cur.Graphics.Password != ""}
		return err
	})
	return c, err
}

// Console is how to reach a VM's graphical console.
type Console struct {
	Type        string `json:"type"` // vnc or spice
	Host        string `json:"host"`
	Port        int    `json:"port"`
	PasswordSet bool   `json:"password_set"` // the console asks for the VM's graphics password
}

// RunningChecker asks the hypervisor whether a VM's domain runs now (running, paused or shutting down). It
// implements volume.VMStates with the hypervisor alone, so that the volume service can be built before
// the VM service, which uses it.
type RunningChecker struct {
	hv      Hypervisor
	timeout time.Duration
}

// NewRunningChecker returns a RunningChecker on hv; each question has timeout as its deadline unless the
// caller's context has an earlier one.
func NewRunningChecker(hv Hypervisor, timeout time.Duration) *RunningChecker {
	return &RunningChecker{hv: hv, timeout: timeout}
}

// Running reports whether the domain of VM id has its disks open.
func (c *RunningChecker) Running(ctx context.Context, id uuid.UUID) (bool, error) {
	ctx, cancel := deadline.Ensure(ctx, c.timeout)
	defer cancel()
	st, err := c.hv.State(ctx, id)
	return st.Power.UsesDisks(), err
}

// HasHypervisor reports whether the service was given a hypervisor.
func (s *Service) HasHypervisor() bool { return s.d.Hypervisor != nil }

// PingHypervisor asks the hypervisor for the state of a domain that cannot exist, within the caller's
// deadline: nil when it answers (a missing domain is an answer), the error that makes VM calls fail
// otherwise (errkind.Unavailable when there is no hypervisor).
func (s *Service) PingHypervisor(ctx context.Context) error {
	hv, err := s.hypervisor()
	if err != nil {
		return err
	}
	if _, err := hv.State(ctx, uuid.Nil); err != nil && !errors.Is(err, errkind.NotFound) {
		return err
	}
	return nil
}
