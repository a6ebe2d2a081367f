package drivertest

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
)

// The real storage backends declare every volume format and Extend, so their suites never reach the
// refusal checks of those capabilities. These tests run the capability cases on fakes told to lack the
// capabilities (and to refuse what they lack, as the suites require).

func TestStorageCapabilityCasesOnFake(t *testing.T) {
	s := fake.NewStorage(1 << 40)
	s.Caps = &driver.StorageCapabilities{VolumeFormats: []driver.VolumeFormat{driver.FormatRaw}}
	pool := driver.PoolSpec{ID: uuid.New(), Type: "fake"}
	_, err := s.Prepare(t.Context(), pool)
	require.NoError(t, err)
	t.Run("UndeclaredFormats", func(t *testing.T) { stTestUndeclaredFormats(t, s, pool) })
	t.Run("ExtendRefused", func(t *testing.T) { stTestExtendRefused(t, s, pool) })
	require.Zero(t, s.Objects(pool.ID), "the cases leave nothing behind")
}

func TestHypervisorCapabilityCasesOnFake(t *testing.T) {
	h := fake.NewHypervisor()
	h.NoUEFI = true
	harness := HypervisorHarness{
		Hypervisor: h,
		Spec: func(_ *testing.T, id uuid.UUID) driver.DomainSpec {
			return driver.DomainSpec{ID: id, MemoryBytes: 64 << 20, Graphics: driver.GraphicsSpec{Type: "vnc"}}
		},
		// The fake keeps its state in the instance: "another instance" is the same one.
		Open:    func(testing.TB) driver.Hypervisor { return h },
		Timeout: 5 * time.Second,
	}
	t.Run("UEFIWithoutFirmware", func(t *testing.T) { hvTestUEFI(t, harness) })
	t.Run("Close", func(t *testing.T) { hvTestClose(t, harness) })
}
