// Package client is a Go client of the openvair reference server (refserver). It speaks the server's JSON
// API and returns the SDK's own types (storage.Storage, volume.Volume, image.Image, vm.VM, openvair.Event,
// Operation) and error kinds: errors.Is(err, openvair.ErrInUse) holds remotely as it does embedded, and
// *Error carries the problem's detail, the entities it names and the request id.
//
// It covers storages (and their types), volumes (with sources and snapshots), images (uploads and
// imports), VMs (lifecycle, volumes, console log, serial console), the host and its networks, operations
// (get, list, wait, cancel, and the asynchronous variants of long writes) and events (a Server-Sent Events
// stream that resumes across disconnects). Storages, Volumes, Images and VMs return views with the method
// sets of the SDK's services (*storage.Service, ...), so that code written against small interfaces runs
// embedded or remote alike, chosen by configuration.
//
// Every call takes a context and is bounded by it. Calls that fail for want of the server (a network error,
// 503) are retried with exponential backoff up to Config.Retries times; a POST is retried only with the
// Idempotency-Key the client sends with it, so that a retry never does the work twice.
//
// A context made with openvair.ExpectVersion sends If-Match with the writes to that entity (a stale version
// is openvair.ErrPreconditionFailed, as embedded), and one made with openvair.WithRequest sends its request
// id as X-Request-Id.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/reqctx"
)

// Config configures a Client.
type Config struct {
	// URL is the server's base URL, such as "http://127.0.0.1:8080" (the API is under /api/v1).
	URL string
	// Token is the bearer token.
	Token string
	// HTTP is the HTTP client (default: a client with no overall timeout; calls are bounded by their
	// contexts). A Timeout set on it also cuts event streams (which then reconnect) and long waits.
	HTTP *http.Client
	// Retries is how many times a call that found the server unavailable is tried again (default 3;
	// negative: never).
	Retries int
	// Backoff is the first wait before a retry, doubled each time (default 200 ms).
	Backoff time.Duration
}

// Client calls one openvair server. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	token   string
	http    *http.Client
	retries int
	backoff time.Duration
}

// New returns a client of the server at cfg.URL.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: %w: URL %q is not an http or https URL", errkind.Invalid, cfg.URL)
	}
	c := &Client{base: u, token: cfg.Token, http: cfg.HTTP, retries: cfg.Retries, backoff: cfg.Backoff}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.retries == 0 {
		c.retries = 3
	}
	if c.backoff <= 0 {
		c.backoff = 200 * time.Millisecond
	}
	return c, nil
}

// Ref names an entity a problem points at.
type Ref = errkind.Ref

// FieldError is one bad field of an invalid request, located as the server saw it ("body.config.path").
type FieldError struct {
	Location string `json:"location"`
	Message  string `json:"message"`
}

