// Package exporter sets up what a process needs to publish openvair's measurements: a Prometheus registry
// with the Go runtime and process collectors, served on a scrape address, and an OpenTelemetry tracer
// provider exporting spans over OTLP/HTTP or to stdout. It is kept apart from package telemetry, so that the
// SDK itself links no exporter: only a server (refserver/cmd/openvair-server) imports it.
package exporter

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/openvair/openvair/internal/telemetry"
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

// ScrapeHandler serves GET /metrics from the registry, without authentication, and answers 404 to every
// other path (405 to other methods): the handler of a scrape address, a listener kept apart from the API.
func (t *Telemetry) ScrapeHandler() http.Handler {
	metrics := telemetry.MetricsHandler(t.Registry)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	return mux
}
