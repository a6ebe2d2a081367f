package client_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/storage"
)

// faults fails the first requests that match, in one of three ways, and records every matching request.
type faults struct {
	mu     sync.Mutex
	match  func(*http.Request) bool
	left   int    // how many more matching requests fail
	how    string // "503": answer 503; "lost": run the request, then answer 503; "drop": close the connection
	keys   []string
	seen   int
	replay []string // Idempotent-Replayed of the answers that got through
}

func (f *faults) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		if !f.match(r) {
			f.mu.Unlock()
			h.ServeHTTP(w, r)
			return
		}
		f.seen++
		f.keys = append(f.keys, r.Header.Get("Idempotency-Key"))
		fail := f.left > 0
		if fail {
			f.left--
		}
		f.mu.Unlock()
		switch {
		case !fail:
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			f.mu.Lock()
			f.replay = append(f.replay, rec.Header().Get("Idempotent-Replayed"))
			f.mu.Unlock()
			for k, vs := range rec.Header() {
				w.Header()[k] = vs
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
		case f.how == "lost":
			h.ServeHTTP(httptest.NewRecorder(), r) // done, but the answer never arrives
			http.Error(w, `{"status":503,"kind":"unavailable","detail":"the proxy lost the answer"}`, http.StatusServiceUnavailable)
		case f.how == "drop":
			panic(http.ErrAbortHandler)
		default:
			http.Error(w, `{"status":503,"kind":"unavailable","detail":"busy"}`, http.StatusServiceUnavailable)
		}
	})
}

// Calls that find the server unavailable are retried with backoff: GETs and DELETEs as they are, a POST
// only with its Idempotency-Key — the same on every attempt, so that the server, which ran the first
// attempt whose answer was lost, replays its answer instead of running it again. A body that can be read
// only once (an upload) is never retried, and neither is anything with Retries < 0.
func TestClientRetryPolicy(t *testing.T) {
	isPost := func(path string) func(*http.Request) bool {
		return func(r *http.Request) bool { return r.Method == http.MethodPost && r.URL.Path == path }
	}
	isGet := func(r *http.Request) bool { return r.Method == http.MethodGet && r.URL.Path == "/api/v1/storages" }
	for _, tc := range []struct {
		name    string
		f       *faults
		retries int
		call    func(ctx context.Context, c *client.Client, dir string) error
		ok      bool
		seen    int  // attempts the server saw
		sameKey bool // every attempt had one non-empty key
		stores  int  // storages in the end
		replay  bool // the answer that got through was a replay
	}{
		{name: "GET 503", f: &faults{match: isGet, left: 2, how: "503"}, call: listStorages, ok: true, seen: 3},
		{name: "GET dropped connection", f: &faults{match: isGet, left: 1, how: "drop"}, call: listStorages, ok: true, seen: 2},
		{name: "POST 503", f: &faults{match: isPost("/api/v1/storages"), left: 2, how: "503"}, call: createStorage, ok: true,
			seen: 3, sameKey: true, stores: 1},
		{name: "POST answer lost", f: &faults{match: isPost("/api/v1/storages"), left: 1, how: "lost"}, call: createStorage,
			ok: true, seen: 2, sameKey: true, stores: 1, replay: true},
		{name: "POST gives up", f: &faults{match: isPost("/api/v1/storages"), left: 10, how: "503"}, call: createStorage,
			seen: 4, sameKey: true},
		{name: "no retries", f: &faults{match: isGet, left: 1, how: "503"}, retries: -1, call: listStorages, seen: 1},
		{name: "upload not retried", f: &faults{match: isPost("/api/v1/images"), left: 1, how: "503"}, call: upload, seen: 1, stores: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.f.wrap, nil)
			c, err := client.New(client.Config{URL: e.url, Token: e.token, Backoff: time.Millisecond, Retries: tc.retries})
			require.NoError(t, err)
			err = tc.call(t.Context(), c, e.base)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, openvair.ErrUnavailable)
			}
			tc.f.mu.Lock()
			tc.f.match = func(*http.Request) bool { return false } // no more faults, nothing recorded
			tc.f.mu.Unlock()
			assert.Equal(t, tc.seen, tc.f.seen, "attempts")
			if tc.sameKey {
				require.NotEmpty(t, tc.f.keys[0])
				for _, k := range tc.f.keys {
					assert.Equal(t, tc.f.keys[0], k)
				}
			}
			if tc.replay {
				assert.Equal(t, []string{"true"}, tc.f.replay, "the server replayed the first answer")
			}
			all, err := e.c.ListStorages(t.Context())
			require.NoError(t, err)
			assert.Len(t, all, tc.stores, "the work was done at most once")
		})
	}
}

func listStorages(ctx context.Context, c *client.Client, _ string) error {
	_, err := c.ListStorages(ctx)
	return err
}

func createStorage(ctx context.Context, c *client.Client, dir string) error {
	_, err := c.CreateStorage(ctx, storage.CreateRequest{Name: "pool", Type: "localfs", Config: map[string]string{"path": dir + "/pool"}})
	return err
}

func upload(ctx context.Context, c *client.Client, dir string) error {
	st, err := c.CreateStorage(ctx, storage.CreateRequest{Name: "pool", Type: "localfs", Config: map[string]string{"path": dir + "/pool"}})
	if err != nil {
		return err
	}
	content := bytes.Repeat([]byte("x"), 4096)
	_, err = c.UploadImage(ctx, image.CreateRequest{Name: "x.raw", StorageID: st.ID}, bytes.NewReader(content), int64(len(content)), nil)
	return err
}
