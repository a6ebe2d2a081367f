package driver_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/internal/errkind"
)

// conn stands for what a driver is built on (a client library's connection).
type conn struct{ name string }

// libError stands for the error type of that library.
type libError struct{ code int }

func (e *libError) Error() string { return fmt.Sprintf("library error %d", e.code) }

// aserDriver is a fake hypervisor that exposes its connection and its library's errors.
type aserDriver struct {
	*fake.Hypervisor
	c *conn // nil: disconnected
}

func (d *aserDriver) As(target any) bool {
	p, ok := target.(**conn)
	if !ok || d.c == nil {
		return false
	}
	*p = d.c
	return true
}

func (d *aserDriver) ErrorAs(err error, target any) bool {
	p, ok := target.(**libError)
	return ok && errors.As(err, p)
}

var (
	_ driver.Hypervisor = (*aserDriver)(nil)
	_ driver.Aser       = (*aserDriver)(nil)
	_ driver.ErrorAser  = (*aserDriver)(nil)
)

func TestAs(t *testing.T) {
	d := &aserDriver{Hypervisor: fake.NewHypervisor(), c: &conn{name: "live"}}
	var hv driver.Hypervisor = d

	var c *conn
	require.True(t, driver.As(hv, &c))
	assert.Same(t, d.c, c, "As hands out the driver's own value")

	var s string
	assert.False(t, driver.As(hv, &s), "a target type the driver does not know")
	assert.False(t, driver.As(hv, nil), "no target")

	d.c = nil
	c = nil
	assert.False(t, driver.As(hv, &c), "nothing to give while disconnected")
	assert.Nil(t, c)

	// Drivers without As: always false, target untouched.
	plain := fake.NewHypervisor()
	assert.False(t, driver.As(plain, &c))
	assert.False(t, driver.As(fake.NewStorage(1<<20), &c))
	assert.False(t, driver.As(nil, &c))
}

func TestErrorAs(t *testing.T) {
	d := &aserDriver{Hypervisor: fake.NewHypervisor()}
	cause := &libError{code: 42}
	// A driver error: a kind wrapping the library's error, wrapped again by a caller.
	err := fmt.Errorf("start vm: %w", errkind.Wrap(errkind.BackendFailed, cause, "vm", "x", "start refused"))

	var le *libError
	require.True(t, driver.ErrorAs(d, err, &le))
	assert.Equal(t, 42, le.code)
	assert.ErrorIs(t, err, driver.ErrBackendFailed, "the kind is still there")

	le = nil
	assert.False(t, driver.ErrorAs(d, errkind.New(errkind.Invalid, "vm", "x", "bad spec"), &le), "no library error in the chain")
	assert.False(t, driver.ErrorAs(d, nil, &le), "nil error")
	var s *string
	assert.False(t, driver.ErrorAs(d, err, &s), "a target type the driver does not know")
	assert.False(t, driver.ErrorAs(d, err, nil), "no target")
	assert.Nil(t, le)

	// Drivers without ErrorAs: false, even when the chain holds a matching error.
	assert.False(t, driver.ErrorAs(fake.NewHypervisor(), err, &le))
	assert.False(t, driver.ErrorAs(fake.NewStorage(1<<20), err, &le))
	assert.Nil(t, le)
}

// TestCloseIsPartOfTheContracts: every registered driver can be closed through the interface, twice.
func TestCloseIsPartOfTheContracts(t *testing.T) {
	st, err := driver.OpenStorage("fake", driver.Config{})
	require.NoError(t, err)
	require.NoError(t, st.Close())
	require.NoError(t, st.Close(), "Close is idempotent")

	hv, err := driver.OpenHypervisor("fake", driver.Config{})
	require.NoError(t, err)
	require.NoError(t, hv.Close())
	require.NoError(t, hv.Close(), "Close is idempotent")

	f := fake.NewStorage(1 << 20)
	f.FailNext("Close", fake.ErrInjected, 1)
	require.ErrorIs(t, f.Close(), fake.ErrInjected, "a fake can be told to fail Close")
	require.NoError(t, f.Close())
	assert.Equal(t, 2, f.Calls("Close"))
}
