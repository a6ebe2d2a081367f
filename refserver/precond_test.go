package refserver_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/refserver"
)

func quoted(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }

// TestETagAndNotModified: every answer about one entity carries its version as a strong ETag; a GET whose
// If-None-Match names it (or *) is 304 without a body.
func TestETagAndNotModified(t *testing.T) {
	e := start(t, envOptions{})
	st := e.localStorage("local", e.storageDir("pool"))
	r := e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "v", "storage_id": st.ID, "format": "raw", "size": 1 << 20})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var vol refserver.Volume
	require.NoError(t, json.Unmarshal(r.Body, &vol))
	assert.Equal(t, quoted(vol.Version), r.Header.Get("ETag"), "a create's answer")
	img := e.image(st.ID, "cd")

	for _, path := range []string{
		"/api/v1/storages/" + st.ID.String(),
		"/api/v1/volumes/" + vol.ID.String(),
		"/api/v1/images/" + img.ID.String(),
		"/api/v1/operations/" + r.Header.Get("Operation-Id"),
	} {
		got := e.do("GET", path, e.admin, nil)
		require.Equal(t, 200, got.Status, "%s: %s", path, got.Body)
		var body struct{ Version int64 }
		require.NoError(t, json.Unmarshal(got.Body, &body))
		tag := got.Header.Get("ETag")
		require.Equal(t, quoted(body.Version), tag, path)

		for _, inm := range []string{tag, "*", "W/" + tag, `"999999", ` + tag} {
			nm := e.do("GET", path, e.admin, nil, "If-None-Match", inm)
			assert.Equal(t, http.StatusNotModified, nm.Status, "%s If-None-Match %s", path, inm)
			assert.Empty(t, nm.Body, path)
			assert.Equal(t, tag, nm.Header.Get("ETag"), path)
			assert.NotEmpty(t, nm.Header.Get(refserver.RequestIDHeader), path)
		}
		for _, inm := range []string{`"999999"`, "garbage", `W/"999999"`} {
			ok := e.do("GET", path, e.admin, nil, "If-None-Match", inm)
			assert.Equal(t, 200, ok.Status, "%s If-None-Match %s", path, inm)
			assert.Equal(t, got.Body, ok.Body, path)
		}
		// A reader gets 304 too.
		assert.Equal(t, http.StatusNotModified, e.do("GET", path, e.reader, nil, "If-None-Match", tag).Status)
	}

	// A change moves the ETag, and the old one no longer matches.
	before := e.do("GET", "/api/v1/volumes/"+vol.ID.String(), e.admin, nil).Header.Get("ETag")
	r = e.do("PATCH", "/api/v1/volumes/"+vol.ID.String(), e.admin, map[string]any{"description": "changed"})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var edited refserver.Volume
	require.NoError(t, json.Unmarshal(r.Body, &edited))
	assert.Equal(t, quoted(edited.Version), r.Header.Get("ETag"))
	assert.NotEqual(t, before, r.Header.Get("ETag"))
	assert.Equal(t, 200, e.do("GET", "/api/v1/volumes/"+vol.ID.String(), e.admin, nil, "If-None-Match", before).Status)

	// Lists have no ETag; a missing entity is 404 whatever If-None-Match says.
	assert.Empty(t, e.do("GET", "/api/v1/volumes", e.admin, nil).Header.Get("ETag"))
	assert.Equal(t, 200, e.do("GET", "/api/v1/volumes", e.admin, nil, "If-None-Match", "*").Status)
	e.do("GET", "/api/v1/volumes/"+st.ID.String(), e.admin, nil, "If-None-Match", "*").problemIs(t, 404, "not_found")
}

