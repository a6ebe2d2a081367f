// Package telemetry measures openvair: Prometheus metrics on a registry of their own, and OpenTelemetry
// traces, off by default.
//
// The SDK is measured at one seam, the service-driver boundary: openvair.Open wraps every storage backend
// and the hypervisor with Instruments.WrapStorage and Instruments.WrapHypervisor, so every driver call is
// counted, timed and traced without a line in the drivers or the services (see wrap.go for how a wrapper
// keeps exactly the optional interfaces of its driver). Operations are measured by the operation
// service's Observer, monitor cycles by StartMonitor, and the inventory (storage capacity, VMs by power
// state) is read at scrape time by an Inventory collector. The reference server adds its HTTP metrics and
// spans (refserver/metrics.go, refserver/tracing.go).
//
// This package depends only on the Prometheus client and the OpenTelemetry API, so an embedder that imports
// the SDK links no exporter. A program that serves metrics and exports spans sets them up with package
// internal/telemetry/exporter and gives its registry and tracer provider to openvair.Config (Metrics,
// TracerProvider) and refserver.Config (Metrics, TracerProvider).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MetricsHandler serves the metrics of g in the Prometheus exposition formats. A collector that fails
// (the inventory when the store does not answer) leaves its metrics out of the answer instead of failing
// the scrape.
func MetricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Timeout: 30 * time.Second})
}

// Inventory reports what the SDK holds at scrape time: every storage's capacity and free space, and how
// many VMs are in each power state. Its functions read the store (never the drivers), within Timeout.
type Inventory struct {
	// Storages lists the storages.
	Storages func(ctx context.Context) ([]StorageSample, error)
	// VMs counts the VMs by power state.
	VMs func(ctx context.Context) (map[string]int, error)
	// Timeout bounds one scrape's reads (default 5 s).
	Timeout time.Duration
}

// StorageSample is one storage as the inventory reports it.
type StorageSample struct {
	ID, Name, Type, Status string
	Capacity, Available    int64
}

// PowerStates are the power states the VM gauge always reports, 0 when no VM is in them.
var PowerStates = []string{"shut_off", "running", "paused", "shutting_down", "crashed", "missing"}

var (
	storageCapacityDesc = prometheus.NewDesc(Namespace+"_storage_capacity_bytes",
		"Capacity of each storage, in bytes, as last refreshed by the monitors.", []string{"storage", "name", "type"}, nil)
	storageAvailableDesc = prometheus.NewDesc(Namespace+"_storage_available_bytes",
		"Space available for new volumes and images on each storage, in bytes, as last refreshed by the monitors.",
		[]string{"storage", "name", "type"}, nil)
	storageUpDesc = prometheus.NewDesc(Namespace+"_storage_available",
		"1 when the storage's status is available, 0 otherwise (creating, error, deleting).", []string{"storage", "name", "type"}, nil)
	vmsDesc = prometheus.NewDesc(Namespace+"_vms", "VMs by power state.", []string{"power_state"}, nil)
)

// Describe implements prometheus.Collector.
func (inv *Inventory) Describe(ch chan<- *prometheus.Desc) {
	ch <- storageCapacityDesc
	ch <- storageAvailableDesc
	ch <- storageUpDesc
	ch <- vmsDesc
}

// Collect implements prometheus.Collector.
func (inv *Inventory) Collect(ch chan<- prometheus.Metric) {
	timeout := inv.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if inv.Storages != nil {
		sts, err := inv.Storages(ctx)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(storageCapacityDesc, fmt.Errorf("list storages: %w", err))
		}
		for _, s := range sts {
			ch <- prometheus.MustNewConstMetric(storageCapacityDesc, prometheus.GaugeValue, float64(s.Capacity), s.ID, s.Name, s.Type)
			ch <- prometheus.MustNewConstMetric(storageAvailableDesc, prometheus.GaugeValue, float64(s.Available), s.ID, s.Name, s.Type)
			up := 0.0
			if s.Status == "available" {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(storageUpDesc, prometheus.GaugeValue, up, s.ID, s.Name, s.Type)
		}
	}
	if inv.VMs != nil {
		counts, err := inv.VMs(ctx)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(vmsDesc, fmt.Errorf("count VMs: %w", err))
			return
		}
		for _, ps := range PowerStates {
			ch <- prometheus.MustNewConstMetric(vmsDesc, prometheus.GaugeValue, float64(counts[ps]), ps)
		}
		for ps, n := range counts {
			if !slices.Contains(PowerStates, ps) {
				ch <- prometheus.MustNewConstMetric(vmsDesc, prometheus.GaugeValue, float64(n), ps)
			}
		}
	}
}

// ErrDuplicate is returned by RegisterInventory when the registry has an inventory already.
var ErrDuplicate = errors.New("telemetry: the registry has an inventory already")

// RegisterInventory registers inv on reg and returns the function that unregisters it. A registry has one
// inventory: a second System on the same registry gets ErrDuplicate (its storages and VMs, in the same
// store, are already reported).
func RegisterInventory(reg prometheus.Registerer, inv *Inventory) (unregister func(), err error) {
	if err := reg.Register(inv); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return func() {}, ErrDuplicate
		}
		return func() {}, err
	}
	return func() { reg.Unregister(inv) }, nil
}
