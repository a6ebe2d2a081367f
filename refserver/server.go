// Package refserver is the reference HTTP server of openvair: a Huma v2 API that publishes the SDK's four
// services (storages, volumes, images, VMs) under /api/v1, with an OpenAPI 3.1 document at /openapi.json
// and /openapi.yaml, an offline API docs page at /docs, and /healthz and /readyz probes.
//
// Handlers only translate between HTTP and SDK calls: every rule lives in the SDK, and every SDK error is
// turned into an RFC 9457 problem+json response in one place (see StatusOf). Every /api/v1 route needs a
// bearer token (see Tokens): role admin may do everything, role reader only GET.
//
// Around the handlers, the server names every request (X-Request-Id, see RequestIDHeader), tags every
// answer about one entity with its version (ETag; If-None-Match and If-Match make reads and writes
// conditional), names the operation every write started (Operation-Id) and runs it asynchronously when
// asked (Prefer: respond-async, 202 Accepted; see the /api/v1/operations endpoints), and runs a POST with
// an Idempotency-Key at most once (see IdempotencyKeyHeader).
//
// The server measures itself: GET /metrics (MetricsPath, outside the OpenAPI document, any role's token)
// serves Config.Metrics in the Prometheus format, with requests by route template, method and status, their
// latency, and open event streams, besides what the SDK registers there (see openvair.Config.Metrics). With
// Config.TracerProvider every request is a span, parent of the spans of its operations and driver calls.
//
// New returns an http.Handler, so the API can be served by the openvair-server binary or mounted inside
// another program's mux.
package refserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/image"
)

// Config configures the API handler.
type Config struct {
	// Tokens authenticates /api/v1 requests; required.
	Tokens *Tokens
	// Logger receives request and error logs (default slog.Default()). No token or password is ever logged.
	Logger *slog.Logger
	// BasePath is the path prefix the handler is mounted under (for example "/openvair" when mounted with
	// http.StripPrefix("/openvair", h)); it is used in Location headers and the OpenAPI servers list.
	BasePath string
	// MaxImageSize limits an image upload in bytes (default: the SDK's limit, sys.Images.MaxSize).
	MaxImageSize int64
	// MaxBodyBytes limits a JSON request body (default 1 MiB).
	MaxBodyBytes int64
	// RequestTimeout is the read and write deadline of an ordinary request (default 5 minutes); it must
	// cover the longest synchronous SDK call (a graceful VM stop waits up to its timeout).
	RequestTimeout time.Duration
	// UploadTimeout is the read and write deadline of an image upload (default 6 hours).
	UploadTimeout time.Duration
	// Version is the API version shown in the OpenAPI document (default "1.0.0").
	Version string
	// EventHeartbeat is how long an event stream (GET /api/v1/events) may stay silent: after that a comment
	// line is sent, so that proxies keep idle streams open (default 15 s).
	EventHeartbeat time.Duration
	// IdempotencyTTL is how long the response of a POST with an Idempotency-Key is kept for its retries
	// (default 24 hours).
	IdempotencyTTL time.Duration
	// Metrics is the registry GET /metrics serves and where the server registers its metrics
	// (openvair_http_requests_total, openvair_http_request_duration_seconds, openvair_http_requests_in_flight,
	// openvair_event_subscribers). Give the registry the System was opened with (openvair.Config.Metrics) to
	// serve the SDK's metrics too. Nil: a registry of this handler's own, with the server's metrics only.
	Metrics *prometheus.Registry
	// TracerProvider, when set, makes a span of every request (continuing a W3C traceparent the client
	// sends), with its route, status and request id; nil traces nothing.
	TracerProvider trace.TracerProvider
}

func (c *Config) defaults(sys *openvair.System) {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.BasePath = strings.TrimSuffix(c.BasePath, "/")
	if c.MaxImageSize <= 0 {
		c.MaxImageSize = image.DefaultMaxSize
		if sys.Images != nil && sys.Images.MaxSize > 0 {
			c.MaxImageSize = sys.Images.MaxSize
		}
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 5 * time.Minute
	}
	if c.UploadTimeout <= 0 {
		c.UploadTimeout = 6 * time.Hour
	}
	if c.Version == "" {
		c.Version = "1.0.0"
	}
	if c.EventHeartbeat <= 0 {
		c.EventHeartbeat = 15 * time.Second
	}
	if c.IdempotencyTTL <= 0 {
		c.IdempotencyTTL = 24 * time.Hour
	}
}

// apiDescription is the document's description.
const apiDescription = "Storages, volumes, images and VMs. Sizes are in bytes; ids are UUIDs; errors are RFC 9457 problem+json. " +
	"Every response carries X-Request-Id (the client's, or a new one). Every answer about one entity carries its " +
	"version as ETag: If-None-Match makes a GET answer 304, If-Match makes a write answer 412 when the entity has " +
	"another version. Every write is an operation, named by the Operation-Id header; with Prefer: respond-async it " +
	"answers 202 with the operation (see /api/v1/operations). A POST with an Idempotency-Key is safe to retry."

