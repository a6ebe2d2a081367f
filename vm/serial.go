package vm

import (
	"context"
	"io"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
)

// SerialConsole connects to the first serial console of a running VM: reads return what the guest writes
// on it, writes are typed into it, and a read returns io.EOF when the console ends (the VM stopped). ctx
// bounds connecting only (with the service's OpTimeout when it has no deadline); the console lasts until the
// caller closes it, which leaves the VM running. It fails with ErrNotFound for an unknown VM, ErrWrongState
// while the VM does not run, ErrUnsupported when the hypervisor cannot connect to serial consoles
// (driver.SerialConsoler), and ErrUnavailable when another client holds the console.
func (s *Service) SerialConsole(ctx context.Context, id uuid.UUID) (io.ReadWriteCloser, error) {
	hv, err := s.hypervisor()
	if err != nil {
		return nil, err
	}
	cur, err := s.d.Repo.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if cur.PowerState != PowerRunning && cur.PowerState != PowerPaused {
		return nil, errkind.New(errkind.WrongState, "vm", id.String(), "serial console is only there while the VM runs (power state %q)", cur.PowerState)
	}
	sc, ok := hv.(driver.SerialConsoler)
	if !ok {
		return nil, errkind.New(errkind.Unsupported, "vm", id.String(), "the hypervisor cannot connect to serial consoles")
	}
	var conn io.ReadWriteCloser
	err = s.call(ctx, func(ctx context.Context) (err error) { conn, err = sc.OpenSerial(ctx, id); return err })
	if err != nil {
		return nil, err
	}
	return conn, nil
}
