package fake

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
)

func init() {
	driver.RegisterHypervisor("fake", func(driver.Config) (driver.Hypervisor, error) { return NewHypervisor(), nil })
}

// Domain is a domain kept by the fake hypervisor.
type Domain struct {
	Spec   driver.DomainSpec
	State  driver.PowerState
	Reason driver.PowerReason
	Resets int // how many times Reset ran
}

// Hypervisor is an in-memory hypervisor with power states and events.
type Hypervisor struct {
	Faults
	// IgnoreShutdown makes guests ignore graceful shutdown requests (a VM without an OS).
	IgnoreShutdown bool
	// NoUEFI makes the hypervisor a host without UEFI firmware: Info reports UEFI false and Start refuses a
	// domain with firmware "uefi" with errkind.Unrunnable (reason "firmware"), as libvirt does.
	NoUEFI bool

	mu       sync.Mutex
	domains  map[uuid.UUID]*Domain
	watchers []chan driver.StateEvent
	logs     map[uuid.UUID][]byte
}

var (
	_ driver.Hypervisor    = (*Hypervisor)(nil)
	_ driver.StateWatcher  = (*Hypervisor)(nil)
	_ driver.StateLister   = (*Hypervisor)(nil)
	_ driver.ConsoleLogger = (*Hypervisor)(nil)
)

// NewHypervisor returns an empty fake hypervisor.
func NewHypervisor() *Hypervisor {
	return &Hypervisor{domains: map[uuid.UUID]*Domain{}, logs: map[uuid.UUID][]byte{}}
}

// Info names the hypervisor.
func (h *Hypervisor) Info() driver.HypervisorInfo {
	return driver.HypervisorInfo{Name: "fake", Capabilities: driver.HypervisorCapabilities{UEFI: !h.NoUEFI,
		NFSDisks: true, Graphics: []string{"vnc", "spice"}, DomainType: "qemu"}}
}

// Close ends every event subscription, as Disconnect does; domains and console logs stay, and the fake stays
// usable, like a driver that connects again. FailNext("Close", ...) makes it fail (and do nothing).
func (h *Hypervisor) Close() error {
	if err := h.check("Close"); err != nil {
		return err
	}
	h.Disconnect()
	return nil
}

// Domain returns a copy of a domain, or nil.
func (h *Hypervisor) Domain(id uuid.UUID) *Domain {
	h.mu.Lock()
	defer h.mu.Unlock()
	if d := h.domains[id]; d != nil {
		c := *d
		return &c
	}
	return nil
}

// SetState changes a domain's state behind the services' back (as virsh would) and emits an event;
// PowerMissing removes the domain. The reason is unknown; see SetStateReason.
func (h *Hypervisor) SetState(id uuid.UUID, state driver.PowerState) {
	h.SetStateReason(id, state, driver.ReasonUnknown)
}

// SetStateReason is SetState with the reason the hypervisor gives (a guest crash is
// SetStateReason(id, driver.PowerShutOff, driver.ReasonCrashed)).
func (h *Hypervisor) SetStateReason(id uuid.UUID, state driver.PowerState, reason driver.PowerReason) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if state == driver.PowerMissing {
		delete(h.domains, id)
		reason = ""
	} else if d := h.domains[id]; d != nil {
		d.State, d.Reason = state, reason
	}
	h.emit(id, state, reason)
}

// Disconnect ends every event subscription, as a lost connection to the hypervisor does; combine it with
// FailNext("WatchStates", ...) and FailNext("States", ...) to keep the hypervisor unreachable.
func (h *Hypervisor) Disconnect() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.watchers {
		close(w)
	}
	h.watchers = nil
}

// AppendConsole adds guest output to a domain's console log.
func (h *Hypervisor) AppendConsole(id uuid.UUID, p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs[id] = append(h.logs[id], p...)
}

func (h *Hypervisor) emit(id uuid.UUID, state driver.PowerState, reason driver.PowerReason) {
	for _, w := range h.watchers {
		select {
		case w <- driver.StateEvent{ID: id, State: state, Reason: reason, At: time.Now()}:
		default: // a slow watcher misses events and relies on resync, like a real one
		}
	}
}

func (h *Hypervisor) begin(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return h.check(op)
}

func (h *Hypervisor) domain(id uuid.UUID) (*Domain, error) {
	d := h.domains[id]
	if d == nil {
		return nil, errkind.New(errkind.NotFound, "fake", id.String(), "no such domain")
	}
	return d, nil
}

// Define creates or replaces a domain.
func (h *Hypervisor) Define(ctx context.Context, spec driver.DomainSpec) error {
	if err := h.begin(ctx, "Define"); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if d := h.domains[spec.ID]; d != nil {
		d.Spec = spec
		return nil
	}
	h.domains[spec.ID] = &Domain{Spec: spec, State: driver.PowerShutOff, Reason: driver.ReasonUnknown}
	return nil
}

// Undefine removes a domain; a missing one is fine, a running one is refused.
func (h *Hypervisor) Undefine(ctx context.Context, id uuid.UUID) error {
	if err := h.begin(ctx, "Undefine"); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if d := h.domains[id]; d != nil && d.State == driver.PowerRunning {
		return errkind.New(errkind.WrongState, "fake", id.String(), "domain is running")
	}
	delete(h.domains, id)
	delete(h.logs, id)
	return nil
}

