package refserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/openvair/openvair/internal/validate"
)

// MaxURLBytes is the longest request target (path and query) the handler accepts, and MaxHeaderBytes the
// largest header section (names and values); beyond either it answers 431 with a problem. net/http reads
// at most its Server.MaxHeaderBytes (plus 4 KiB) of request line and headers and answers 431 in plain
// text beyond that, before any handler runs: a server should set MaxHeaderBytes well above these limits
// (net/http's default, 1 MiB) so that every answer within that bound is a problem.
const (
	MaxURLBytes    = 64 << 10
	MaxHeaderBytes = 64 << 10
)

// writeProblem writes p as the response of a Huma operation.
func writeProblem(ctx huma.Context, p *Problem) {
	if p.RequestID == "" {
		p.RequestID = requestIDOf(ctx.Context())
	}
	ctx.SetHeader("Content-Type", "application/problem+json")
	ctx.SetStatus(p.Status)
	_ = json.NewEncoder(ctx.BodyWriter()).Encode(p)
}

// writeProblemHTTP writes p on a plain http.ResponseWriter (whose X-Request-Id is already set).
func writeProblemHTTP(w http.ResponseWriter, p *Problem) {
	if p.RequestID == "" {
		p.RequestID = w.Header().Get(RequestIDHeader)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Del("Content-Length")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// recoverMiddleware turns a panic in a handler into a logged 500 problem.
func (s *server) recoverMiddleware(ctx huma.Context, next func(huma.Context)) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic in handler", "request_id", requestIDOf(ctx.Context()), "operation", ctx.Operation().OperationID, "value", v, "stack", string(debug.Stack()))
			writeProblem(ctx, newProblem(http.StatusInternalServerError, "", "internal error; see the server log"))
		}
	}()
	next(ctx)
}

// isUpload reports whether r is an image upload, which gets the long deadlines.
func isUpload(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasSuffix(strings.TrimSuffix(r.URL.Path, "/"), "/api/v1/images")
}

// outer wraps the mux: it names the request (X-Request-Id, see withRequestID), sets the request's read and
// write deadlines (long ones for uploads), answers unknown routes and methods with problems instead of
// plain text, and logs every request (request id, method, path, status, duration; never headers, so never
// a token).
func (s *server) outer(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		r, rid := withRequestID(w, r)
		timeout := s.cfg.RequestTimeout
		if isUpload(r) {
			timeout = s.cfg.UploadTimeout
		}
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(start.Add(timeout)) // not supported by every ResponseWriter (tests, embedders)
		_ = rc.SetWriteDeadline(start.Add(timeout))
		sw := &statusWriter{ResponseWriter: w}
		tooLarge := len(r.RequestURI) > MaxURLBytes || headerBytes(r.Header) > MaxHeaderBytes
		clean := !tooLarge && canonicalPath(r.URL.EscapedPath())
		var (
			h       http.Handler
			pattern string
		)
		if clean {
			h, pattern = mux.Handler(r)
		}
		route := routeOf(pattern) // the route template, never the raw path
		r, span := s.tracing.start(r, route, rid)
		s.metrics.inFlight.Inc()
		defer s.metrics.inFlight.Dec()
		switch {
		case tooLarge:
			p := newProblem(http.StatusRequestHeaderFieldsTooLarge, "too_large",
				fmt.Sprintf("the URL or the headers are too large: at most %d bytes of URL and %d bytes of headers", MaxURLBytes, MaxHeaderBytes))
			p.Instance = truncate(r.URL.Path, 256)
			writeProblemHTTP(sw, p)
		case !clean:
			s.uncleanPath(sw, r)
		case pattern == "":
			noRoute(sw, r, h)
		default:
			mux.ServeHTTP(sw, r)
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		status := sw.status
		if status == statusClientGone || r.Context().Err() != nil {
			status = statusClientGone
		}
		s.metrics.observe(route, r.Method, status, time.Since(start))
		s.tracing.end(span, status)
		path := truncate(r.URL.Path, 1024)
		duration := time.Since(start).Round(time.Microsecond)
		if sw.status == statusClientGone || r.Context().Err() != nil {
			// The client went away before the answer: not a failure of the server, whatever status the
			// handler had chosen.
			s.log.Info("request: client gone", "request_id", rid, "method", r.Method, "path", path, "status", statusClientGone,
				"handler_status", sw.status, "bytes", sw.n, "duration", duration, "remote", r.RemoteAddr)
			return
		}
		level := s.log.Info
		if sw.status >= 500 {
			level = s.log.Warn
		}
		level("request", "request_id", rid, "method", r.Method, "path", path, "status", sw.status, "bytes", sw.n,
			"duration", duration, "remote", r.RemoteAddr)
	})
}

