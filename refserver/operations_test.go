package refserver_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/refserver"
)

// TestRequestID: every response carries X-Request-Id, the client's when it is printable ASCII of at most
// 128 characters, else a new UUIDv7; problems repeat it, and the operations a request starts record it.
func TestRequestID(t *testing.T) {
	e := start(t, envOptions{})
	st := e.localStorage("local", e.storageDir("pool"))

	t.Run("echoed on every kind of response", func(t *testing.T) {
		for _, c := range []struct {
			name, method, path, token string
			body                      any
			status                    int
		}{
			{"200", "GET", "/api/v1/storages", e.admin, nil, 200},
			{"401", "GET", "/api/v1/storages", "", nil, 401},
			{"403", "POST", "/api/v1/volumes", e.reader, map[string]any{}, 403},
			{"404 route", "GET", "/api/v1/nothing-here", e.admin, nil, 404},
			{"404 entity", "GET", "/api/v1/volumes/" + uuid.NewString(), e.admin, nil, 404},
			{"405", "PUT", "/api/v1/storages", e.admin, nil, 405},
			{"422 schema", "GET", "/api/v1/volumes/not-a-uuid", e.admin, nil, 422},
			{"400 body", "POST", "/api/v1/volumes", e.admin, `{"name":`, 400},
			{"health", "GET", "/healthz", "", nil, 200},
			{"docs", "GET", "/openapi.json", "", nil, 200},
		} {
			id := "req-" + c.name
			r := e.do(c.method, c.path, c.token, c.body, refserver.RequestIDHeader, id)
			require.Equal(t, c.status, r.Status, "%s: %s", c.name, r.Body)
			assert.Equal(t, id, r.Header.Get(refserver.RequestIDHeader), c.name)
			if c.status >= 400 {
				assert.Equal(t, id, r.problem(t).RequestID, "%s: %s", c.name, r.Body)
			}
		}
		r := e.do("POST", "/api/v1/images?storage_id="+st.ID.String()+"&name=up", "", iso(), refserver.RequestIDHeader, "req-upload-401")
		require.Equal(t, 401, r.Status, "%s", r.Body)
		assert.Equal(t, "req-upload-401", r.Header.Get(refserver.RequestIDHeader))
		assert.Equal(t, "req-upload-401", r.problem(t).RequestID)
		r = e.do("POST", "/api/v1/images?storage_id="+st.ID.String()+"&name=up", e.admin, iso(), refserver.RequestIDHeader, "req-upload")
		require.Equal(t, 201, r.Status, "%s", r.Body)
		assert.Equal(t, "req-upload", r.Header.Get(refserver.RequestIDHeader))
	})

	t.Run("generated when absent or unusable", func(t *testing.T) {
		seen := map[string]bool{}
		for _, v := range []string{"", strings.Repeat("x", refserver.MaxRequestIDBytes+1), "caf\u00e9"} {
			var hdr []string
			if v != "" {
				hdr = []string{refserver.RequestIDHeader, v}
			}
			r := e.do("GET", "/api/v1/volumes/"+uuid.NewString(), e.admin, nil, hdr...)
			got := r.Header.Get(refserver.RequestIDHeader)
			id, err := uuid.Parse(got)
			require.NoError(t, err, "%q", got)
			assert.Equal(t, uuid.Version(7), id.Version())
			assert.Equal(t, got, r.problem(t).RequestID)
			assert.False(t, seen[got], "a new id each time")
			seen[got] = true
		}
		// The longest accepted id is kept as it is.
		long := strings.Repeat("y", refserver.MaxRequestIDBytes)
		r := e.do("GET", "/api/v1/storages", e.admin, nil, refserver.RequestIDHeader, long)
		assert.Equal(t, long, r.Header.Get(refserver.RequestIDHeader))
	})

	t.Run("recorded in the operation with the requester", func(t *testing.T) {
		r := e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "traced", "storage_id": st.ID, "format": "raw", "size": 1 << 20},
			refserver.RequestIDHeader, "trace-me-1")
		require.Equal(t, 201, r.Status, "%s", r.Body)
		opID := r.Header.Get("Operation-Id")
		require.NotEmpty(t, opID, "a write names its operation")
		var op refserver.Operation
		e.call("GET", "/api/v1/operations/"+opID, nil, 200, &op)
		assert.Equal(t, "trace-me-1", op.RequestID)
		assert.Equal(t, "admin", op.Requester)
		var page refserver.OperationPage
		e.call("GET", "/api/v1/operations?request_id=trace-me-1", nil, 200, &page)
		require.Len(t, page.Items, 1)
		assert.Equal(t, opID, page.Items[0].ID.String())
	})
}

