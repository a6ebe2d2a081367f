package telemetry

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/internal/reqctx"
)

// Namespace prefixes every metric name of openvair.
const Namespace = "openvair"

// ScopeName is the instrumentation scope of openvair's spans.
const ScopeName = "github.com/openvair/openvair"

// Span attribute keys set by openvair, besides the OpenTelemetry semantic conventions.
const (
	// AttrRequestID is the X-Request-Id of the HTTP request a span serves (see internal/reqctx).
	AttrRequestID = attribute.Key("openvair.request_id")
	// AttrOperationID, AttrOperationKind and AttrTargetID describe the operation a span runs.
	AttrOperationID   = attribute.Key("openvair.operation.id")
	AttrOperationKind = attribute.Key("openvair.operation.kind")
	AttrTargetID      = attribute.Key("openvair.target.id")
	// AttrDriver, AttrDriverKind, AttrMethod and AttrOutcome describe a driver call.
	AttrDriver     = attribute.Key("openvair.driver")
	AttrDriverKind = attribute.Key("openvair.driver.kind")
	AttrMethod     = attribute.Key("openvair.driver.method")
	AttrOutcome    = attribute.Key("openvair.outcome")
)

// Outcomes of a driver call or a monitor cycle, besides the error kinds ("not_found", "in_use", ...).
const (
	OutcomeOK       = "ok"
	OutcomeError    = "error"    // an error of no kind
	OutcomeCanceled = "canceled" // the caller's context ended
)

// Instruments measures the SDK at the service-driver seam: driver and hypervisor calls (WrapStorage,
// WrapHypervisor), operations (OperationObserver) and monitor cycles (StartMonitor). A nil *Instruments
// measures nothing and wraps nothing, at no cost.
type Instruments struct {
	tracer trace.Tracer // nil: no spans

	// nil when metrics are off
	driverCalls    *prometheus.CounterVec
	driverDuration *prometheus.HistogramVec
	opTotal        *prometheus.CounterVec
	opDuration     *prometheus.HistogramVec
	opRunning      *prometheus.GaugeVec
	monitorTotal   *prometheus.CounterVec
	monitorDur     prometheus.Histogram
}

// New returns the instruments that register their metrics on reg and start spans from tp. Either may be
// nil to turn that half off; with both nil New returns nil (measure nothing). Metrics already registered
// on reg by another System or server are shared, so several may use one registry.
func New(reg prometheus.Registerer, tp trace.TracerProvider) (*Instruments, error) {
	if reg == nil && tp == nil {
		return nil, nil
	}
	in := &Instruments{}
	if tp != nil {
		in.tracer = tp.Tracer(ScopeName)
	}
	if reg != nil {
		var err error
		if in.driverCalls, err = Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
			Name: "driver_calls_total", Help: "Calls of storage backends and the hypervisor, by driver kind (storage or hypervisor), driver, method and outcome (ok or the error kind)."},
			[]string{"kind", "driver", "method", "outcome"})); err != nil {
			return nil, err
		}
		if in.driverDuration, err = Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace,
			Name: "driver_call_duration_seconds", Help: "Duration of calls of storage backends and the hypervisor.",
			Buckets: DurationBuckets}, []string{"kind", "driver", "method"})); err != nil {
			return nil, err
		}
		if in.opTotal, err = Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
			Name: "operations_total", Help: "Operations this process ran to their end, by kind and final status (succeeded, failed, cancelled)."},
			[]string{"kind", "status"})); err != nil {
			return nil, err
		}
		if in.opDuration, err = Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace,
			Name: "operation_duration_seconds", Help: "Duration of the operations this process ran, by kind and final status.",
			Buckets: DurationBuckets}, []string{"kind", "status"})); err != nil {
			return nil, err
		}
		if in.opRunning, err = Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace,
			Name: "operations_running", Help: "Operations this process runs now, by kind."}, []string{"kind"})); err != nil {
			return nil, err
		}
		if in.monitorTotal, err = Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
			Name: "monitor_cycles_total", Help: "Monitor cycles (refresh of storages, volumes and images, recovery, pruning), by outcome (ok or error)."},
			[]string{"outcome"})); err != nil {
			return nil, err
		}
		if in.monitorDur, err = Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace,
			Name: "monitor_cycle_duration_seconds", Help: "Duration of monitor cycles.", Buckets: DurationBuckets})); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// DurationBuckets are the histogram buckets of every openvair duration, in seconds: from a millisecond
