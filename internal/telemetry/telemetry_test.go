package telemetry

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInventory: the inventory reports each storage and the VMs by power state, every known state even at
// 0, and one registry has one inventory.
func TestInventory(t *testing.T) {
	reg := prometheus.NewRegistry()
	inv := &Inventory{
		Storages: func(context.Context) ([]StorageSample, error) {
			return []StorageSample{{ID: "s1", Name: "pool", Type: "localfs", Status: "available", Capacity: 100, Available: 40}}, nil
		},
		VMs: func(context.Context) (map[string]int, error) { return map[string]int{"running": 2}, nil },
	}
	unregister, err := RegisterInventory(reg, inv)
	require.NoError(t, err)
	_, err = RegisterInventory(reg, &Inventory{})
	require.ErrorIs(t, err, ErrDuplicate)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP openvair_storage_capacity_bytes Capacity of each storage, in bytes, as last refreshed by the monitors.
# TYPE openvair_storage_capacity_bytes gauge
openvair_storage_capacity_bytes{name="pool",storage="s1",type="localfs"} 100
# HELP openvair_vms VMs by power state.
# TYPE openvair_vms gauge
openvair_vms{power_state="crashed"} 0
openvair_vms{power_state="missing"} 0
openvair_vms{power_state="paused"} 0
openvair_vms{power_state="running"} 2
openvair_vms{power_state="shut_off"} 0
openvair_vms{power_state="shutting_down"} 0
`), "openvair_storage_capacity_bytes", "openvair_vms"))
	unregister()
	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	assert.Zero(t, n)

	// A store that does not answer: the scrape goes on without the inventory.
	reg = prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "other_total", Help: "x"}))
	_, err = RegisterInventory(reg, &Inventory{VMs: func(context.Context) (map[string]int, error) { return nil, errors.New("down") }})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	MetricsHandler(reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	assert.Equal(t, 200, rec.Code)
	assert.Contains(t, rec.Body.String(), "other_total")
}
