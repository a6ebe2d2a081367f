package refserver_test

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/openvair/openvair/internal/telemetry"
	"github.com/openvair/openvair/internal/telemetry/exporter"
	"github.com/openvair/openvair/refserver"
)

// collector is an in-process OTLP/HTTP trace receiver.
type collector struct {
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	c.mu.Unlock()
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// withRequestID returns the spans received so far whose openvair.request_id is id.
func (c *collector) withRequestID(id string) []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range c.spans {
		if attr(s, string(telemetry.AttrRequestID)) == id {
			out = append(out, s)
		}
	}
	return out
}

func attr(s *tracepb.Span, key string) string {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// TestTracingOTLP: with the OTLP exporter pointed at a collector, one request's spans arrive in one trace,
// from the HTTP span through its operation down to the driver call, each with the request id.
func TestTracingOTLP(t *testing.T) {
	col := &collector{}
	cs := httptest.NewServer(col)
	defer cs.Close()
	e := startMeasured(t, exporter.Config{Tracing: exporter.TracingOTLP, OTLPEndpoint: cs.URL, BatchTimeout: 20 * time.Millisecond})

	st := e.localStorage("local", e.storageDir("pool"))
	vol := e.volume(st.ID, "root", 1<<30)
	var v refserver.VM
	e.call("POST", "/api/v1/vms", vmBody("web", map[string]any{"disks": []map[string]any{{"volume_id": vol.ID}}}), 201, &v)

	const rid = "trace-me-1"
	r := e.do("POST", "/api/v1/vms/"+v.ID.String()+"/start", e.admin, nil, refserver.RequestIDHeader, rid)
	require.Equal(t, 200, r.Status, "%s", r.Body)

	var spans []*tracepb.Span
	require.Eventually(t, func() bool {
		spans = col.withRequestID(rid)
		for _, s := range spans {
			if s.GetName() == "fake.Start" {
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "the driver call's span arrives")

	byName := map[string]*tracepb.Span{}
	byID := map[string]*tracepb.Span{}
	for _, s := range spans {
		byName[s.GetName()] = s
		byID[hex.EncodeToString(s.GetSpanId())] = s
	}
	httpSpan := byName["POST /api/v1/vms/{id}/start"]
	require.NotNil(t, httpSpan, "the HTTP span, named by its route template")
	assert.Empty(t, httpSpan.GetParentSpanId(), "the HTTP span is the root")
	assert.Equal(t, tracepb.Span_SPAN_KIND_SERVER, httpSpan.GetKind())
	assert.Equal(t, "/api/v1/vms/{id}/start", attr(httpSpan, "http.route"))
	opSpan := byName["operation vm.start"]
	require.NotNil(t, opSpan, "the operation's span")
	assert.Equal(t, v.ID.String(), attr(opSpan, string(telemetry.AttrTargetID)))
	driverSpan := byName["fake.Start"]
	assert.Equal(t, "fake", attr(driverSpan, string(telemetry.AttrDriver)))
	assert.Equal(t, "Start", attr(driverSpan, string(telemetry.AttrMethod)))

	// One trace, and the driver call descends from the operation, which descends from the request.
	ancestors := func(s *tracepb.Span) []string {
		var out []string
		for p := s.GetParentSpanId(); len(p) > 0; {
			parent, ok := byID[hex.EncodeToString(p)]
			if !ok {
				break
			}
			out = append(out, parent.GetName())
			p = parent.GetParentSpanId()
		}
		return out
	}
	for _, s := range spans {
		assert.True(t, bytes.Equal(httpSpan.GetTraceId(), s.GetTraceId()), "%s is in the request's trace", s.GetName())
		if s != httpSpan {
			assert.Contains(t, ancestors(s), httpSpan.GetName(), "%s descends from the HTTP span", s.GetName())
		}
	}
	assert.Equal(t, []string{"operation vm.start", httpSpan.GetName()}, ancestors(driverSpan))

	// A client's traceparent is continued.
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	r = e.do("GET", "/api/v1/vms/"+v.ID.String(), e.admin, nil, "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01",
		refserver.RequestIDHeader, "trace-me-2")
	require.Equal(t, 200, r.Status)
	require.Eventually(t, func() bool { return len(col.withRequestID("trace-me-2")) > 0 }, 10*time.Second, 20*time.Millisecond)
	got := col.withRequestID("trace-me-2")[0]
	assert.Equal(t, traceID, hex.EncodeToString(got.GetTraceId()))
	assert.Equal(t, "00f067aa0ba902b7", hex.EncodeToString(got.GetParentSpanId()))
}

// TestTracingAsyncOperation: an operation accepted with Prefer: respond-async runs later on a worker, and its
// span (with the driver call below it) still continues the trace of the request that asked for it.
func TestTracingAsyncOperation(t *testing.T) {
	col := &collector{}
	cs := httptest.NewServer(col)
	defer cs.Close()
	e := startMeasured(t, exporter.Config{Tracing: exporter.TracingOTLP, OTLPEndpoint: cs.URL, BatchTimeout: 20 * time.Millisecond})

	st := e.localStorage("local", e.storageDir("pool"))
	vol := e.volume(st.ID, "root", 1<<30)
	var v refserver.VM
	e.call("POST", "/api/v1/vms", vmBody("web", map[string]any{"disks": []map[string]any{{"volume_id": vol.ID}}}), 201, &v)

	const rid = "trace-async-1"
	r := e.do("POST", "/api/v1/vms/"+v.ID.String()+"/start", e.admin, nil, refserver.RequestIDHeader, rid, "Prefer", "respond-async")
	require.Equal(t, 202, r.Status, "%s", r.Body)

	var spans []*tracepb.Span
	byName := map[string]*tracepb.Span{}
	require.Eventually(t, func() bool {
		spans = col.withRequestID(rid)
		for _, s := range spans {
			byName[s.GetName()] = s
		}
		return byName["fake.Start"] != nil && byName["POST /api/v1/vms/{id}/start"] != nil
	}, 10*time.Second, 20*time.Millisecond, "the HTTP span and the worker's driver call arrive")
	httpSpan, opSpan, driverSpan := byName["POST /api/v1/vms/{id}/start"], byName["operation vm.start"], byName["fake.Start"]
	require.NotNil(t, opSpan)
	assert.Equal(t, hex.EncodeToString(httpSpan.GetTraceId()), hex.EncodeToString(opSpan.GetTraceId()), "the worker continues the request's trace")
	assert.Equal(t, hex.EncodeToString(httpSpan.GetSpanId()), hex.EncodeToString(opSpan.GetParentSpanId()), "the operation is a child of the request")
	assert.Equal(t, hex.EncodeToString(opSpan.GetSpanId()), hex.EncodeToString(driverSpan.GetParentSpanId()), "the driver call is a child of the operation")
}