// (a cached read) to ten minutes (an image upload, a slow stop).
var DurationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// Register registers c on reg and returns it, or, when an equal collector is registered already (another
// System or server on the same registry), that one.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// Tracer returns the tracer of the instruments, nil when tracing is off.
func (in *Instruments) Tracer() trace.Tracer {
	if in == nil {
		return nil
	}
	return in.tracer
}

// Outcome names the outcome of a call that returned err: "ok", "canceled" when ctx ended, the error kind
// ("not_found", "timeout", ...) or "error".
func Outcome(ctx context.Context, err error) string {
	if err == nil {
		return OutcomeOK
	}
	if name := errkind.Name(err); name != "" {
		return name
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return OutcomeCanceled
	}
	return OutcomeError
}

// requestAttr returns the request id attribute of ctx, and whether there is one.
func requestAttr(ctx context.Context) (attribute.KeyValue, bool) {
	id := reqctx.MetaOf(ctx).RequestID
	return AttrRequestID.String(id), id != ""
}

// OperationObserver returns the observer of operations to give to the operation service, nil when in is.
func (in *Instruments) OperationObserver() operation.Observer {
	if in == nil {
		return nil
	}
	return opObserver{in}
}

type opObserver struct{ in *Instruments }

var _ operation.TracePropagator = opObserver{}

// traceFormat is how a trace context travels with a stored operation: W3C Trace Context (traceparent,
// tracestate), as it travels in HTTP headers.
var traceFormat propagation.TraceContext

// InjectTrace implements operation.TracePropagator: the caller's span context, for the worker that will run
// the operation; nil when nothing is traced.
func (o opObserver) InjectTrace(ctx context.Context) map[string]string {
	if o.in.tracer == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	c := propagation.MapCarrier{}
	traceFormat.Inject(ctx, c)
	return c
}

// ExtractTrace implements operation.TracePropagator: the worker's context continues the caller's trace, so
// the operation's span is a child of the request's.
func (o opObserver) ExtractTrace(ctx context.Context, carrier map[string]string) context.Context {
	if o.in.tracer == nil {
		return ctx
	}
	return traceFormat.Extract(ctx, propagation.MapCarrier(carrier))
}

// StartOperation implements operation.Observer: a span per operation, and its count and duration by kind
// and final status.
func (o opObserver) StartOperation(ctx context.Context, op *operation.Operation) (context.Context, func(operation.Status, error)) {
	in, start, kind := o.in, time.Now(), op.Kind
	var span trace.Span
	if in.tracer != nil {
		attrs := []attribute.KeyValue{AttrOperationID.String(op.ID.String()), AttrOperationKind.String(kind)}
		if op.TargetType != "" {
			attrs = append(attrs, attribute.String("openvair.target.type", op.TargetType))
		}
		if op.TargetID != uuid.Nil {
			attrs = append(attrs, AttrTargetID.String(op.TargetID.String()))
		}
		if a, ok := requestAttr(ctx); ok {
			attrs = append(attrs, a)
		}
		ctx, span = in.tracer.Start(ctx, "operation "+kind, trace.WithAttributes(attrs...))
	}
	if in.opRunning != nil {
		in.opRunning.WithLabelValues(kind).Inc()
	}
	return ctx, func(status operation.Status, err error) {
		if in.opTotal != nil {
			in.opRunning.WithLabelValues(kind).Dec()
			in.opTotal.WithLabelValues(kind, string(status)).Inc()
			in.opDuration.WithLabelValues(kind, string(status)).Observe(time.Since(start).Seconds())
		}
		if span != nil {
			span.SetAttributes(attribute.String("openvair.operation.status", string(status)))
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, errkind.Name(err))
			}
			span.End()
		}
	}
}

// StartMonitor starts measuring one monitor cycle: the cycle runs under the returned context (its driver
// calls are children of its span) and end is called with its error.
func (in *Instruments) StartMonitor(ctx context.Context) (context.Context, func(err error)) {
	if in == nil {
		return ctx, func(error) {}
	}
	start := time.Now()
	var span trace.Span
	if in.tracer != nil {
		ctx, span = in.tracer.Start(ctx, "monitor cycle")
	}
	return ctx, func(err error) {
		if in.monitorTotal != nil {
			outcome := OutcomeOK
			if err != nil {
				outcome = OutcomeError
			}
			in.monitorTotal.WithLabelValues(outcome).Inc()
			in.monitorDur.Observe(time.Since(start).Seconds())
		}
		if span != nil {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, "monitor cycle failed")
			}
			span.End()
		}
	}
}
