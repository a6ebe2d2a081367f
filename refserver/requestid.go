package refserver

import (
	"context"
	"net/http"

	"github.com/google/uuid"

	"github.com/openvair/openvair/internal/reqctx"
)

// RequestIDHeader names every request: the client may send one, and every response carries it (the
// client's, or one the server made up). It is logged with the request, stored in the operations and
// events the request started, and repeated in problem bodies as request_id.
const RequestIDHeader = "X-Request-Id"

// MaxRequestIDBytes is the longest X-Request-Id the server takes from a client; a longer one, or one with
// anything but printable ASCII, is ignored and replaced by a new id.
const MaxRequestIDBytes = 128

// validRequestID reports whether a client's X-Request-Id may be used as it is: 1 to MaxRequestIDBytes
// bytes of printable ASCII (space to tilde).
func validRequestID(s string) bool {
	if s == "" || len(s) > MaxRequestIDBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// newRequestID returns a fresh request id, a UUIDv7 (ordered by time, like every id of the API).
func newRequestID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// requestIDFor returns the id of request r: its X-Request-Id when valid, else a new one.
func requestIDFor(r *http.Request) string {
	if v := r.Header.Get(RequestIDHeader); validRequestID(v) {
		return v
	}
	return newRequestID()
}

// withRequestID names r with its request id: the X-Request-Id response header is set on w before any
// handler runs (so that every answer, including 401, 404 and problems written by the outer handler,
// carries it), and r's context carries reqctx.Meta with the id.
func withRequestID(w http.ResponseWriter, r *http.Request) (*http.Request, string) {
	id := requestIDFor(r)
	w.Header().Set(RequestIDHeader, id)
	return r.WithContext(reqctx.WithMeta(r.Context(), reqctx.Meta{RequestID: id})), id
}

// requestIDOf returns the request id ctx carries ("" outside a request).
func requestIDOf(ctx context.Context) string { return reqctx.MetaOf(ctx).RequestID }