// TestOperationIDOnWrites: every write answers with the operation it started, which records what was
// done and to what.
func TestOperationIDOnWrites(t *testing.T) {
	e := start(t, envOptions{})
	st := e.localStorage("local", e.storageDir("pool"))
	r := e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "v", "storage_id": st.ID, "format": "qcow2", "size": 1 << 20})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var vol refserver.Volume
	require.NoError(t, json.Unmarshal(r.Body, &vol))
	op := e.operation(r.Header.Get("Operation-Id"))
	assert.Equal(t, "volume.create", op.Kind)
	assert.Equal(t, "volume", op.TargetType)
	assert.Equal(t, operation.StatusSucceeded, op.Status)
	require.NotNil(t, op.TargetID)
	assert.Equal(t, vol.ID, *op.TargetID)
	require.NotNil(t, op.Result)
	assert.Equal(t, vol.ID, op.Result.ID)
	assert.Nil(t, op.Error)
	assert.NotNil(t, op.FinishedAt)

	r = e.do("PATCH", "/api/v1/volumes/"+vol.ID.String(), e.admin, map[string]any{"description": "d"})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	assert.Equal(t, "volume.edit", e.operation(r.Header.Get("Operation-Id")).Kind)

	// A failed write names its failed operation too.
	r = e.do("POST", "/api/v1/volumes/"+vol.ID.String()+"/extend", e.admin, map[string]any{"size": 1024})
	require.Equal(t, 422, r.Status, "%s", r.Body)
	if id := r.Header.Get("Operation-Id"); id != "" {
		op := e.operation(id)
		assert.Equal(t, operation.StatusFailed, op.Status)
		require.NotNil(t, op.Error)
		assert.Equal(t, "invalid", op.Error.Kind)
		assert.Equal(t, 422, op.Error.Status)
		assert.Equal(t, "about:blank", op.Error.Type)
		assert.NotEmpty(t, op.Error.Detail)
	}

	r = e.do("DELETE", "/api/v1/volumes/"+vol.ID.String(), e.admin, nil)
	require.Equal(t, 204, r.Status, "%s", r.Body)
	assert.Empty(t, r.Body)
	assert.Equal(t, "volume.delete", e.operation(r.Header.Get("Operation-Id")).Kind)

	// Reads start no operation.
	r = e.do("GET", "/api/v1/storages/"+st.ID.String(), e.admin, nil)
	assert.Empty(t, r.Header.Get("Operation-Id"))
}

// operation reads an operation by the id of an Operation-Id header.
func (e *env) operation(id string) refserver.Operation {
	e.t.Helper()
	_, err := uuid.Parse(id)
	require.NoError(e.t, err, "Operation-Id %q", id)
	var op refserver.Operation
	r := e.call("GET", "/api/v1/operations/"+id, nil, 200, &op)
	assert.Equal(e.t, `"`+itoa(op.Version)+`"`, r.Header.Get("ETag"))
	return op
}

func itoa(v int64) string { b, _ := json.Marshal(v); return string(b) }

