package refserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/google/uuid"

	"github.com/openvair/openvair/internal/idem"
	"github.com/openvair/openvair/internal/operation"
)

// Idempotency keys. A POST (a create, an action, an image upload) with an Idempotency-Key header runs at
// most once per key: the first request stores its fingerprint and, once answered, its response; a retry
// with the same key and the same request gets that response again, byte for byte, with
// Idempotent-Replayed: true, from any server process sharing the store, for Config.IdempotencyTTL.
//
//   - Keys belong to the token that sent them (the scope is the token's name).
//   - The fingerprint is the SHA-256 of the method, the escaped path, the raw query and the body. An image
//     upload's body is streamed, never held, so its fingerprint is the method, the path, the query (where the
//     storage_id, name and description parameters are), Content-Length and Content-Type instead.
//   - The same key with another request: 422. The same key while the first request still runs: 409.
//   - A 2xx or 4xx answer is stored. A 5xx answer, or a client that went away, drops the key, so that a
//     retry runs the request again.
//   - The key is held by this process (its operations owner) until a lease ends: the request's deadline,
//     or, when the store can renew it, a short lease renewed while the request runs. A key whose process
//     died is free again once its lease ends.

// IdempotencyKeyHeader is the request header that names a POST for safe retries.
const IdempotencyKeyHeader = "Idempotency-Key"

// MaxIdempotencyKeyBytes is the longest Idempotency-Key accepted.
const MaxIdempotencyKeyBytes = 255

// idempotentReplayedHeader marks a stored response sent again.
const idempotentReplayedHeader = "Idempotent-Replayed"

// replayedHeaders are the response headers stored with a response and sent again with it.
var replayedHeaders = []string{"Content-Type", "Location", "ETag", operationIDHeader, preferenceAppliedHeader}

// maxStoredResponse is the largest response body stored; a larger answer (none of the API's POSTs gives
// one) is not stored, and its key is dropped.
const maxStoredResponse = 1 << 20

// streamedBody marks, in an operation's Metadata, a POST whose body is streamed to the SDK (an image
// upload): its fingerprint does not read the body.
const streamedBody = "openvair-streamed-body"

// processOwner names this process in idempotency records when the System records no operations.
var processOwner = uuid.NewString()

