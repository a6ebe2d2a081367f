package libvirt

import (
	"context"
	"errors"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/openvair/openvair/driver"
)

var (
	_ driver.Aser      = (*Driver)(nil)
	_ driver.ErrorAser = (*Driver)(nil)
)

// As gives access to the driver's go-libvirt connection, for what the driver does not cover (call it through
// driver.As). The one target type is **golibvirt.Libvirt: *target is set to the live connection, and As
// reports true.
//
// When there is no live connection yet (or the last one was lost), As connects as any call does, bounded by
// Options.CallTimeout; it reports false, leaving *target alone, while libvirtd is unreachable (at once while
// the driver backs off between attempts) and after Close. Any other target type gives false.
//
// The connection stays the driver's:
//   - never close it (Disconnect, ConnectClose): the driver's own calls and event subscriptions use it;
//   - it dies when libvirtd goes away, when the driver drops it (a call wedged on it) and at Close; the driver
//     then dials a new one, which a new call to As returns: keep the pointer no longer than needed;
//   - calls on it are not bounded by any context: one that libvirtd never answers blocks until the
//     connection dies.
func (d *Driver) As(target any) bool {
	p, ok := target.(**golibvirt.Libvirt)
	if !ok || p == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.opts.CallTimeout)
	defer cancel()
	s, err := d.c.session(ctx)
	if err != nil {
		return false
	}
	*p = s.l
	return true
}

// ErrorAs finds the libvirt error reply in an error the driver returned (call it through driver.ErrorAs):
// the errors of calls libvirtd answered with an error wrap it under their error kind. Target types:
//
//   - *golibvirt.Error: the reply itself, with libvirt's error code (golibvirt.ErrorNumber(e.Code)),
//     domain and message;
//   - *golibvirt.ErrorNumber: just its code (golibvirt.ErrNoDomain, ...).
//
// It reports false when err holds no libvirt error (the transport failed, the call timed out, the driver
// refused an invalid spec itself) and for any other target type.
func (d *Driver) ErrorAs(err error, target any) bool {
	switch p := target.(type) {
	case *golibvirt.Error:
		return p != nil && errors.As(err, p)
	case *golibvirt.ErrorNumber:
		var lerr golibvirt.Error
		if p == nil || !errors.As(err, &lerr) {
			return false
		}
		*p = golibvirt.ErrorNumber(lerr.Code)
		return true
	}
	return false
}
