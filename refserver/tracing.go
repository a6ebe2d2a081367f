package refserver

import (
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/openvair/openvair/internal/telemetry"
)

// requestTracer starts a span for every request when tracing is on (Config.TracerProvider). A request that
// carries a W3C traceparent header continues the caller's trace.
type requestTracer struct {
	tracer trace.Tracer // nil: tracing off
	prop   propagation.TextMapPropagator
}

func newRequestTracer(tp trace.TracerProvider) requestTracer {
	if tp == nil {
		return requestTracer{}
	}
	return requestTracer{tracer: tp.Tracer(telemetry.ScopeName),
		prop: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
}

// start starts the span of request r (already named rid) on route, and returns r under it: the SDK calls
// the handler makes, their operations and driver calls, are its children. The span is nil when tracing is
// off.
func (t requestTracer) start(r *http.Request, route, rid string) (*http.Request, trace.Span) {
	if t.tracer == nil {
		return r, nil
	}
	ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := t.tracer.Start(ctx, r.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", methodLabel(r.Method)),
			attribute.String("http.route", route),
			attribute.String("url.path", truncate(r.URL.Path, 1024)),
			telemetry.AttrRequestID.String(rid),
		))
	return r.WithContext(ctx), span
}

// end ends span (when there is one) with the answer's status; 5xx answers mark it as an error.
func (t requestTracer) end(span trace.Span, status int) {
	if span == nil {
		return
	}
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 500 && status != statusClientGone {
		span.SetStatus(codes.Error, strconv.Itoa(status))
	}
	span.End()
}
