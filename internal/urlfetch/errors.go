package urlfetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"github.com/openvair/openvair/internal/errkind"
)

// Short names for the kinds this package returns.
var (
	errUnavailable = errkind.Unavailable
	errTooLarge    = errkind.TooLarge
	errTimeout     = errkind.Timeout
	errNotFound    = errkind.NotFound
)

// invalid returns the error of a refused URL: a ValidationError naming the field "url".
func (f *Fetcher) invalid(format string, args ...any) error {
	return &errkind.ValidationError{Entity: f.entity,
		Fields: []errkind.FieldError{{Field: "url", Message: fmt.Sprintf(format, args...)}}}
}

// fail returns an *errkind.Error of the kind, naming the Fetcher's entity.
func (f *Fetcher) fail(kind, cause error, format string, args ...any) error {
	return errkind.Wrap(kind, cause, f.entity, "", format, args...)
}

// ctxErr returns the error of an ended context: Timeout for a deadline, else the context's error wrapped.
func (f *Fetcher) ctxErr(ctx context.Context, format string, args ...any) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return f.fail(errTimeout, err, format, args...)
	}
	return fmt.Errorf("%s: %s: %w", f.entity, fmt.Sprintf(format, args...), err)
}

// netErr classifies a failure of a round trip or of a body read. ctx is the caller's context.
func (f *Fetcher) netErr(ctx context.Context, err error, format string, args ...any) error {
	if ctx.Err() != nil {
		return f.ctxErr(ctx, format, args...)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return f.fail(errTimeout, err, format, args...)
	}
	return f.fail(errUnavailable, err, format, args...)
}

// dnsErr classifies a failed look-up of host: a name that does not exist is a bad URL, the rest is the
// network's fault.
func (f *Fetcher) dnsErr(ctx context.Context, err error, via, host string) error {
	if ctx.Err() != nil {
		return f.ctxErr(ctx, "%sresolving %s", via, host)
	}
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return f.invalid("%shost %s does not resolve (no such host)", via, host)
	}
	if errors.As(err, &de) && de.IsTimeout {
		return f.fail(errTimeout, err, "%sresolving %s", via, host)
	}
	return f.fail(errUnavailable, err, "%sresolving %s", via, host)
}

// statusErr returns the error of a final response that is not a success, or nil.
func (f *Fetcher) statusErr(resp *http.Response, u *url.URL) error {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusNotFound || code == http.StatusGone:
		return f.fail(errNotFound, nil, "GET %s: %s", Redact(u), resp.Status)
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return f.fail(errUnavailable, nil, "GET %s: %s", Redact(u), resp.Status)
	case code >= 400:
		return f.invalid("the server refused GET %s: %s", Redact(u), resp.Status)
	}
	return f.fail(errUnavailable, nil, "GET %s: %s, unexpected", Redact(u), resp.Status)
}

// readErr classifies a failed body read.
func (b *body) readErr(err error) error {
	if b.closed.Load() {
		return errClosed
	}
	if errors.Is(context.Cause(b.rctx), errIdle) && b.ctx.Err() == nil {
		return b.f.fail(errTimeout, nil, "GET %s: no data for %s after %d bytes", b.where, b.f.idleTimeout, b.n)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) && b.ctx.Err() == nil {
		return b.f.fail(errUnavailable, err, "GET %s: connection closed after %d of %d bytes", b.where, b.n, b.length)
	}
	return b.f.netErr(b.ctx, err, "GET %s: reading after %d bytes", b.where, b.n)
}
