package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/storage"
)

// cutStream wraps the writer of an event stream: after keep messages it writes half of the next one and
// aborts the connection, as a network failure in the middle of a message would.
type cutStream struct {
	http.ResponseWriter
	keep int
	sent int
}

func (w *cutStream) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *cutStream) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("id: ")) {
		if w.sent == w.keep {
			_, _ = w.ResponseWriter.Write(p[:len(p)/2])
			_ = http.NewResponseController(w.ResponseWriter).Flush()
			panic(http.ErrAbortHandler)
		}
		w.sent++
	}
	return w.ResponseWriter.Write(p)
}

// streamCutter cuts the first event stream after keep messages and records the Last-Event-ID of every
// stream request.
type streamCutter struct {
	keep    int
	mu      sync.Mutex
	lastIDs []string
}

func (s *streamCutter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/events" {
			h.ServeHTTP(w, r)
			return
		}
		s.mu.Lock()
		s.lastIDs = append(s.lastIDs, r.Header.Get("Last-Event-ID"))
		first := len(s.lastIDs) == 1
		s.mu.Unlock()
		if first {
			w = &cutStream{ResponseWriter: w, keep: s.keep}
		}
		h.ServeHTTP(w, r)
	})
}

func (s *streamCutter) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lastIDs...)
}

// Events follows the change log across a connection cut in the middle of a message: it reconnects with the
// last id it saw and every event arrives exactly once, in order — the ones made before it subscribed and
// the ones made while it follows.
func TestEventsResumeAfterDisconnect(t *testing.T) {
	cut := &streamCutter{keep: 3}
	e := newEnv(t, cut.wrap, nil)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const before, after = 5, 5
	mk := func(i int) error {
		_, err := e.c.CreateStorage(ctx, storage.CreateRequest{Name: fmt.Sprintf("pool%d", i), Type: "localfs",
			Config: map[string]string{"path": fmt.Sprintf("%s/pool%d", e.base, i)}})
		return err
	}
	for i := range before {
		require.NoError(t, mk(i))
	}
	var wg sync.WaitGroup
	defer wg.Wait()

	var names []string
	var ids []int64
	for ev, err := range e.c.Events(ctx, client.EventOptions{Since: 0, Resource: "storage", Types: []string{"storage.created"}}) {
		require.NoError(t, err)
		assert.Equal(t, "storage.created", ev.Type)
		st, derr := decode[storage.Storage](ev.Data)
		require.NoError(t, derr)
		assert.Equal(t, ev.ResourceID, st.ID)
		names = append(names, st.Name)
		ids = append(ids, ev.ID)
		if len(names) == 1 {
			wg.Go(func() { // changes made while the client follows the stream
				for i := before; i < before+after; i++ {
					assert.NoError(t, mk(i))
				}
			})
		}
		if len(names) == before+after {
			break
		}
	}
	want := make([]string, 0, before+after)
	for i := range before + after {
		want = append(want, fmt.Sprintf("pool%d", i))
	}
	assert.Equal(t, want, names, "every event once, in order")
	for i := 1; i < len(ids); i++ {
		assert.Less(t, ids[i-1], ids[i])
	}
	reqs := cut.requests()
	require.GreaterOrEqual(t, len(reqs), 2, "the client reconnected")
	assert.Equal(t, "0", reqs[0])
	assert.Equal(t, fmt.Sprint(ids[cut.keep-1]), reqs[1], "resumed after the last event it saw")
}

// Events from now on (Since -1) miss nothing when the first stream breaks before any event arrived: the
// client resumes after the server's "now" (the Event-Cursor header), not after a new "now".
func TestEventsFromNowResumeAtCursor(t *testing.T) {
	var (
		mu     sync.Mutex
		first  = true
		e      *env
		ids    []string
		mkDone = make(chan struct{})
	)
	mk := func(ctx context.Context, name string) error {
		_, err := e.c.CreateStorage(ctx, storage.CreateRequest{Name: name, Type: "localfs",
			Config: map[string]string{"path": e.base + "/" + name}})
		return err
	}
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/api/v1/events" {
				h.ServeHTTP(w, r)
				return
			}
			mu.Lock()
			ids = append(ids, r.Header.Get("Last-Event-ID"))
			isFirst := first
			first = false
			mu.Unlock()
			if !isFirst {
				h.ServeHTTP(w, r)
				return
			}
			// The first stream ends as soon as its headers are out; the changes are made before the client
			// sees the end, so they fall between its two connections.
			ctx, cancel := context.WithCancel(r.Context())
			h.ServeHTTP(&cancelOnHeader{ResponseWriter: w, cancel: cancel}, r.WithContext(ctx))
			cancel()
			for i := range 3 {
				assert.NoError(t, mk(r.Context(), fmt.Sprintf("gap%d", i)))
			}
			close(mkDone)
		})
	}
	e = newEnv(t, wrap, nil)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	require.NoError(t, mk(ctx, "before")) // made before subscribing: not in a stream from now on

	var names []string
	for ev, err := range e.c.Events(ctx, client.EventOptions{Since: -1, Resource: "storage", Types: []string{"storage.created"}}) {
		require.NoError(t, err)
		st, derr := decode[storage.Storage](ev.Data)
		require.NoError(t, derr)
		names = append(names, st.Name)
		if len(names) == 3 {
			break
		}
	}
	<-mkDone
	assert.Equal(t, []string{"gap0", "gap1", "gap2"}, names, "the changes made between the two connections arrive")
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(ids), 2)
	assert.Empty(t, ids[0], "the first stream starts from now")
	assert.NotEmpty(t, ids[1], "the second resumes after the cursor of the first")
}