// transition moves a domain from one of from to to (for the reason), emitting an event.
func (h *Hypervisor) transition(ctx context.Context, op string, id uuid.UUID, to driver.PowerState, reason driver.PowerReason, from ...driver.PowerState) error {
	if err := h.begin(ctx, op); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.domain(id)
	if err != nil {
		return err
	}
	for _, f := range from {
		if d.State == f {
			d.State, d.Reason = to, reason
			h.emit(id, to, reason)
			return nil
		}
	}
	return errkind.New(errkind.WrongState, "fake", id.String(), "cannot %s a domain that is %s", op, d.State)
}

// Start powers a domain on. With NoUEFI, a domain with firmware "uefi" is refused.
func (h *Hypervisor) Start(ctx context.Context, id uuid.UUID) error {
	if h.NoUEFI {
		h.mu.Lock()
		d := h.domains[id]
		uefi := d != nil && d.Spec.Firmware == "uefi"
		h.mu.Unlock()
		if uefi {
			if err := h.begin(ctx, "Start"); err != nil {
				return err
			}
			e := errkind.New(errkind.Unrunnable, "fake", id.String(), "no UEFI firmware on this host")
			e.Reason = "firmware"
			return e
		}
	}
	return h.transition(ctx, "Start", id, driver.PowerRunning, driver.ReasonBooted, driver.PowerShutOff, driver.PowerCrashed)
}

// Shutdown asks the guest to stop; with IgnoreShutdown nothing happens.
func (h *Hypervisor) Shutdown(ctx context.Context, id uuid.UUID) error {
	if h.IgnoreShutdown {
		return h.transition(ctx, "Shutdown", id, driver.PowerRunning, driver.ReasonBooted, driver.PowerRunning)
	}
	return h.transition(ctx, "Shutdown", id, driver.PowerShutOff, driver.ReasonShutdown, driver.PowerRunning, driver.PowerPaused)
}

// Destroy powers a domain off at once.
func (h *Hypervisor) Destroy(ctx context.Context, id uuid.UUID) error {
	return h.transition(ctx, "Destroy", id, driver.PowerShutOff, driver.ReasonDestroyed, driver.PowerRunning, driver.PowerPaused,
		driver.PowerCrashed, driver.PowerStopping)
}

// Reboot keeps a running domain running.
func (h *Hypervisor) Reboot(ctx context.Context, id uuid.UUID) error {
	return h.transition(ctx, "Reboot", id, driver.PowerRunning, driver.ReasonBooted, driver.PowerRunning)
}

// Reset keeps a running domain running and counts the reset.
func (h *Hypervisor) Reset(ctx context.Context, id uuid.UUID) error {
	if err := h.transition(ctx, "Reset", id, driver.PowerRunning, driver.ReasonBooted, driver.PowerRunning); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if d := h.domains[id]; d != nil {
		d.Resets++
	}
	return nil
}

// State reports a domain's power state; PowerMissing when undefined.
func (h *Hypervisor) State(ctx context.Context, id uuid.UUID) (driver.DomainState, error) {
	if err := h.begin(ctx, "State"); err != nil {
		return driver.DomainState{}, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if d := h.domains[id]; d != nil {
		return driver.DomainState{Power: d.State, Reason: d.Reason}, nil
	}
	return driver.DomainState{Power: driver.PowerMissing}, nil
}

// ConsoleLog returns the end of what AppendConsole added; ErrNotFound when nothing was.
func (h *Hypervisor) ConsoleLog(ctx context.Context, id uuid.UUID, max int64) ([]byte, error) {
	if err := h.begin(ctx, "ConsoleLog"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.logs[id]
	if !ok {
		return nil, errkind.New(errkind.NotFound, "fake", id.String(), "no console log")
	}
	if max > 0 && int64(len(b)) > max {
		b = b[int64(len(b))-max:]
	}
	return append([]byte(nil), b...), nil
}

// Console reports a VNC port for a running domain.
func (h *Hypervisor) Console(ctx context.Context, id uuid.UUID) (driver.Console, error) {
	if err := h.begin(ctx, "Console"); err != nil {
		return driver.Console{}, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.domain(id)
	if err != nil {
		return driver.Console{}, err
	}
	return driver.Console{Type: d.Spec.Graphics.Type, Host: d.Spec.Graphics.Listen, Port: 5900}, nil
}

// States reports every domain's state.
func (h *Hypervisor) States(ctx context.Context) (map[uuid.UUID]driver.DomainState, error) {
	if err := h.begin(ctx, "States"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[uuid.UUID]driver.DomainState, len(h.domains))
	for id, d := range h.domains {
		out[id] = driver.DomainState{Power: d.State, Reason: d.Reason}
	}
	return out, nil
}

// WatchStates delivers state changes until ctx ends.
func (h *Hypervisor) WatchStates(ctx context.Context) (<-chan driver.StateEvent, error) {
	if err := h.begin(ctx, "WatchStates"); err != nil {
		return nil, err
	}
	ch := make(chan driver.StateEvent, 64)
	h.mu.Lock()
	h.watchers = append(h.watchers, ch)
	h.mu.Unlock()
	go func() {
		<-ctx.Done()
		h.mu.Lock()
		defer h.mu.Unlock()
		for i, w := range h.watchers {
			if w == ch {
				h.watchers = append(h.watchers[:i], h.watchers[i+1:]...)
				close(ch) // not closed by Disconnect yet
				break
			}
		}
	}()
	return ch, nil
}