// TestIfMatch: a write with If-Match naming another version is 412 and changes nothing; the current
// version or * lets it through; a malformed If-Match is 400.
func TestIfMatch(t *testing.T) {
	e := start(t, envOptions{})
	st := e.localStorage("local", e.storageDir("pool"))
	vol := e.volume(st.ID, "v", 1<<20)
	path := "/api/v1/volumes/" + vol.ID.String()
	stale := quoted(vol.Version)
	r := e.do("PATCH", path, e.admin, map[string]any{"description": "first"}, "If-Match", stale)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var cur refserver.Volume
	require.NoError(t, json.Unmarshal(r.Body, &cur))
	require.NotEqual(t, stale, quoted(cur.Version))

	unchanged := func() {
		t.Helper()
		var now refserver.Volume
		e.call("GET", path, nil, 200, &now)
		assert.Equal(t, cur.Version, now.Version, "nothing changed")
		assert.Equal(t, cur.Description, now.Description)
		assert.Equal(t, cur.Size, now.Size)
	}
	p := e.do("PATCH", path, e.admin, map[string]any{"description": "second"}, "If-Match", stale).problemIs(t, 412, "precondition_failed")
	assert.NotEmpty(t, p.RequestID)
	unchanged()
	e.do("POST", path+"/extend", e.admin, map[string]any{"size": 4 << 20}, "If-Match", stale).problemIs(t, 412, "precondition_failed")
	unchanged()
	e.do("DELETE", path, e.admin, nil, "If-Match", stale).problemIs(t, 412, "precondition_failed")
	unchanged()
	// A weak or opaque tag never matches; a malformed one is 400.
	e.do("PATCH", path, e.admin, map[string]any{"description": "x"}, "If-Match", "W/"+quoted(cur.Version)).problemIs(t, 412, "precondition_failed")
	e.do("PATCH", path, e.admin, map[string]any{"description": "x"}, "If-Match", `"abc"`).problemIs(t, 412, "precondition_failed")
	for _, bad := range []string{"3", `"3`, `"1", "2"`, `"3",`} {
		e.do("PATCH", path, e.admin, map[string]any{"description": "x"}, "If-Match", bad).problemIs(t, 400, "invalid")
	}
	unchanged()

	// A conditional write runs asynchronously too: its worker checks the version, and a stale one fails the
	// operation with nothing changed.
	waitFor := func(r resp) map[string]any {
		t.Helper()
		require.Equal(t, 202, r.Status, "%s", r.Body)
		assert.Equal(t, "respond-async", r.Header.Get("Preference-Applied"))
		var op map[string]any
		require.NoError(t, json.Unmarshal(r.Body, &op))
		w := e.do("GET", "/api/v1/operations/"+op["id"].(string)+"/wait?timeout=30", e.admin, nil)
		require.Equal(t, 200, w.Status, "%s", w.Body)
		require.NoError(t, json.Unmarshal(w.Body, &op))
		return op
	}
	op := waitFor(e.do("PATCH", path, e.admin, map[string]any{"description": "async"}, "If-Match", stale, "Prefer", "respond-async"))
	assert.Equal(t, "failed", op["status"])
	assert.Equal(t, "precondition_failed", op["error"].(map[string]any)["kind"])
	unchanged()
	op = waitFor(e.do("PATCH", path, e.admin, map[string]any{"description": "async"}, "If-Match", quoted(cur.Version), "Prefer", "respond-async"))
	assert.Equal(t, "succeeded", op["status"])
	r = e.do("GET", path, e.admin, nil)
	require.Equal(t, 200, r.Status)
	require.NoError(t, json.Unmarshal(r.Body, &cur))
	assert.Equal(t, "async", cur.Description)

	// The current version and * pass.
	r = e.do("POST", path+"/extend", e.admin, map[string]any{"size": 4 << 20}, "If-Match", quoted(cur.Version))
	require.Equal(t, 200, r.Status, "%s", r.Body)
	require.NoError(t, json.Unmarshal(r.Body, &cur))
	assert.Equal(t, quoted(cur.Version), r.Header.Get("ETag"))
	r = e.do("PATCH", path, e.admin, map[string]any{"description": "any"}, "If-Match", "*")
	require.Equal(t, 200, r.Status, "%s", r.Body)
	require.NoError(t, json.Unmarshal(r.Body, &cur))
	e.do("DELETE", path, e.admin, nil, "If-Match", quoted(cur.Version-1)).problemIs(t, 412, "precondition_failed")
	r = e.do("DELETE", path, e.admin, nil, "If-Match", quoted(cur.Version))
	require.Equal(t, 204, r.Status, "%s", r.Body)
	e.do("GET", path, e.admin, nil).problemIs(t, 404, "not_found")

	// Storages too.
	sp := "/api/v1/storages/" + st.ID.String()
	var s refserver.Storage
	e.call("GET", sp, nil, 200, &s)
	e.do("PATCH", sp, e.admin, map[string]any{"description": "x"}, "If-Match", quoted(s.Version+1)).problemIs(t, 412, "precondition_failed")
	r = e.do("PATCH", sp, e.admin, map[string]any{"description": "x"}, "If-Match", quoted(s.Version))
	assert.Equal(t, 200, r.Status, "%s", r.Body)
}
