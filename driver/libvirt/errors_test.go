package libvirt

import (
	"errors"
	"testing"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStartErrorClasses: the messages are libvirt 9.0's own for each start failure (seen on the system
// daemon with QEMU 7.2); each gets a kind the client can act on and a reason.
func TestStartErrorClasses(t *testing.T) {
	cases := []struct {
		name   string
		code   golibvirt.ErrorNumber
		msg    string
		kind   error
		reason string
	}{
		{"unknown cpu model", golibvirt.ErrConfigUnsupported,
			"unsupported configuration: CPU model 'Nonexistent' is not supported by hypervisor", driver.ErrUnrunnable, "cpu"},
		{"cpu not compatible", golibvirt.ErrCPUIncompatible,
			"the CPU is incompatible with host CPU: Host CPU does not provide required features: svm", driver.ErrUnrunnable, "cpu"},
		{"guest cpu mismatch", golibvirt.ErrOperationFailed,
			"operation failed: guest CPU doesn't match specification: missing features: svm", driver.ErrUnrunnable, "cpu"},
		{"no kvm", golibvirt.ErrConfigUnsupported,
			"unsupported configuration: Domain requires KVM, but it is not available. Check that virtualization is enabled in the host BIOS, and host configuration is setup to load the kvm modules.",
			driver.ErrUnrunnable, "domain_type"},
		{"no firmware", golibvirt.ErrOperationFailed,
			"operation failed: Unable to find any firmware to satisfy 'efi'", driver.ErrUnrunnable, "firmware"},
		{"unreadable file", golibvirt.ErrSystemError,
			"Cannot access storage file '/srv/pool/volume-1' (as uid:64055, gid:64055): Permission denied", driver.ErrBackendFailed, "file_access"},
		{"nfs access", golibvirt.ErrInternalError,
			"internal error: qemu unexpectedly closed the monitor: 2026-12-02T05:00:00.000000Z qemu-system-x86_64: -blockdev {...}: NFS: ACCESS denied. Required access rw-. Allowed access r--",
			driver.ErrBackendFailed, "nfs_access"},
		{"qemu exits", golibvirt.ErrInternalError,
			"internal error: qemu unexpectedly closed the monitor: qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0", driver.ErrBackendFailed, "cpu"},
		{"qemu exits otherwise", golibvirt.ErrInternalError,
			"internal error: process exited while connecting to monitor: qemu-system-x86_64: something", driver.ErrBackendFailed, "qemu_exited"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := startError(golibvirt.Error{Code: uint32(c.code), Message: c.msg}, "id")
			require.ErrorIs(t, err, c.kind)
			var e *errkind.Error
			require.True(t, errors.As(err, &e))
			assert.Equal(t, c.reason, e.Reason)
			assert.Contains(t, err.Error(), c.msg, "the hypervisor's message is kept")
		})
	}
	// Errors that say nothing about the VM keep their usual mapping.
	for code, kind := range map[golibvirt.ErrorNumber]error{
		golibvirt.ErrNoDomain: driver.ErrNotFound, golibvirt.ErrOperationInvalid: errkind.WrongState, golibvirt.ErrRPC: driver.ErrUnavailable,
	} {
		lerr := golibvirt.Error{Code: uint32(code), Message: "x"}
		assert.Equal(t, error(lerr), startError(lerr, "id"), "untouched by startError")
		assert.ErrorIs(t, mapError(lerr, "id", "start"), kind)
	}
	// A libvirt reply is never "unavailable" unless it says so: libvirtd answered.
	assert.ErrorIs(t, mapError(golibvirt.Error{Code: uint32(golibvirt.ErrInternalError), Message: "boom"}, "id", "op"), driver.ErrBackendFailed)
}
