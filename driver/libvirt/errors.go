package libvirt

import (
	"context"
	"errors"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
)

const entity = "libvirt"

// mapError turns a go-libvirt error into an error wrapping one of the driver's kinds. Errors that are not
// libvirt errors come from the transport: the daemon is unavailable. A libvirt error reply means libvirtd
// answered: unless it says it cannot reach its own hypervisor, the backend failed (502), it is not
// unavailable (503), so that a client does not retry forever what needs fixing.
func mapError(err error, id, op string) error {
	if err == nil {
		return nil
	}
	var lerr golibvirt.Error
	if !errors.As(err, &lerr) {
		return errkind.Wrap(driver.ErrUnavailable, err, entity, id, "%s: connection to libvirtd failed", op)
	}
	var kind error
	switch golibvirt.ErrorNumber(lerr.Code) {
	case golibvirt.ErrNoDomain, golibvirt.ErrNoDomainSnapshot:
		kind = driver.ErrNotFound
	case golibvirt.ErrOperationInvalid, golibvirt.ErrResourceBusy:
		kind = errkind.WrongState
	case golibvirt.ErrInvalidArg, golibvirt.ErrXMLError, golibvirt.ErrXMLDetail, golibvirt.ErrConfigUnsupported:
		kind = driver.ErrInvalid
	case golibvirt.ErrDomExist:
		kind = driver.ErrAlreadyExists
	case golibvirt.ErrNoSupport, golibvirt.ErrOperationUnsupported, golibvirt.ErrArgumentUnsupported:
		kind = driver.ErrUnsupported
	case golibvirt.ErrOperationTimeout, golibvirt.ErrAgentUnresponsive:
		kind = driver.ErrTimeout
	case golibvirt.ErrNoConnect, golibvirt.ErrRPC, golibvirt.ErrAuthFailed, golibvirt.ErrAuthUnavailable:
		kind = driver.ErrUnavailable
	default:
		// Internal errors, QEMU failing, access denied, ...: libvirtd answered, the backend failed.
		kind = driver.ErrBackendFailed
	}
	return errkind.Wrap(kind, err, entity, id, "%s", op)
}

// refusal is why libvirtd refused to start a domain: an error kind and a reason within it.
type refusal struct {
	kind   error
	reason string
}

// startRefusal reports why libvirtd refused to start a domain: ErrUnrunnable when the definition cannot
// run on this host (fix the VM), ErrBackendFailed when QEMU itself failed (fix the host or the storage). ok
// is false for errors that say nothing about the VM (not found, wrong state, libvirtd unreachable), which
// keep their usual kind.
func startRefusal(lerr golibvirt.Error) (r refusal, ok bool) {
	msg := strings.ToLower(lerr.Message)
	code := golibvirt.ErrorNumber(lerr.Code)
	switch code {
	case golibvirt.ErrNoDomain, golibvirt.ErrOperationInvalid, golibvirt.ErrResourceBusy, golibvirt.ErrOperationTimeout,
		golibvirt.ErrAgentUnresponsive, golibvirt.ErrNoConnect, golibvirt.ErrRPC, golibvirt.ErrAuthFailed, golibvirt.ErrAuthUnavailable:
		return refusal{}, false
	}
	reason := refusalReason(msg)
	switch code {
	case golibvirt.ErrConfigUnsupported, golibvirt.ErrCPUIncompatible, golibvirt.ErrNoSupport, golibvirt.ErrOperationUnsupported,
		golibvirt.ErrArgumentUnsupported, golibvirt.ErrInvalidArg, golibvirt.ErrXMLError, golibvirt.ErrXMLDetail:
		return refusal{driver.ErrUnrunnable, reason}, true
	}
	switch reason {
	case "cpu", "firmware", "machine", "domain_type":
		// The definition asks for something the host does not offer, whatever the code says ("guest CPU
		// doesn't match specification" comes as an operation failure).
		if !strings.Contains(msg, "qemu unexpectedly closed") && !strings.Contains(msg, "process exited") {
			return refusal{driver.ErrUnrunnable, reason}, true
		}
	}
	return refusal{driver.ErrBackendFailed, reason}, true
}

// refusalReason classifies a start failure by libvirt's message (already lower case).
func refusalReason(msg string) string {
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(msg, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("nfs: access denied", "nfs3err_acces", "nfs3err_perm"):
		return "nfs_access"
	case has("cannot access storage file", "permission denied", "could not open", "no such file", "cannot open"):
		return "file_access"
	case has("cpu model", "guest cpu", "host cpu", "host-model", "host-passthrough", "cpu mode", "msr", "cpu feature", "cpu definition"):
		return "cpu"
	case has("firmware", "loader", "nvram", "ovmf", "efi"):
		return "firmware"
	case has("machine type", "emulator", "unsupported machine"):
		return "machine"
	case has("domaintype", "virt type", "domain type", "kvm"):
		return "domain_type"
	case has("qemu unexpectedly closed", "process exited", "shutting down", "monitor"):
		return "qemu_exited"
	}
	return ""
}

// startError turns the error of DomainCreate into one that says what failed: see startRefusal.
func startError(err error, id string) error {
	var lerr golibvirt.Error
	if !errors.As(err, &lerr) {
		return err
	}
	r, ok := startRefusal(lerr)
	if !ok {
		return err
	}
	e := errkind.Wrap(r.kind, err, entity, id, "start refused by the hypervisor")
	e.Reason = r.reason
	if r.reason == "file_access" {
		e.Msg += " (QEMU runs as its own user: every directory above the file must be traversable by it, and the storage's files must be readable and writable by it)"
	}
	return e
}

// ctxError is the error of a call abandoned because ctx ended.
func ctxError(ctx context.Context, id, op string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errkind.Wrap(driver.ErrTimeout, ctx.Err(), entity, id, "%s: libvirtd did not answer in time", op)
	}
	return errkind.Wrap(driver.ErrUnavailable, ctx.Err(), entity, id, "%s: abandoned", op)
}

// isLibvirtError reports whether err is an error reply from libvirtd (the connection itself is fine).
func isLibvirtError(err error) bool {
	var lerr golibvirt.Error
	return errors.As(err, &lerr)
}

func asLibvirtError(err error, target *golibvirt.Error) bool {
	return err != nil && errors.As(err, target)
}

func errkindIs(err, kind error) bool { return err != nil && errors.Is(err, kind) }
