package vm_test

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/vm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serialHV is the fake hypervisor with serial consoles: each one is a pipe whose other end the test gets.
type serialHV struct {
	*fake.Hypervisor
	guests   chan net.Conn
	err      error // what OpenSerial fails with, when set
	deadline bool  // whether the last OpenSerial had a deadline
}

func (h *serialHV) OpenSerial(ctx context.Context, id uuid.UUID) (io.ReadWriteCloser, error) {
	_, h.deadline = ctx.Deadline()
	if h.err != nil {
		return nil, h.err
	}
	guest, console := net.Pipe()
	h.guests <- guest
	return console, nil
}

var _ driver.SerialConsoler = (*serialHV)(nil)

func TestSerialConsole(t *testing.T) {
	e := sdktest.New(t, nil)
	hv := &serialHV{Hypervisor: e.HV, guests: make(chan net.Conn, 1)}
	vm.SetHypervisor(e.Sys.VMs, hv)
	m := e.VM(t, "web")

	_, err := e.Sys.VMs.SerialConsole(e.Ctx, m.ID)
	assert.ErrorIs(t, err, errkind.WrongState, "a stopped VM has no console")
	_, err = e.Sys.VMs.SerialConsole(e.Ctx, uuid.New())
	assert.ErrorIs(t, err, errkind.NotFound)

	_, err = e.Sys.VMs.Start(e.Ctx, m.ID)
	require.NoError(t, err)
	con, err := e.Sys.VMs.SerialConsole(context.Background(), m.ID)
	require.NoError(t, err)
	assert.True(t, hv.deadline, "connecting is bounded by the service's OpTimeout")
	guest := <-hv.guests
	go func() { _, _ = guest.Write([]byte("login: ")) }()
	buf := make([]byte, 7)
	_, err = io.ReadFull(con, buf)
	require.NoError(t, err)
	assert.Equal(t, "login: ", string(buf))
	require.NoError(t, con.Close())
	_, err = guest.Read(buf)
	assert.ErrorIs(t, err, io.EOF, "closing the console closes it")
	got, err := e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.PowerRunning, got.PowerState, "closing the console leaves the VM running")

	hv.err = errkind.New(driver.ErrUnavailable, "fake", m.ID.String(), "console in use")
	_, err = e.Sys.VMs.SerialConsole(e.Ctx, m.ID)
	assert.ErrorIs(t, err, errkind.Unavailable, "the driver's error")
}

func TestSerialConsoleUnsupported(t *testing.T) {
	e := sdktest.New(t, nil) // the plain fake hypervisor has no serial console
	m := e.Running(t, "web")
	_, err := e.Sys.VMs.SerialConsole(e.Ctx, m.ID)
	assert.ErrorIs(t, err, errkind.Unsupported)

	vm.SetHypervisor(e.Sys.VMs, nil)
	_, err = e.Sys.VMs.SerialConsole(e.Ctx, m.ID)
	assert.ErrorIs(t, err, errkind.Unavailable, "no hypervisor")
}
