package libvirt

import (
	"context"
	"errors"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
)

const entity = "libvirt"

// mapError turns a go-libvirt error into an error wrapping one of the driver's kinds. Errors that are not
// libvirt errors come from the transport: the daemon is unavailable.
func mapError(err error, id, op string) error {
	if err == nil {
		return nil
	}
	var kind error
	var lerr golibvirt.Error
	if errors.As(err, &lerr) {
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
		default:
			// Internal errors, QEMU failing to start, access denied, ...: the backend failed.
			kind = driver.ErrUnavailable
		}
		return errkind.Wrap(kind, err, entity, id, "%s", op)
	}
	return errkind.Wrap(driver.ErrUnavailable, err, entity, id, "%s: connection to libvirtd failed", op)
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
