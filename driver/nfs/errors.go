package nfs

import (
	"context"
	"errors"
	"os"

	gonfs "github.com/vmware/go-nfs-client/nfs"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/nfsrpc"
)

// mapErr gives err an error kind. ctx is the context the call ran with.
func (b *Backend) mapErr(ctx context.Context, err error, p pool, what string) error {
	if err == nil {
		return nil
	}
	if errkind.KindOf(err) != nil {
		return err
	}
	server := p.key.server + ":" + p.key.export
	var me *mountError
	if errors.As(err, &me) {
		return errkind.Wrap(driver.ErrNotFound, err, "nfs", p.id, "%s: export %s not found or refused", what, server)
	}
	switch status := nfsStatus(err); {
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return errkind.Wrap(driver.ErrTimeout, err, "nfs", p.id, "%s on %s: cancelled", what, server)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return errkind.Wrap(driver.ErrUnavailable, err, "nfs", p.id, "%s: server %s not answering", what, server)
	case status == 0:
		return errkind.Wrap(driver.ErrUnavailable, err, "nfs", p.id, "%s: server %s unreachable or misbehaving", what, server)
	case status == nfsrpc.ErrNoEnt || status == nfsrpc.ErrStale:
		return errkind.Wrap(driver.ErrNotFound, err, "nfs", p.id, "%s: not found on %s", what, server)
	case status == nfsrpc.ErrExist:
		return errkind.Wrap(driver.ErrAlreadyExists, err, "nfs", p.id, "%s: already exists on %s", what, server)
	case status == nfsrpc.ErrNoSpc || status == nfsrpc.ErrDQuot || status == nfsrpc.ErrFBig:
		return errkind.Wrap(driver.ErrTooLarge, err, "nfs", p.id, "%s: no space on %s", what, server)
	case status == nfsrpc.ErrNotEmpty:
		return errkind.Wrap(driver.ErrInUse, err, "nfs", p.id, "%s: directory not empty on %s", what, server)
	default:
		return errkind.Wrap(driver.ErrUnavailable, err, "nfs", p.id, "%s: server %s refused", what, server)
	}
}

// nfsStatus returns the nfsstat3 carried by err, or 0 when err is not a status reply.
func nfsStatus(err error) uint32 {
	var se *nfsrpc.StatusError
	var ge *gonfs.Error
	switch {
	case errors.As(err, &se):
		return se.Status
	case errors.As(err, &ge):
		return ge.ErrorNum
	case errors.Is(err, os.ErrNotExist):
		return nfsrpc.ErrNoEnt
	case errors.Is(err, os.ErrExist):
		return nfsrpc.ErrExist
	case errors.Is(err, os.ErrPermission):
		return nfsrpc.ErrAcces
	case errors.Is(err, os.ErrInvalid):
		return nfsrpc.ErrInval
	}
	return 0
}
