package libvirt

import (
	"context"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"libvirt.org/go/libvirtxml"
)

// lookup names the domain of a VM without a round trip: libvirtd resolves a domain reference by its
// UUID, and answers VIR_ERR_NO_DOMAIN (driver.ErrNotFound) for the operation itself when it is missing.
func lookup(_ *golibvirt.Libvirt, id uuid.UUID) (golibvirt.Domain, error) {
	return golibvirt.Domain{Name: DomainName(id), UUID: golibvirt.UUID(id), ID: -1}, nil
}

// Define creates or replaces the persistent definition of a domain (DomainDefineXMLFlags with schema
// validation). An invalid spec fails with driver.ErrInvalid before libvirtd is contacted.
func (d *Driver) Define(ctx context.Context, spec driver.DomainSpec) error {
	if err := validateSpec(spec); err != nil {
		return err
	}
	return d.c.call(ctx, spec.ID.String(), "define", func(s *session) error {
		dom, err := BuildDomainXML(spec, s.caps)
		if err != nil {
			return err
		}
		doc, err := dom.Marshal()
		if err != nil {
			return errkind.Wrap(driver.ErrInvalid, err, entity, spec.ID.String(), "marshal domain XML")
		}
		_, err = s.l.DomainDefineXMLFlags(doc, golibvirt.DomainDefineValidate)
		return err
	})
}

// Undefine removes a domain's definition, its NVRAM, managed save image and snapshot metadata. A missing
// domain succeeds. A running domain stays running as a transient domain (the services undefine stopped VMs).
func (d *Driver) Undefine(ctx context.Context, id uuid.UUID) error {
	err := d.c.call(ctx, id.String(), "undefine", func(s *session) error {
		dom, err := lookup(s.l, id)
		if err != nil {
			return err
		}
		flags := golibvirt.DomainUndefineNvram | golibvirt.DomainUndefineManagedSave | golibvirt.DomainUndefineSnapshotsMetadata
		err = s.l.DomainUndefineFlags(dom, flags)
		if isUnsupportedFlags(err) { // drivers without NVRAM (the test driver) refuse the flags
			err = s.l.DomainUndefineFlags(dom, 0)
		}
		return err
	})
	if errkindIs(err, driver.ErrNotFound) {
		err = nil
	}
	if err == nil {
		d.removeConsoleLog(id)
	}
	return err
}

// Start boots a defined domain; errkind.WrongState when it already runs. A start the hypervisor refuses
// because of the definition or the host fails with driver.ErrUnrunnable, one where QEMU itself failed (a
// file it cannot open, an NFS server refusing it, QEMU exiting at once) with driver.ErrBackendFailed;
// both carry libvirt's message and a Reason (see startRefusal).
func (d *Driver) Start(ctx context.Context, id uuid.UUID) error {
	return d.domainOp(ctx, id, "start", func(l *golibvirt.Libvirt, dom golibvirt.Domain) error {
		err := l.DomainCreate(dom)
		if err == nil || !isLibvirtError(err) {
			return err
		}
		// Not every libvirt driver reports "already running" as VIR_ERR_OPERATION_INVALID: look.
		if st, _, serr := l.DomainGetState(dom, 0); serr == nil && golibvirt.DomainState(st) != golibvirt.DomainShutoff &&
			golibvirt.DomainState(st) != golibvirt.DomainCrashed {
			return errkind.Wrap(errkind.WrongState, err, entity, id.String(), "domain is already %s", powerState(golibvirt.DomainState(st)))
		}
		return startError(err, id.String())
	})
}

// Shutdown presses the ACPI power button and returns without waiting.
func (d *Driver) Shutdown(ctx context.Context, id uuid.UUID) error {
	return d.domainOp(ctx, id, "shutdown", func(l *golibvirt.Libvirt, dom golibvirt.Domain) error {
		err := l.DomainShutdownFlags(dom, golibvirt.DomainShutdownAcpiPowerBtn)
		if isUnsupportedFlags(err) {
			err = l.DomainShutdownFlags(dom, 0)
		}
		return err
	})
}

// Destroy powers a domain off at once.
func (d *Driver) Destroy(ctx context.Context, id uuid.UUID) error {
	return d.domainOp(ctx, id, "destroy", func(l *golibvirt.Libvirt, dom golibvirt.Domain) error {
		return l.DomainDestroy(dom)
	})
}

// Reset restarts a running domain at once (virDomainReset), without asking the guest.
func (d *Driver) Reset(ctx context.Context, id uuid.UUID) error {
	return d.domainOp(ctx, id, "reset", func(l *golibvirt.Libvirt, dom golibvirt.Domain) error {
		return l.DomainReset(dom, 0)
	})
}

