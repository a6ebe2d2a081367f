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
// A program sets it up with Setup, gives Telemetry.Registry and Telemetry.TracerProvider to
// openvair.Config (Metrics, TracerProvider) and refserver.Config (Metrics, TracerProvider), and serves
// ScrapeHandler on a scrape address when one is configured.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Tracing exporters (Config.Tracing).
const (
	TracingOff    = ""
	TracingOTLP   = "otlp"
	TracingStdout = "stdout"
)

// Config configures Setup.
type Config struct {
	// Tracing chooses the span exporter: "" (the default) traces nothing, "otlp" exports over OTLP/HTTP
	// (protobuf), "stdout" writes spans as JSON to Stdout.
	Tracing string
	// OTLPEndpoint is where "otlp" sends spans: a URL ("http://collector:4318"; the path /v1/traces is added
	// when it has none; http means no TLS) or host:port (HTTPS, path /v1/traces). Empty: the standard
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT and the other OTEL_EXPORTER_OTLP_*
	// environment variables apply (default https://localhost:4318/v1/traces).
	OTLPEndpoint string
	// ServiceName names this process in its spans (default "openvair"; OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES override it, as the standard says).
	ServiceName string
	// ServiceVersion is the version recorded in spans ("" for none).
	ServiceVersion string
	// Stdout receives the spans of "stdout" (default os.Stdout).
	Stdout io.Writer
	// BatchTimeout is the longest a span waits before export (default 5 s, OTEL_BSP_SCHEDULE_DELAY).
	BatchTimeout time.Duration
}

// Telemetry is what Setup made: a metrics registry, and the tracer provider when tracing is on.
type Telemetry struct {
	// Registry holds every metric of the process: the Go runtime's and the process's, the SDK's (give it as
	// openvair.Config.Metrics) and the server's (refserver.Config.Metrics).
	Registry *prometheus.Registry
	// TracerProvider makes the spans; nil when tracing is off (give it as openvair.Config.TracerProvider and
	// refserver.Config.TracerProvider).
	TracerProvider trace.TracerProvider
}

// Setup makes the metrics registry (with the Go runtime and process collectors) and, when cfg.Tracing asks
// for it, a tracer provider exporting spans in batches. shutdown flushes the spans not exported yet and
// stops the exporter, within ctx; call it when the server stops.
func Setup(ctx context.Context, cfg Config) (_ *Telemetry, shutdown func(context.Context) error, _ error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, err
	}
	t := &Telemetry{Registry: reg}
	noop := func(context.Context) error { return nil }
	var exp sdktrace.SpanExporter
	switch strings.ToLower(strings.TrimSpace(cfg.Tracing)) {
	case TracingOff:
		return t, noop, nil
	case TracingOTLP:
		opts, err := otlpOptions(cfg.OTLPEndpoint)
		if err != nil {
			return nil, nil, err
		}
		if exp, err = otlptracehttp.New(ctx, opts...); err != nil {
			return nil, nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
		}
	case TracingStdout:
		w := cfg.Stdout
		if w == nil {
			w = os.Stdout
		}
		var err error
		if exp, err = stdouttrace.New(stdouttrace.WithWriter(w)); err != nil {
			return nil, nil, fmt.Errorf("tracing: stdout exporter: %w", err)
		}
	default:
		return nil, nil, fmt.Errorf("tracing: unknown exporter %q (want \"\", %q or %q)", cfg.Tracing, TracingOTLP, TracingStdout)
	}
	name := cfg.ServiceName
	if name == "" {
		name = "openvair"
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", name)}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", cfg.ServiceVersion))
	}
	// The environment (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) wins over the defaults.
	res, err := resource.Merge(resource.NewSchemaless(attrs...), resource.Environment())
	if err != nil {
		res = resource.NewSchemaless(attrs...)
	}
	var bopts []sdktrace.BatchSpanProcessorOption
	if cfg.BatchTimeout > 0 {
		bopts = append(bopts, sdktrace.WithBatchTimeout(cfg.BatchTimeout))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, bopts...), sdktrace.WithResource(res))
	t.TracerProvider = tp
	return t, tp.Shutdown, nil
}

// otlpOptions turns the otlp_endpoint setting into exporter options (none when empty: the environment
// applies).
func otlpOptions(endpoint string) ([]otlptracehttp.Option, error) {
	endpoint = strings.TrimSpace(endpoint)
	if endpoint == "" {
		return nil, nil
	}
	if !strings.Contains(endpoint, "://") {
		if strings.ContainsAny(endpoint, "/?#") {
			return nil, fmt.Errorf("tracing: otlp_endpoint %q: want a URL (http://host:4318) or host:port", endpoint)
		}
		return []otlptracehttp.Option{otlptracehttp.WithEndpoint(endpoint)}, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tracing: otlp_endpoint %q: want an http or https URL, or host:port", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return []otlptracehttp.Option{otlptracehttp.WithEndpointURL(u.String())}, nil
}

// MetricsHandler serves the metrics of g in the Prometheus exposition formats. A collector that fails
// (the inventory when the store does not answer) leaves its metrics out of the answer instead of failing
// the scrape.
func MetricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Timeout: 30 * time.Second})
}

// ScrapeHandler serves GET /metrics from the registry, without authentication, and answers 404 to every
// other path (405 to other methods): the handler of a scrape address, a listener kept apart from the API.
func (t *Telemetry) ScrapeHandler() http.Handler {
	metrics := MetricsHandler(t.Registry)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	return mux
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