// cancelOnHeader cancels a request's context once its response headers are written.
type cancelOnHeader struct {
	http.ResponseWriter
	cancel context.CancelFunc
}

func (w *cancelOnHeader) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *cancelOnHeader) WriteHeader(code int) {
	w.ResponseWriter.WriteHeader(code)
	_ = http.NewResponseController(w.ResponseWriter).Flush()
	w.cancel()
}

// Events yields an error, and ends, for what reconnecting cannot cure, and when its context ends.
func TestEventsErrors(t *testing.T) {
	e := newEnv(t, nil, nil)
	bad, err := client.New(client.Config{URL: e.url, Token: "wrong", Backoff: time.Millisecond})
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		c      *client.Client
		opts   client.EventOptions
		status int
		kind   error
	}{
		{"unknown token", bad, client.EventOptions{Since: -1}, http.StatusUnauthorized, nil},
		{"resume id never handed out", e.c, client.EventOptions{Since: 1 << 40}, http.StatusGone, openvair.ErrGone},
		{"unknown resource", e.c, client.EventOptions{Since: -1, Resource: "disk"}, http.StatusUnprocessableEntity, openvair.ErrInvalid},
		{"unknown type", e.c, client.EventOptions{Since: -1, Types: []string{"vm.exploded"}}, http.StatusUnprocessableEntity, openvair.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			n := 0
			for _, err := range tc.c.Events(ctx, tc.opts) {
				n++
				var ce *client.Error
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, tc.status, ce.Status)
				if tc.kind != nil {
					assert.ErrorIs(t, err, tc.kind)
				}
			}
			assert.Equal(t, 1, n, "one error, then the end")
		})
	}

	t.Run("context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		var errs []error
		for _, err := range e.c.Events(ctx, client.EventOptions{Since: -1}) {
			errs = append(errs, err)
		}
		require.Len(t, errs, 1)
		assert.ErrorIs(t, errs[0], context.Canceled)
	})

	t.Run("server away", func(t *testing.T) {
		// A server that answers 503 is retried until it comes back (here: until ctx ends).
		var mu sync.Mutex
		calls := 0
		e := newEnv(t, func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/api/v1/events") {
					mu.Lock()
					calls++
					mu.Unlock()
					http.Error(w, `{"status":503,"kind":"unavailable","detail":"restarting"}`, http.StatusServiceUnavailable)
					return
				}
				h.ServeHTTP(w, r)
			})
		}, nil)
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		var errs []error
		for _, err := range e.c.Events(ctx, client.EventOptions{Since: -1}) {
			errs = append(errs, err)
		}
		require.Len(t, errs, 1)
		assert.True(t, errors.Is(errs[0], context.DeadlineExceeded))
		mu.Lock()
		defer mu.Unlock()
		assert.Greater(t, calls, 2, "retried with backoff")
	})
}

// The stream parser: heartbeats are skipped, data lines join, a message that is not an event is an error
// the sequence goes on after, and a reconnection resumes after the last id, good or bad.
func TestEventsParsing(t *testing.T) {
	var mu sync.Mutex
	var lastIDs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
		n := len(lastIDs)
		mu.Unlock()
		if n > 1 {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"status":401,"kind":"unauthenticated","detail":"token revoked"}`))
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte(": ping\n\n" +
			"id: 1\nevent: storage.created\ndata: {\"id\":1,\"type\":\"storage.created\",\"resource\":\"storage\"}\n\n" +
			"id: 2\nevent: storage.updated\ndata: not json\n\n" +
			"id: 3\nevent: vm.updated\ndata: {\"id\":3,\ndata: \"type\":\"vm.updated\",\"data\":null}\n\n" +
			"id: 4\ndata: {\"id\":4,\"type\":\"cut short\"")) // no blank line: never dispatched
	}))
	defer srv.Close()
	c, err := client.New(client.Config{URL: srv.URL, Backoff: time.Millisecond})
	require.NoError(t, err)

	var got []string
	for ev, err := range c.Events(t.Context(), client.EventOptions{Since: -1}) {
		if err != nil {
			got = append(got, "error: "+err.Error())
			continue
		}
		got = append(got, fmt.Sprintf("%d %s", ev.ID, ev.Type))
	}
	require.Len(t, got, 4)
	assert.Equal(t, "1 storage.created", got[0])
	assert.Contains(t, got[1], "error: client: event 2")
	assert.Equal(t, "3 vm.updated", got[2])
	assert.Contains(t, got[3], "401")
	assert.Equal(t, []string{"", "3"}, lastIDs, "from now, then after the last id")
}
