package refserver

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openvair/openvair/internal/telemetry"
)

// MetricsPath is where the server serves its metrics in the Prometheus format. It needs a bearer token
// of any role; a program that wants them scraped without one serves telemetry's ScrapeHandler (the same
// registry) on a separate listener. It is not part of the OpenAPI document.
const MetricsPath = "/metrics"

// routeUnmatched is the route label of requests that match no route (404, 405, unclean paths, 431): never
// the raw path, which a client chooses.
const routeUnmatched = "unmatched"

// httpMetrics are the server's own metrics.
type httpMetrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	inFlight    prometheus.Gauge
	subscribers prometheus.Gauge
}

// newHTTPMetrics registers the server's metrics on reg (or takes those another server registered there).
func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{}
	var err error
	if m.requests, err = telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: telemetry.Namespace,
		Name: "http_requests_total", Help: "HTTP requests answered, by route template (\"unmatched\" for none), method and status."},
		[]string{"route", "method", "status"})); err != nil {
		return nil, err
	}
	if m.duration, err = telemetry.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: telemetry.Namespace,
		Name: "http_request_duration_seconds", Help: "Duration of HTTP requests, by route template and method (an event stream lasts as long as its client).",
		Buckets: telemetry.DurationBuckets}, []string{"route", "method"})); err != nil {
		return nil, err
	}
	if m.inFlight, err = telemetry.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Namespace: telemetry.Namespace,
		Name: "http_requests_in_flight", Help: "HTTP requests being served now."})); err != nil {
		return nil, err
	}
	if m.subscribers, err = telemetry.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Namespace: telemetry.Namespace,
		Name: "event_subscribers", Help: "Open event streams (GET /api/v1/events)."})); err != nil {
		return nil, err
	}
	return m, nil
}

// observe records one answered request.
func (m *httpMetrics) observe(route, method string, status int, d time.Duration) {
	method = methodLabel(method)
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route, method).Observe(d.Seconds())
}

// routeOf returns the route template of a mux pattern ("GET /api/v1/volumes/{id}" -> "/api/v1/volumes/{id}").
func routeOf(pattern string) string {
	if pattern == "" {
		return routeUnmatched
	}
	if _, path, ok := strings.Cut(pattern, " "); ok {
		return path
	}
	return pattern
}

// methodLabel bounds the method label to the standard methods: any other is "OTHER".
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// registerMetrics serves the metrics of g at MetricsPath, to a bearer token of any role.
func (s *server) registerMetrics(mux *http.ServeMux, g prometheus.Gatherer) {
	h := telemetry.MetricsHandler(g)
	mux.HandleFunc("GET "+MetricsPath, func(w http.ResponseWriter, r *http.Request) {
		if _, _, wwwAuth, p := s.authenticate(r.Header.Get("Authorization")); p != nil {
			w.Header().Set("WWW-Authenticate", wwwAuth)
			p.Instance = MetricsPath
			writeProblemHTTP(w, p)
			return
		}
		h.ServeHTTP(w, r)
	})
}
