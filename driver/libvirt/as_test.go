package libvirt_test

import (
	"path/filepath"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/testenv/libvirtd"
)

// TestAsConnection: driver.As gives the driver's live go-libvirt connection, which answers calls the driver
// does not make; the driver goes on using it.
func TestAsConnection(t *testing.T) {
	d := libvirtd.Start(t)
	drv := openDriver(t, d, golibvirt.TestDefault)
	var hv driver.Hypervisor = drv
	ctx := ctxT(t, time.Minute)

	var l *golibvirt.Libvirt
	require.True(t, driver.As(hv, &l), "As connects when there is no connection yet")
	require.NotNil(t, l)
	v, err := l.ConnectGetLibVersion()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, v, uint64(9_000_000), "libvirt 9.0 or later (Debian 12)")
	uri, err := l.ConnectGetUri()
	require.NoError(t, err)
	assert.Equal(t, string(golibvirt.TestDefault), uri)

	// The same connection as the driver's: a domain it defines is seen through l, and the driver still works.
	id := uuid.New()
	require.NoError(t, drv.Define(ctx, testSpec(t, id)))
	t.Cleanup(func() { _ = drv.Undefine(ctxT(t, time.Minute), id) })
	dom, err := l.DomainLookupByUUID(golibvirt.UUID(id))
	require.NoError(t, err)
	assert.Equal(t, "openvair-"+id.String(), dom.Name)
	var again *golibvirt.Libvirt
	require.True(t, driver.As(hv, &again))
	assert.Same(t, l, again, "one live connection")
	st, err := drv.State(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, driver.PowerShutOff, st.Power)

	var wrong *string
	assert.False(t, driver.As(hv, &wrong), "an unknown target type")
	assert.False(t, driver.As(hv, l), "a *golibvirt.Libvirt is not a target: it cannot be set")

	require.NoError(t, drv.Close())
	var after *golibvirt.Libvirt
	assert.False(t, driver.As(hv, &after), "no connection after Close")
	assert.Nil(t, after)
}

// TestErrorAsLibvirtError: driver.ErrorAs finds libvirt's error reply (and its code) in what the driver
// returned for a failed call, under the error kind.
func TestErrorAsLibvirtError(t *testing.T) {
	d := libvirtd.Start(t)
	drv := openDriver(t, d, golibvirt.TestDefault)
	ctx := ctxT(t, time.Minute)

	err := drv.Start(ctx, uuid.New()) // no such domain
	require.ErrorIs(t, err, driver.ErrNotFound)
	var lerr golibvirt.Error
	require.True(t, driver.ErrorAs(drv, err, &lerr))
	assert.Equal(t, golibvirt.ErrNoDomain, golibvirt.ErrorNumber(lerr.Code))
	assert.NotEmpty(t, lerr.Message)
	var code golibvirt.ErrorNumber
	require.True(t, driver.ErrorAs(drv, err, &code))
	assert.Equal(t, golibvirt.ErrNoDomain, code)

	// A domain that is already running: errkind.WrongState, with whatever libvirt answered underneath (the
	// test driver says VIR_ERR_INTERNAL_ERROR where QEMU's says VIR_ERR_OPERATION_INVALID).
	id := uuid.New()
	require.NoError(t, drv.Define(ctx, testSpec(t, id)))
	t.Cleanup(func() {
		ctx := ctxT(t, time.Minute)
		_ = drv.Destroy(ctx, id)
		_ = drv.Undefine(ctx, id)
	})
	require.NoError(t, drv.Start(ctx, id))
	err = drv.Start(ctx, id)
	require.ErrorIs(t, err, errkind.WrongState)
	require.True(t, driver.ErrorAs(drv, err, &lerr), "%v", err)
	require.True(t, driver.ErrorAs(drv, err, &code))
	assert.Equal(t, golibvirt.ErrorNumber(lerr.Code), code)
	assert.NotEqual(t, golibvirt.ErrOk, code)

	// Errors without a libvirt reply underneath, and targets the driver does not know.
	bad := testSpec(t, uuid.New())
	bad.MemoryBytes = 0
	err = drv.Define(ctx, bad)
	require.ErrorIs(t, err, driver.ErrInvalid)
	assert.False(t, driver.ErrorAs(drv, err, &lerr), "the driver refused the spec itself")
	lerr = golibvirt.Error{}
	var s *string
	assert.False(t, driver.ErrorAs(drv, err, &s))
	assert.False(t, driver.ErrorAs(drv, nil, &lerr))
}

// TestAsUnreachable: while libvirtd cannot be reached As reports false, and Close of a driver whose dial
// failed succeeds, twice.
func TestAsUnreachable(t *testing.T) {
	drv := openDriverAt(t, filepath.Join(t.TempDir(), "missing-sock"))
	var l *golibvirt.Libvirt
	assert.False(t, driver.As(drv, &l))
	assert.Nil(t, l)
	_, err := drv.State(ctxT(t, 30*time.Second), uuid.New())
	require.ErrorIs(t, err, driver.ErrUnavailable)
	assert.False(t, driver.ErrorAs(drv, err, new(golibvirt.Error)), "a transport error carries no libvirt reply")
	require.NoError(t, drv.Close())
	require.NoError(t, drv.Close())
}