// validIdempotencyKey reports whether k is 1 to MaxIdempotencyKeyBytes bytes of printable ASCII.
func validIdempotencyKey(k string) bool {
	if k == "" || len(k) > MaxIdempotencyKeyBytes {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// idemOwner and idemLease are this process's name and lease length in idempotency records.
func (s *server) idemOwner() string {
	if s.sys.Operations != nil {
		return s.sys.Operations.Owner()
	}
	return processOwner
}

func (s *server) idemLease() time.Duration {
	if s.sys.Operations != nil {
		return s.sys.Operations.Lease()
	}
	return operation.DefaultLease
}

// idempotencyStore returns the System's store of idempotency keys, or nil.
func (s *server) idempotencyStore() idem.Store {
	if s.sys.Store == nil {
		return nil
	}
	return s.sys.Store.Idempotency()
}

// idempotencyMiddleware runs a POST with an Idempotency-Key at most once (see above).
func (s *server) idempotencyMiddleware(ctx huma.Context, next func(huma.Context)) {
	op := ctx.Operation()
	if op == nil || op.Method != http.MethodPost || !isSDKWrite(op) {
		next(ctx)
		return
	}
	r, _ := humago.Unwrap(ctx)
	keys := r.Header.Values(IdempotencyKeyHeader)
	if len(keys) == 0 {
		next(ctx)
		return
	}
	if len(keys) > 1 || !validIdempotencyKey(keys[0]) {
		writeProblem(ctx, withInstance(newProblem(http.StatusBadRequest, "invalid",
			fmt.Sprintf("%s must be one value of 1 to %d printable ASCII characters", IdempotencyKeyHeader, MaxIdempotencyKeyBytes)), ctx))
		return
	}
	key := keys[0]
	store := s.idempotencyStore()
	if store == nil {
		writeProblem(ctx, withInstance(newProblem(http.StatusServiceUnavailable, "unavailable",
			"this server's store keeps no idempotency keys: send the request without "+IdempotencyKeyHeader), ctx))
		return
	}

	upload := op.Metadata[streamedBody] == true
	var body []byte
	if !upload {
		// Huma reads at most MaxBodyBytes (and refuses a body of that size or more): read as much, and give
		// Huma the same bytes.
		var err error
		limit := op.MaxBodyBytes
		if limit <= 0 {
			limit = s.cfg.MaxBodyBytes
		}
		body, err = io.ReadAll(io.LimitReader(r.Body, limit))
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{err}))
		if err != nil {
			next(ctx) // a body that cannot be read: Huma answers it
			return
		}
	}
	fp := fingerprint(r, body, upload)

	reqCtx := ctx.Context()
	scope := principalOf(reqCtx)
	owner := s.idemOwner()
	now := time.Now().UTC()
	// The key is held for a short lease, renewed while the request runs: a retry meanwhile gets 409, and the
	// key of a process killed mid-request can be taken over once the lease has run out.
	rec := &idem.Record{Scope: scope, Key: key, Fingerprint: fp, State: idem.StateRunning, Owner: owner,
		LeaseUntil: now.Add(s.idemLease()), CreatedAt: now, ExpiresAt: now.Add(s.cfg.IdempotencyTTL)}
	existing, err := store.Begin(reqCtx, rec)
	if err != nil {
		writeProblem(ctx, withInstance(s.problemOf(reqCtx, err), ctx))
		return
	}
	if existing != nil {
		s.answerExisting(ctx, existing, fp)
		return
	}

	stopRenew := s.renewKey(reqCtx, store, scope, key, owner)
	rc := &recordingContext{wrappedContext: ctx}
	done := false
	defer func() {
		stopRenew()
		if !done { // a panic: the recover middleware answers 500
			s.abandonKey(reqCtx, store, scope, key, owner)
		}
	}()
	next(rc)
	done = true
	stopRenew()

	// A 2xx or 4xx was decided: the work was done (or refused), even when the client has gone by now, so a
	// retry must get it again rather than do it twice. A 499 is a call the client's departure interrupted, a
	// 5xx one that failed: a retry may run them again.
	defer rc.send() // after the answer is stored (or released)
	status := rc.status
	keep := (status >= 200 && status < 300 || status >= 400 && status < 500) && status != statusClientGone && !rc.overflow
	if !keep {
		s.abandonKey(reqCtx, store, scope, key, owner)
		return
	}
	rec.State, rec.Status, rec.Header, rec.Body = idem.StateDone, status, rc.header, rc.body.Bytes()
	if rec.Header == nil {
		rec.Header = http.Header{}
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(reqCtx), 30*time.Second)
	defer cancel()
	if err := store.Finish(fctx, rec); err != nil {
		s.log.Warn("idempotency: storing the response", "request_id", requestIDOf(reqCtx), "key", key, "err", err)
		s.abandonKey(reqCtx, store, scope, key, owner)
	}
}

// answerExisting answers a request whose key a first request holds: its response again, or 409 while it
// runs, or 422 when the key named another request.
func (s *server) answerExisting(ctx huma.Context, rec *idem.Record, fp string) {
	switch {
	case rec.Fingerprint != fp:
		writeProblem(ctx, withInstance(newProblem(http.StatusUnprocessableEntity, "invalid",
			IdempotencyKeyHeader+" was first used for another request (another method, path, query or body): a key names one request"), ctx))
	case rec.State != idem.StateDone:
		writeProblem(ctx, withInstance(newProblem(http.StatusConflict, "conflict",
			"the first request with this "+IdempotencyKeyHeader+" is still running; retry later"), ctx))
	default:
		for _, h := range replayedHeaders {
			for _, v := range rec.Header.Values(h) {
				ctx.AppendHeader(h, v)
			}
		}
		ctx.SetHeader(idempotentReplayedHeader, "true")
		ctx.SetStatus(rec.Status)
		if len(rec.Body) > 0 {
			_, _ = ctx.BodyWriter().Write(rec.Body)
		}
	}
}