// Reboot asks the guest to reboot (ACPI).
func (d *Driver) Reboot(ctx context.Context, id uuid.UUID) error {
	return d.domainOp(ctx, id, "reboot", func(l *golibvirt.Libvirt, dom golibvirt.Domain) error {
		err := l.DomainReboot(dom, golibvirt.DomainRebootAcpiPowerBtn)
		if isUnsupportedFlags(err) {
			err = l.DomainReboot(dom, 0)
		}
		return err
	})
}

func (d *Driver) domainOp(ctx context.Context, id uuid.UUID, op string, fn func(*golibvirt.Libvirt, golibvirt.Domain) error) error {
	return d.c.call(ctx, id.String(), op, func(s *session) error {
		dom, err := lookup(s.l, id)
		if err != nil {
			return err
		}
		return fn(s.l, dom)
	})
}

// State reports a domain's power state and libvirt's reason for it; driver.PowerMissing (and no error) when
// it is not defined.
func (d *Driver) State(ctx context.Context, id uuid.UUID) (driver.DomainState, error) {
	var st, reason int32
	err := d.c.call(ctx, id.String(), "state", func(s *session) error {
		dom, err := lookup(s.l, id)
		if err != nil {
			return err
		}
		st, reason, err = s.l.DomainGetState(dom, 0)
		return err
	})
	if errkindIs(err, driver.ErrNotFound) {
		return driver.DomainState{Power: driver.PowerMissing}, nil
	}
	if err != nil {
		return driver.DomainState{}, err
	}
	return domainState(golibvirt.DomainState(st), reason), nil
}

// powerState maps libvirt's domain state.
func powerState(st golibvirt.DomainState) driver.PowerState {
	switch st {
	case golibvirt.DomainRunning, golibvirt.DomainBlocked:
		return driver.PowerRunning
	case golibvirt.DomainPaused, golibvirt.DomainPmsuspended:
		return driver.PowerPaused
	case golibvirt.DomainShutdown:
		return driver.PowerStopping
	case golibvirt.DomainCrashed:
		return driver.PowerCrashed
	default: // DomainShutoff, DomainNostate
		return driver.PowerShutOff
	}
}

// Console reads the graphics port and listen address from the live XML. It fails with errkind.WrongState
// while no port is allocated (the domain is not running) and driver.ErrNotFound when the domain has no
// graphics.
func (d *Driver) Console(ctx context.Context, id uuid.UUID) (driver.Console, error) {
	var doc string
	err := d.domainOp(ctx, id, "console", func(l *golibvirt.Libvirt, dom golibvirt.Domain) error {
		var err error
		doc, err = l.DomainGetXMLDesc(dom, 0)
		return err
	})
	if err != nil {
		return driver.Console{}, err
	}
	return parseConsole(id, doc)
}

// parseConsole finds the first VNC or SPICE graphics device in a live domain XML.
func parseConsole(id uuid.UUID, doc string) (driver.Console, error) {
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(doc); err != nil {
		return driver.Console{}, errkind.Wrap(driver.ErrUnavailable, err, entity, id.String(), "parse live domain XML")
	}
	if dom.Devices != nil {
		for _, g := range dom.Devices.Graphics {
			var c driver.Console
			var listen string
			var listeners []libvirtxml.DomainGraphicListener
			switch {
			case g.VNC != nil:
				c = driver.Console{Type: "vnc", Port: g.VNC.Port}
				listen, listeners = g.VNC.Listen, g.VNC.Listeners
			case g.Spice != nil:
				c = driver.Console{Type: "spice", Port: g.Spice.Port}
				listen, listeners = g.Spice.Listen, g.Spice.Listeners
			default:
				continue
			}
			for _, l := range listeners {
				if l.Address != nil && l.Address.Address != "" {
					listen = l.Address.Address
					break
				}
			}
			if listen == "" {
				listen = "127.0.0.1"
			}
			c.Host = listen
			if c.Port <= 0 {
				return driver.Console{}, errkind.New(errkind.WrongState, entity, id.String(), "%s console has no port (domain not running)", c.Type)
			}
			return c, nil
		}
	}
	return driver.Console{}, errkind.New(driver.ErrNotFound, entity, id.String(), "domain has no graphical console")
}

func isUnsupportedFlags(err error) bool {
	var lerr golibvirt.Error
	if !asLibvirtError(err, &lerr) {
		return false
	}
	switch golibvirt.ErrorNumber(lerr.Code) {
	case golibvirt.ErrInvalidArg, golibvirt.ErrNoSupport, golibvirt.ErrArgumentUnsupported:
		return true
	}
	return false
}
