package refserver

import (
	"encoding/json"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
)

// writeProblem writes p as the response of a Huma operation.
func writeProblem(ctx huma.Context, p *Problem) {
	ctx.SetHeader("Content-Type", "application/problem+json")
	ctx.SetStatus(p.Status)
	_ = json.NewEncoder(ctx.BodyWriter()).Encode(p)
}

// writeProblemHTTP writes p on a plain http.ResponseWriter.
func writeProblemHTTP(w http.ResponseWriter, p *Problem) {
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
			s.log.Error("panic in handler", "operation", ctx.Operation().OperationID, "value", v, "stack", string(debug.Stack()))
			writeProblem(ctx, newProblem(http.StatusInternalServerError, "", "internal error; see the server log"))
		}
	}()
	next(ctx)
}

// isUpload reports whether r is an image upload, which gets the long deadlines.
func isUpload(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasSuffix(strings.TrimSuffix(r.URL.Path, "/"), "/api/v1/images")
}

// outer wraps the mux: it sets the request's read and write deadlines (long ones for uploads), answers
// unknown routes and methods with problems instead of plain text, and logs every request (method, path,
// status, duration; never headers, so never a token).
func (s *server) outer(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		timeout := s.cfg.RequestTimeout
		if isUpload(r) {
			timeout = s.cfg.UploadTimeout
		}
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(start.Add(timeout)) // not supported by every ResponseWriter (tests, embedders)
		_ = rc.SetWriteDeadline(start.Add(timeout))
		sw := &statusWriter{ResponseWriter: w}
		if h, pattern := mux.Handler(r); pattern == "" {
			noRoute(sw, r, h)
		} else {
			mux.ServeHTTP(sw, r)
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		level := s.log.Info
		if sw.status >= 500 {
			level = s.log.Warn
		}
		level("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "bytes", sw.n,
			"duration", time.Since(start).Round(time.Microsecond), "remote", r.RemoteAddr)
	})
}

// noRoute runs the mux's own answer for an unmatched request (404, 405 with Allow, or a redirect to the
// clean path) and replaces its plain-text body with a problem.
func noRoute(w http.ResponseWriter, r *http.Request, h http.Handler) {
	cw := &captureWriter{header: w.Header()}
	h.ServeHTTP(cw, r)
	if cw.status < 400 {
		w.WriteHeader(cw.status)
		return
	}
	detail := "no such route: " + r.URL.Path
	if cw.status == http.StatusMethodNotAllowed {
		detail = "method " + r.Method + " not allowed on " + r.URL.Path + "; allowed: " + w.Header().Get("Allow")
	}
	p := newProblem(cw.status, "", detail)
	if cw.status == http.StatusNotFound {
		p.Kind = "not_found"
	}
	p.Instance = r.URL.Path
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

// statusWriter records the status and size of a response for the log.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
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
