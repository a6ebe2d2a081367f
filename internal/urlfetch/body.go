package urlfetch

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// errIdle is the cause the idle timer cancels a request with.
var errIdle = errors.New("idle timeout")

// errClosed is returned by reads after Close.
var errClosed = errors.New("urlfetch: read after Close")

// body is Response.Body: the transport's body with the size limit, the idle timer and typed errors.
type body struct {
	f      *Fetcher
	rc     io.ReadCloser
	ctx    context.Context // the caller's
	rctx   context.Context // the request's, cancelled by the idle timer and Close
	cancel context.CancelCauseFunc
	tr     *http.Transport
	idle   *time.Timer // nil without an idle limit
	where  string      // the redacted URL
	length int64       // Content-Length or -1
	n      int64       // bytes read so far
	err    error       // sticky; only Read writes it
	closed atomic.Bool // Close was called, maybe from another goroutine
	once   sync.Once   // release
}

func (f *Fetcher) newBody(ctx, rctx context.Context, cancel context.CancelCauseFunc, tr *http.Transport,
	resp *http.Response, where string) *body {
	b := &body{f: f, rc: resp.Body, ctx: ctx, rctx: rctx, cancel: cancel, tr: tr, where: where, length: resp.ContentLength}
	if f.idleTimeout > 0 {
		b.idle = time.AfterFunc(time.Hour, func() { cancel(errIdle) })
		b.idle.Stop()
	}
	return b
}

// Read implements io.Reader. The idle timer runs only while Read waits for the server.
func (b *body) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errClosed
	}
	if b.err != nil {
		return 0, b.err
	}
	if limit := b.f.maxSize; limit > 0 {
		if room := limit - b.n + 1; int64(len(p)) > room { // one byte more than allowed tells an overflow
			p = p[:room]
		}
	}
	if b.idle != nil {
		b.idle.Reset(b.f.idleTimeout)
	}
	n, err := b.rc.Read(p)
	if b.idle != nil {
		b.idle.Stop()
	}
	b.n += int64(n)
	if limit := b.f.maxSize; limit > 0 && b.n > limit {
		n -= int(b.n - limit)
		b.n = limit
		b.err = b.f.fail(errTooLarge, nil, "GET %s: the body is over the limit of %d bytes", b.where, limit)
		b.release()
		return n, b.err
	}
	switch {
	case err == nil:
	case err == io.EOF:
		b.err = io.EOF
	default:
		b.err = b.readErr(err)
		b.release()
	}
	return n, b.err
}

// Close implements io.Closer: it releases the connection, the transport and the timer. It may be called
// from another goroutine to abort a Read, which then returns an error.
func (b *body) Close() error {
	b.closed.Store(true)
	b.release()
	return nil
}

// release frees everything once; the first failed Read and Close call it.
func (b *body) release() {
	b.once.Do(func() {
		if b.idle != nil {
			b.idle.Stop()
		}
		b.rc.Close()
		b.cancel(errClosed)
		b.tr.CloseIdleConnections()
	})
}