// TestAsyncVolumeCreate: with Prefer: respond-async a create answers 202 with its pending operation and
// its URL; waiting for it gives the succeeded operation, whose result is the new volume.
func TestAsyncVolumeCreate(t *testing.T) {
	e := start(t, envOptions{})
	st := e.localStorage("local", e.storageDir("pool"))
	r := e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "later", "storage_id": st.ID, "format": "qcow2", "size": 1 << 20},
		"Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Status, "%s", r.Body)
	assert.Equal(t, "respond-async", r.Header.Get("Preference-Applied"))
	assert.Contains(t, r.Header.Get("Content-Type"), "application/json")
	var op refserver.Operation
	require.NoError(t, json.Unmarshal(r.Body, &op))
	assert.Equal(t, "volume.create", op.Kind)
	assert.Equal(t, "/api/v1/operations/"+op.ID.String(), r.Header.Get("Location"))
	assert.Equal(t, op.ID.String(), r.Header.Get("Operation-Id"))
	assert.Contains(t, []operation.Status{operation.StatusPending, operation.StatusRunning, operation.StatusSucceeded}, op.Status)

	var done refserver.Operation
	e.call("GET", r.Header.Get("Location")+"/wait?timeout=30", nil, 200, &done)
	require.Equal(t, operation.StatusSucceeded, done.Status, "%+v", done.Error)
	require.NotNil(t, done.Result)
	var vol refserver.Volume
	e.call("GET", "/api/v1/volumes/"+done.Result.ID.String(), nil, 200, &vol)
	assert.Equal(t, "later", vol.Name)
	assert.Equal(t, done.Result.Version, vol.Version)

	// Other preferences are ignored; a Prefer list is read whole.
	r = e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "sync", "storage_id": st.ID, "format": "raw", "size": 1 << 20},
		"Prefer", "return=minimal")
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	assert.Empty(t, r.Header.Get("Preference-Applied"))
	r = e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "async2", "storage_id": st.ID, "format": "raw", "size": 1 << 20},
		"Prefer", "wait=10, Respond-Async")
	require.Equal(t, http.StatusAccepted, r.Status, "%s", r.Body)
	e.call("GET", r.Header.Get("Location")+"/wait", nil, 200, &done)
	assert.Equal(t, operation.StatusSucceeded, done.Status)
}

// TestAsyncFailureIsInTheOperation: an asynchronous write the SDK refuses only when it runs ends failed,
// with the problem a synchronous request would have answered.
func TestAsyncFailureIsInTheOperation(t *testing.T) {
	e := start(t, envOptions{})
	st := e.localStorage("local", e.storageDir("pool"))
	e.volume(st.ID, "taken", 1<<20)
	r := e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "taken", "storage_id": st.ID, "format": "raw", "size": 1 << 20},
		"Prefer", "respond-async")
	if r.Status == http.StatusConflict {
		t.Skip("the SDK checks the name before accepting the call")
	}
	require.Equal(t, http.StatusAccepted, r.Status, "%s", r.Body)
	var op refserver.Operation
	e.call("GET", r.Header.Get("Location")+"/wait?timeout=30", nil, 200, &op)
	require.Equal(t, operation.StatusFailed, op.Status)
	require.NotNil(t, op.Error)
	assert.Equal(t, "already_exists", op.Error.Kind)
	assert.Equal(t, 409, op.Error.Status)
	assert.Equal(t, "Conflict", op.Error.Title)
}

// TestOperationsList: filters by target, kind, status and request id, and pages.
func TestOperationsList(t *testing.T) {
	e := start(t, envOptions{})
	st := e.localStorage("local", e.storageDir("pool"))
	a := e.volume(st.ID, "a", 1<<20)
	b := e.volume(st.ID, "b", 1<<20)
	e.call("PATCH", "/api/v1/volumes/"+a.ID.String(), map[string]any{"description": "x"}, 200, nil)
	e.call("POST", "/api/v1/volumes/"+a.ID.String()+"/extend", map[string]any{"size": 2 << 20}, 200, nil)

	list := func(q string) []refserver.Operation {
		var p refserver.OperationPage
		e.call("GET", "/api/v1/operations?"+q, nil, 200, &p)
		out := make([]refserver.Operation, 0, len(p.Items))
		for _, op := range p.Items {
			out = append(out, *op)
		}
		return out
	}
	kinds := func(ops []refserver.Operation) []string {
		var out []string
		for _, op := range ops {
			out = append(out, op.Kind)
		}
		return out
	}
	assert.Equal(t, []string{"volume.extend", "volume.edit", "volume.create"}, kinds(list("target_id="+a.ID.String())), "newest first")
	assert.Equal(t, []string{"volume.create"}, kinds(list("target_id="+b.ID.String())))
	created := list("kind=volume.create")
	require.Len(t, created, 2)
	assert.Equal(t, b.ID, *created[0].TargetID)
	assert.Equal(t, a.ID, *created[1].TargetID)
	assert.Equal(t, []string{"volume.edit"}, kinds(list("kind=volume.edit&status=succeeded&target_id="+a.ID.String())))
	assert.Empty(t, list("status=failed"))
	assert.Empty(t, list("kind=volume.edit&target_id="+b.ID.String()))

	// Pages.
	var p1, p2 refserver.OperationPage
	e.call("GET", "/api/v1/operations?limit=2", nil, 200, &p1)
	require.Len(t, p1.Items, 2)
	require.NotEmpty(t, p1.NextCursor)
	e.call("GET", "/api/v1/operations?limit=2&cursor="+p1.NextCursor, nil, 200, &p2)
	require.NotEmpty(t, p2.Items)
	assert.NotEqual(t, p1.Items[0].ID, p2.Items[0].ID)

	// Bad filters.
	e.do("GET", "/api/v1/operations?status=nope", e.admin, nil).problemIs(t, 422, "invalid")
	e.do("GET", "/api/v1/operations?target_id=nope", e.admin, nil).problemIs(t, 422, "invalid")
	e.do("GET", "/api/v1/operations?cursor=nope", e.admin, nil).problemIs(t, 422, "invalid")
	// A reader may read operations.
	r := e.do("GET", "/api/v1/operations?kind=volume.create", e.reader, nil)
	assert.Equal(t, 200, r.Status, "%s", r.Body)
	e.do("GET", "/api/v1/operations/"+uuid.NewString(), e.admin, nil).problemIs(t, 404, "not_found")
	e.do("GET", "/api/v1/operations/"+uuid.NewString()+"/wait?timeout=1", e.admin, nil).problemIs(t, 404, "not_found")
}