// headerBytes is the size of a header section as sent (name, ": ", value, CRLF).
func headerBytes(h http.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// canonicalPath reports whether an escaped path has no empty, "." or ".." segments, escaped or not (a
// trailing slash is allowed). net/http's ServeMux redirects such paths to their clean form before any
// handler runs, so before authentication; the handler answers them itself instead.
func canonicalPath(escaped string) bool {
	if !strings.HasPrefix(escaped, "/") {
		return false
	}
	segs := strings.Split(escaped[1:], "/")
	for i, seg := range segs {
		if seg == "" && i == len(segs)-1 {
			break // trailing slash
		}
		dec, err := url.PathUnescape(seg)
		if err != nil {
			dec = seg
		}
		if seg == "" || dec == "." || dec == ".." {
			return false
		}
	}
	return true
}

// uncleanPath answers a path with empty, "." or ".." segments: never a redirect; under /api/ 401 without
// a valid token, then 404 like any path that names nothing.
func (s *server) uncleanPath(w http.ResponseWriter, r *http.Request) {
	clean := path.Clean("/" + r.URL.Path)
	if strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(clean, "/api/") {
		if _, _, wwwAuth, p := s.authenticate(r.Header.Get("Authorization")); p != nil {
			w.Header().Set("WWW-Authenticate", wwwAuth)
			p.Instance = truncate(r.URL.Path, 256)
			writeProblemHTTP(w, p)
			return
		}
	}
	p := newProblem(http.StatusNotFound, "not_found", "no such route: the path has empty, '.' or '..' segments; paths are not cleaned or redirected")
	p.Instance = truncate(r.URL.Path, 256)
	writeProblemHTTP(w, p)
}

// inputMiddleware runs after authentication and refuses, before any handler: a control character or
// invalid UTF-8 in a declared query or path parameter (422: such strings must never reach the store; body
// strings are checked by the SDK), and a body on a DELETE (400: a DELETE's options are query parameters).
func (s *server) inputMiddleware(ctx huma.Context, next func(huma.Context)) {
	op := ctx.Operation()
	if op == nil {
		next(ctx)
		return
	}
	var bad []*huma.ErrorDetail
	u := ctx.URL()
	query := u.Query()
	for _, p := range op.Parameters {
		var values []string
		switch p.In {
		case "query":
			values = query[p.Name]
		case "path":
			values = []string{ctx.Param(p.Name)}
		default:
			continue
		}
		for _, v := range values {
			if msg := validate.PlainText(v); msg != "" {
				bad = append(bad, &huma.ErrorDetail{Message: msg, Location: p.In + "." + p.Name})
				break
			}
		}
	}
	if len(bad) > 0 {
		p := withInstance(newProblem(http.StatusUnprocessableEntity, "invalid", "a parameter contains a control character or invalid UTF-8"), ctx)
		p.Errors = bad
		writeProblem(ctx, p)
		return
	}
	if op.Method == http.MethodDelete {
		if r, _ := humago.Unwrap(ctx); r != nil && (r.ContentLength != 0 || len(r.TransferEncoding) > 0) {
			writeProblem(ctx, withInstance(newProblem(http.StatusBadRequest, "invalid",
				"a DELETE takes no request body; its options are query parameters"), ctx))
			return
		}
	}
	next(ctx)
}

// noRoute runs the mux's own answer for an unmatched request (404, 405 with Allow, or a redirect to the
// clean path) and replaces its plain-text body with a problem.
func noRoute(w http.ResponseWriter, r *http.Request, h http.Handler) {
	cw := &captureWriter{header: w.Header()}
	h.ServeHTTP(cw, r)
	if cw.status < 400 {
		// A redirect (to add a trailing slash): never redirect, the route does not exist as asked.
		w.Header().Del("Location")
		cw.status = http.StatusNotFound
	}
	detail := "no such route: " + truncate(r.URL.Path, 256)
	if cw.status == http.StatusMethodNotAllowed {
		detail = "method " + r.Method + " not allowed on " + r.URL.Path + "; allowed: " + w.Header().Get("Allow")
	}
	p := newProblem(cw.status, "", detail)
	p.Instance = truncate(r.URL.Path, 256)
	w.Header().Del("X-Content-Type-Options")
	writeProblemHTTP(w, p)
}

// captureWriter records the status the mux chose and drops its body.
type captureWriter struct {
	header http.Header
	status int
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return len(b), nil
}
func (c *captureWriter) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

// statusWriter records the status and size of a response for the log, and sends the header once: a
// later WriteHeader (Huma sets 499 when the client went away while it wrote the body; a panic after the
// header was sent) is recorded, never sent, so net/http never sees a superfluous WriteHeader.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

// WriteHeader sends the status unless a header was sent already.
func (w *statusWriter) WriteHeader(status int) {
	if w.status != 0 {
		if status == statusClientGone {
			w.status = status
		}
		return
	}
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (deadlines, flush).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush implements http.Flusher.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