// Error is a problem the server answered (RFC 9457). errors.Is matches it against the SDK's error kinds
// (openvair.ErrNotFound, ErrInUse, ...) by its kind.
type Error struct {
	Status    int          `json:"status"`
	Kind      string       `json:"kind"`
	Reason    string       `json:"reason,omitempty"`
	Detail    string       `json:"detail"`
	Refs      []Ref        `json:"refs,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
}

// Error implements error.
func (e *Error) Error() string {
	msg := fmt.Sprintf("openvair: %d %s: %s", e.Status, e.Kind, e.Detail)
	for _, f := range e.Errors {
		msg += fmt.Sprintf("; %s: %s", f.Location, f.Message)
	}
	return msg
}

// Is reports whether the problem's kind is target (an openvair.Err* kind). The error of a cancelled
// operation (kind "cancelled") matches openvair.ErrWrongState, as a cancelled SDK call's does.
func (e *Error) Is(target error) bool {
	if e.Kind == kindCancelled {
		return target == errkind.WrongState
	}
	k := errkind.ByName(e.Kind)
	return k != nil && k == target
}

// request is one API call.
type request struct {
	method  string
	path    string // under the base URL, with its query
	body    any    // JSON-encoded, or an io.Reader sent as is
	ctype   string // the Content-Type of a reader body
	size    int64  // the length of a reader body, -1 unknown
	header  http.Header
	idem    bool // a POST that may be retried with an Idempotency-Key
	noRetry bool // a body that can be read only once
}

// do runs a call, retrying it while the server is unavailable, and decodes a 2xx body into out.
func (c *Client) do(ctx context.Context, r request, out any) (*http.Response, error) {
	var payload []byte
	if r.body != nil {
		if _, isReader := r.body.(io.Reader); !isReader {
			b, err := json.Marshal(r.body)
			if err != nil {
				return nil, fmt.Errorf("client: encode request: %w", err)
			}
			payload = b
		}
	}
	key := ""
	if r.idem {
		key = newKey()
	}
	wait := c.backoff
	for attempt := 0; ; attempt++ {
		res, err := c.send(ctx, r, payload, key)
		retry := err != nil && ctx.Err() == nil
		if err == nil && res.StatusCode == http.StatusServiceUnavailable {
			retry = true
		}
		if !retry || attempt >= c.retries || r.noRetry || (r.method == http.MethodPost && !r.idem) {
			if err != nil && ctx.Err() != nil {
				return nil, fmt.Errorf("client: %s %s: %w", r.method, r.path, err) // the context's error
			}
			if err != nil {
				return nil, fmt.Errorf("client: %s %s: %w: %v", r.method, r.path, errkind.Unavailable, err)
			}
			return res, c.decode(res, out)
		}
		if res != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
			_ = res.Body.Close()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func (c *Client) send(ctx context.Context, r request, payload []byte, key string) (*http.Response, error) {
	u := c.base.String() + r.path
	var body io.Reader
	switch {
	case payload != nil:
		body = bytes.NewReader(payload)
	case r.body != nil:
		body = r.body.(io.Reader)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return nil, err
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	switch {
	case payload != nil:
		req.Header.Set("Content-Type", "application/json")
	case r.body != nil:
		req.Header.Set("Content-Type", r.ctype)
		if r.size >= 0 {
			req.ContentLength = r.size
		}
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if r.method != http.MethodGet {
		if id, version, ok := reqctx.ExpectedVersion(ctx); ok && entityOf(r.path) == id {
			req.Header.Set("If-Match", `"`+strconv.FormatInt(version, 10)+`"`)
		}
	}
	if rid := reqctx.MetaOf(ctx).RequestID; rid != "" && req.Header.Get("X-Request-Id") == "" {
		req.Header.Set("X-Request-Id", rid)
	}
	return c.http.Do(req)
}

// entityOf returns the id of the entity a path under /api/v1/<kind>/<id> names, uuid.Nil for none.
func entityOf(path string) uuid.UUID {
	rest, ok := strings.CutPrefix(path, "/api/v1/")
	if !ok {
		return uuid.Nil
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 2 {
		return uuid.Nil
	}
	seg, _, _ := strings.Cut(parts[1], "?")
	id, err := uuid.Parse(seg)
	if err != nil {
		return uuid.Nil
	}
	return id
}

// decode reads a response: a 2xx body into out (when not nil), a problem into *Error.
func (c *Client) decode(res *http.Response, out any) error {
	defer res.Body.Close()
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		if out == nil || res.StatusCode == http.StatusNoContent {
			_, _ = io.Copy(io.Discard, res.Body)
			return nil
		}
		if raw, ok := out.(*rawBody); ok {
			b, err := io.ReadAll(res.Body)
			if err != nil {
				return fmt.Errorf("client: read the answer: %w", err)
			}
			raw.b = b
			return nil
		}
		if err := json.NewDecoder(res.Body).Decode(out); err != nil {
			return fmt.Errorf("client: decode the answer: %w", err)
		}
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	e := &Error{Status: res.StatusCode}
	if json.Unmarshal(b, e) != nil || e.Kind == "" {
		e.Kind, e.Detail = kindOfStatus(res.StatusCode), strings.TrimSpace(string(b))
	}
	if e.RequestID == "" {
		e.RequestID = res.Header.Get("X-Request-Id")
	}
	return e
}

// kindOfStatus names the kind of an answer without a problem body.
func kindOfStatus(status int) string {
	switch status {
	case http.StatusNotFound:
		return "not_found"
	case http.StatusConflict:
		return "conflict"
	case http.StatusServiceUnavailable:
		return "unavailable"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	}
	return "status_" + strconv.Itoa(status)
}

// newKey returns a random Idempotency-Key.
func newKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// rawBody receives an answer's bytes as they are (a text/plain body).
type rawBody struct{ b []byte }

// errBadAnswer is returned when a 2xx answer lacks what the call needs.
var errBadAnswer = errors.New("client: the server's answer lacks the entity")