// holdExecutor keeps asynchronous operations pending: it never runs them.
type holdExecutor struct{}

func (holdExecutor) Enqueue(context.Context, *operation.Operation) error { return nil }

// TestCancelOperation: a pending operation is cancelled at once; one that has ended is returned as it is;
// a running one that cannot be cancelled is 409; a reader cannot cancel.
func TestCancelOperation(t *testing.T) {
	e := start(t, envOptions{})
	st := e.localStorage("local", e.storageDir("pool"))
	e.sys.Operations.SetExecutor(holdExecutor{})

	r := e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "never", "storage_id": st.ID, "format": "raw", "size": 1 << 20},
		"Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Status, "%s", r.Body)
	var pending refserver.Operation
	require.NoError(t, json.Unmarshal(r.Body, &pending))
	require.Equal(t, operation.StatusPending, pending.Status)
	path := "/api/v1/operations/" + pending.ID.String()

	// The wait times out with the operation as it is, still pending.
	began := time.Now()
	var waited refserver.Operation
	e.call("GET", path+"/wait?timeout=1", nil, 200, &waited)
	assert.Equal(t, operation.StatusPending, waited.Status)
	assert.GreaterOrEqual(t, time.Since(began), 900*time.Millisecond)

	e.do("DELETE", path, e.reader, nil).problemIs(t, 403, "forbidden")
	var cancelled refserver.Operation
	r = e.call("DELETE", path, nil, 200, &cancelled)
	assert.Equal(t, operation.StatusCancelled, cancelled.Status)
	require.NotNil(t, cancelled.Error)
	assert.Equal(t, "cancelled", cancelled.Error.Kind)
	assert.Equal(t, `"`+itoa(cancelled.Version)+`"`, r.Header.Get("ETag"))
	e.call("GET", path+"/wait?timeout=5", nil, 200, &waited)
	assert.Equal(t, operation.StatusCancelled, waited.Status)
	var vp refserver.VolumePage
	e.call("GET", "/api/v1/volumes?name=never", nil, 200, &vp)
	assert.Empty(t, vp.Items, "a cancelled create creates nothing")

	// A finished operation: returned as it is.
	r = e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "done", "storage_id": st.ID, "format": "raw", "size": 1 << 20})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var finished refserver.Operation
	e.call("DELETE", "/api/v1/operations/"+r.Header.Get("Operation-Id"), nil, 200, &finished)
	assert.Equal(t, operation.StatusSucceeded, finished.Status)

	// A running operation of a kind that cannot stop: 409 wrong_state.
	now := time.Now().UTC()
	running := &operation.Operation{ID: uuid.Must(uuid.NewV7()), Kind: "volume.extend", TargetType: "volume",
		TargetID: uuid.Must(uuid.NewV7()), Status: operation.StatusRunning, Owner: "another-process",
		LeaseUntil: now.Add(time.Hour), CreatedAt: now, StartedAt: &now, UpdatedAt: now}
	require.NoError(t, e.sys.Store.Operations().Create(context.Background(), running))
	e.do("DELETE", "/api/v1/operations/"+running.ID.String(), e.admin, nil).problemIs(t, 409, "wrong_state")
	e.do("DELETE", "/api/v1/operations/"+uuid.NewString(), e.admin, nil).problemIs(t, 404, "not_found")
}