// apiTags are the document's tags, one per group of operations.
var apiTags = []*huma.Tag{
	{Name: "storages", Description: "Places where volumes and images live: a local directory or block device, or an NFS export."},
	{Name: "volumes", Description: "Virtual disks (qcow2 or raw) on a storage."},
	{Name: "images", Description: "ISO and disk images uploaded into a storage, used by VMs as cdroms."},
	{Name: "vms", Description: "Virtual machines: define, edit, start, stop, console."},
	{Name: "host", Description: "What the hypervisor's host offers to VMs."},
	{Name: "operations", Description: "The work the API does: every write is an operation, to follow, wait for or cancel."},
	{Name: "events", Description: "Every change of storages, volumes, images, VMs and operations, as a stream (Server-Sent Events) with resume."},
	{Name: "health", Description: "Liveness and readiness probes (no token needed)."},
}

// server holds what the handlers need.
type server struct {
	sys *openvair.System
	cfg Config
	log *slog.Logger
	api huma.API
	// messages are the rendered event stream messages of recent events.
	messages messageCache
	metrics  *httpMetrics
	tracing  requestTracer
}

// New returns the API as an http.Handler over an opened System. The handler does not run the SDK's
// monitors: call sys.Run in the background.
func New(sys *openvair.System, cfg Config) (http.Handler, error) {
	_, h, err := build(sys, cfg)
	return h, err
}

// NewAPI is New that also returns the Huma API, for programs that add their own operations or read the
// OpenAPI document.
func NewAPI(sys *openvair.System, cfg Config) (huma.API, http.Handler, error) {
	return build(sys, cfg)
}

func build(sys *openvair.System, cfg Config) (huma.API, http.Handler, error) {
	if sys == nil || sys.Storages == nil {
		return nil, nil, errors.New("refserver: an opened *openvair.System is required")
	}
	if cfg.Tokens == nil {
		return nil, nil, errors.New("refserver: Config.Tokens is required (every /api/v1 route is authenticated)")
	}
	cfg.defaults(sys)
	s := &server{sys: sys, cfg: cfg, log: cfg.Logger, tracing: newRequestTracer(cfg.TracerProvider)}
	reg := cfg.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	metrics, err := newHTTPMetrics(reg)
	if err != nil {
		return nil, nil, fmt.Errorf("refserver: metrics: %w", err)
	}
	s.metrics = metrics

	mux := http.NewServeMux()
	hc := huma.Config{
		OpenAPI: &huma.OpenAPI{
			OpenAPI: "3.1.0",
			Info: &huma.Info{
				Title:       "openvair",
				Version:     cfg.Version,
				Description: apiDescription,
				Contact:     &huma.Contact{Name: "openvair", URL: "https://github.com/openvair/openvair"},
			},
			Tags: apiTags,
			// Relative: the API is where the document is served ("." when mounted at the root).
			Servers: []*huma.Server{{URL: ".", Description: "This server: URLs are relative to the document."}},
			Components: &huma.Components{
				Schemas: huma.NewMapRegistry("#/components/schemas/", huma.DefaultSchemaNamer),
				SecuritySchemes: map[string]*huma.SecurityScheme{
					securityScheme: {Type: "http", Scheme: "bearer", Description: "An API token: role admin may do everything, role reader only GET."},
				},
			},
		},
		OpenAPIPath:   "/openapi",
		Formats:       huma.DefaultFormats,
		DefaultFormat: "application/json",
		Transformers:  []huma.Transformer{problemFields, redactErrorValues},
		// No CDN docs renderer and no $schema links: the docs page is embedded (see docs.go).
	}
	if cfg.BasePath != "" {
		hc.Servers = []*huma.Server{{URL: cfg.BasePath, Description: "This server."}}
	}
	api := humago.New(mux, hc)
	s.api = api
	api.UseMiddleware(s.recoverMiddleware, s.authMiddleware, s.inputMiddleware, s.idempotencyMiddleware,
		s.preconditionMiddleware, s.operationMiddleware)

	s.registerStorages(api)
	s.registerStorageTypes(api)
	s.registerVolumes(api)
	s.registerImages(api)
	s.registerVMs(api)
	s.registerHost(api)
	s.registerOperations(api)
	s.registerEvents(api)
	s.registerHealth(api)
	s.registerConsole(api, mux) // console ticket (Huma), console WebSockets and noVNC page (mux); see console_ws.go
	useProblemSchema(api)
	s.documentStorageTypes(api)
	documentStatuses(api)
	documentHeaders(api)
	registerDocs(mux)
	s.registerMetrics(mux, reg)

	return api, s.outer(mux), nil
}