// renewKey extends the lease of a running key until the returned func is called.
func (s *server) renewKey(ctx context.Context, r idem.Store, scope, key, owner string) func() {
	lease := s.idemLease()
	stop := make(chan struct{})
	done := make(chan struct{})
	ctx = context.WithoutCancel(ctx)
	go func() {
		defer close(done)
		t := time.NewTicker(max(lease/3, 100*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			rctx, cancel := context.WithTimeout(ctx, lease/3+time.Second)
			if err := r.Renew(rctx, scope, key, owner, time.Now().UTC().Add(lease)); err != nil {
				s.log.Warn("idempotency: renewing a key's lease", "request_id", requestIDOf(ctx), "key", key, "err", err)
			}
			cancel()
		}
	}()
	stopped := false
	return func() {
		if !stopped {
			stopped = true
			close(stop)
			<-done
		}
	}
}

// abandonKey drops a running key this process holds, so that a retry runs the request again.
func (s *server) abandonKey(ctx context.Context, store idem.Store, scope, key, owner string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := store.Abandon(actx, scope, key, owner); err != nil {
		s.log.Warn("idempotency: dropping a key", "request_id", requestIDOf(ctx), "key", key, "err", err)
	}
}

// fingerprint identifies a request for its idempotency key (see above).
func fingerprint(r *http.Request, body []byte, upload bool) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", r.Method, r.URL.EscapedPath(), r.URL.RawQuery)
	if upload {
		fmt.Fprintf(h, "stream\n%s\n%s\n", strconv.FormatInt(r.ContentLength, 10), r.Header.Get("Content-Type"))
	} else {
		h.Write([]byte("body\n"))
		h.Write(body)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// errReader returns err (io.EOF when nil).
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err == nil {
		return 0, io.EOF
	}
	return 0, e.err
}

// recordingContext holds the answer of the first request with a key — status, the replayed headers and the
// body — until it is stored: the client receives it only once a retry would get it again, so a process
// killed in between leaves a retry to run the request, never a client that saw an answer a retry would not.
type recordingContext struct {
	wrappedContext
	status   int
	header   http.Header
	body     bytes.Buffer
	overflow bool // the body was larger than maxStoredResponse: it is sent but not stored
}

// Unwrap returns the wrapped context.
func (c *recordingContext) Unwrap() huma.Context { return c.wrappedContext }

// SetStatus records the status and the headers set so far; both are sent by send.
func (c *recordingContext) SetStatus(code int) { c.record(code) }

// Status returns the recorded status.
func (c *recordingContext) Status() int { return c.status }

func (c *recordingContext) record(code int) {
	if c.status != 0 {
		return
	}
	c.status = code
	_, w := humago.Unwrap(c.wrappedContext)
	c.header = http.Header{}
	for _, h := range replayedHeaders {
		for _, v := range w.Header().Values(h) {
			c.header.Add(h, v)
		}
	}
}

// BodyWriter keeps the body for send.
func (c *recordingContext) BodyWriter() io.Writer { return recordingWriter{c} }

type recordingWriter struct{ c *recordingContext }

func (rw recordingWriter) Write(b []byte) (int, error) {
	if rw.c.status == 0 {
		rw.c.record(http.StatusOK)
	}
	rw.c.overflow = rw.c.overflow || rw.c.body.Len()+len(b) > maxStoredResponse
	return rw.c.body.Write(b)
}

// send writes the held answer to the client.
func (c *recordingContext) send() {
	if c.status == 0 {
		return
	}
	c.wrappedContext.SetStatus(c.status)
	if c.body.Len() > 0 {
		_, _ = c.wrappedContext.BodyWriter().Write(c.body.Bytes())
	}
}
