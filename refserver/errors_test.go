package refserver_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/refserver"
)

// TestStatusOf checks the one mapping from SDK error kinds to HTTP statuses.
func TestStatusOf(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
	}{
		{errkind.New(openvair.ErrInvalid, "volume", "", "bad"), 422},
		{&openvair.ValidationError{Entity: "vm", Fields: []openvair.FieldError{{Field: "name", Message: "empty"}}}, 422},
		{errkind.New(openvair.ErrNotFound, "volume", "x", "no"), 404},
		{errkind.New(openvair.ErrAlreadyExists, "volume", "x", "dup"), 409},
		{errkind.New(openvair.ErrWrongState, "vm", "x", "running"), 409},
		{errkind.New(openvair.ErrInUse, "volume", "x", "attached"), 409},
		{errkind.New(openvair.ErrConflict, "vm", "x", "raced"), 409},
		{errkind.New(openvair.ErrTooLarge, "image", "x", "big"), 413},
		{fmt.Errorf("read: %w", &http.MaxBytesError{Limit: 1}), 413},
		{errkind.New(openvair.ErrUnavailable, "nfs", "x", "down"), 503},
		{errkind.New(openvair.ErrUnsupported, "nfs", "x", "cannot"), 422},
		{errkind.New(openvair.ErrTimeout, "vm", "x", "slow"), 504},
		{errkind.New(openvair.ErrUnrunnable, "libvirt", "x", "CPU model 'nope' is not supported"), 422},
		{errkind.New(openvair.ErrBackendFailed, "libvirt", "x", "qemu unexpectedly closed the monitor"), 502},
		{fmt.Errorf("wrapped twice: %w", fmt.Errorf("once: %w", errkind.New(openvair.ErrInUse, "storage", "x", "busy"))), 409},
		{errors.New("a bug"), 500},
	} {
		assert.Equal(t, c.status, refserver.StatusOf(c.err), "%v", c.err)
	}
}

// TestErrorResponses produces every error status of the API over HTTP and checks its problem+json body.
func TestErrorResponses(t *testing.T) {
	e := start(t, envOptions{maxImageSize: 128 << 10, maxBodyBytes: 4 << 10})
	st := e.localStorage("local", e.storageDir("pool"))
	vol := e.volume(st.ID, "disk", 1<<30)
	missing := uuid.NewString()

	t.Run("400 malformed JSON", func(t *testing.T) {
		e.do("POST", "/api/v1/volumes", e.admin, `{"name": "x",`).problemIs(t, 400, "")
	})
	t.Run("422 SDK validation lists every bad field", func(t *testing.T) {
		p := e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "", "storage_id": st.ID, "format": "vmdk", "size": 0}).problemIs(t, 422, "invalid")
		var locs []string
		for _, f := range p.Errors {
			locs = append(locs, f.Location)
		}
		assert.ElementsMatch(t, []string{"body.name", "body.format", "body.size"}, locs)
	})
	t.Run("422 schema validation", func(t *testing.T) {
		e.do("GET", "/api/v1/volumes/not-a-uuid", e.admin, nil).problemIs(t, 422, "")
		e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "x", "storage_id": st.ID, "format": "raw", "size": "big"}).problemIs(t, 422, "")
		e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "x", "storage_id": st.ID, "format": "raw", "size": 1, "colour": "red"}).problemIs(t, 422, "")
		e.do("GET", "/api/v1/volumes?storage_id=nope", e.admin, nil).problemIs(t, 422, "invalid")
		e.do("GET", "/api/v1/volumes?limit=5000", e.admin, nil).problemIs(t, 422, "")
	})
	t.Run("401 without or with a wrong token", func(t *testing.T) {
		r := e.do("GET", "/api/v1/storages", "", nil)
		r.problemIs(t, 401, "unauthenticated")
		assert.Contains(t, r.Header.Get("WWW-Authenticate"), "Bearer")
		e.do("GET", "/api/v1/storages", "ovt_wrong", nil).problemIs(t, 401, "unauthenticated")
		e.do("GET", "/api/v1/storages", "", nil, "Authorization", "Basic YWRtaW46YWRtaW4=").problemIs(t, 401, "unauthenticated")
	})
	t.Run("403 reader writes", func(t *testing.T) {
		e.do("DELETE", "/api/v1/volumes/"+vol.ID.String(), e.reader, nil).problemIs(t, 403, "forbidden")
		r := e.do("GET", "/api/v1/volumes/"+vol.ID.String(), e.reader, nil)
		assert.Equal(t, 200, r.Status, "a reader reads")
	})
	t.Run("404 unknown id and route", func(t *testing.T) {
		for _, p := range []string{"/api/v1/storages/", "/api/v1/volumes/", "/api/v1/images/", "/api/v1/vms/"} {
			e.do("GET", p+missing, e.admin, nil).problemIs(t, 404, "not_found")
		}
		e.do("POST", "/api/v1/volumes/"+missing+"/extend", e.admin, map[string]any{"size": 1 << 40}).problemIs(t, 404, "not_found")
		e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "x", "storage_id": missing, "format": "raw", "size": 1 << 20}).problemIs(t, 404, "not_found")
		e.do("GET", "/api/v1/nothing", e.admin, nil).problemIs(t, 404, "not_found")
	})
	t.Run("405 wrong method", func(t *testing.T) {
		r := e.do("PUT", "/api/v1/volumes/"+vol.ID.String(), e.admin, nil)
		r.problemIs(t, 405, "")
		assert.Contains(t, r.Header.Get("Allow"), "PATCH")
	})
	t.Run("409 already exists, in use, wrong state", func(t *testing.T) {
		p := e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "disk", "storage_id": st.ID, "format": "raw", "size": 1 << 20}).problemIs(t, 409, "already_exists")
		assert.Contains(t, p.Detail, "disk")
		e.do("POST", "/api/v1/storages", e.admin, map[string]any{"name": "again", "type": "localfs", "localfs": map[string]any{"path": e.storageDir("pool")}}).problemIs(t, 409, "already_exists")
		e.do("DELETE", "/api/v1/storages/"+st.ID.String(), e.admin, nil).problemIs(t, 409, "in_use")
	})
	t.Run("422 volumes only grow", func(t *testing.T) {
		e.do("POST", "/api/v1/volumes/"+vol.ID.String()+"/extend", e.admin, map[string]any{"size": 1 << 20}).problemIs(t, 422, "invalid")
	})
	t.Run("413 too large", func(t *testing.T) {
		big := bytes.Repeat([]byte{0}, 256<<10)
		e.do("POST", "/api/v1/images?storage_id="+st.ID.String()+"&name=big", e.admin, big).problemIs(t, 413, "too_large")
		// Without a Content-Length the limit is found while streaming.
		e.do("POST", "/api/v1/images?storage_id="+st.ID.String()+"&name=big", e.admin, struct{ *bytes.Reader }{bytes.NewReader(big)}).problemIs(t, 413, "too_large")
		e.do("PATCH", "/api/v1/volumes/"+vol.ID.String(), e.admin, map[string]any{"description": strings.Repeat("x", 8<<10)}).problemIs(t, 413, "")
		var ip refserver.ImagePage
		e.call("GET", "/api/v1/images", nil, 200, &ip)
		assert.Empty(t, ip.Items, "a refused upload leaves nothing behind")
		e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "huge", "storage_id": st.ID, "format": "raw", "size": int64(1) << 60}).problemIs(t, 413, "too_large")
	})
	t.Run("503 no hypervisor", func(t *testing.T) {
		p := e.do("POST", "/api/v1/vms", e.admin, map[string]any{"name": "web", "cpu": map[string]any{"sockets": 1, "cores": 1, "threads": 1}, "memory": 64 << 20}).problemIs(t, 503, "unavailable")
		assert.Contains(t, p.Detail, "hypervisor")
		var page refserver.VMPage
		e.call("GET", "/api/v1/vms", nil, 200, &page)
		assert.Empty(t, page.Items)
	})
	t.Run("multipart without a file part", func(t *testing.T) {
		body := "--b\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nx\r\n--b--\r\n"
		e.do("POST", "/api/v1/images?storage_id="+st.ID.String(), e.admin, strings.NewReader(body), "Content-Type", "multipart/form-data; boundary=b").problemIs(t, 400, "invalid")
	})
	t.Run("upload of a qcow2 with a backing file is refused", func(t *testing.T) {
		hdr := make([]byte, 512)
		copy(hdr, "QFI\xfb\x00\x00\x00\x03")
		hdr[15] = 104 // backing file offset
		hdr[19] = 4   // backing file size
		copy(hdr[104:], "base")
		hdr[20+3] = 16 // cluster bits
		r := e.do("POST", "/api/v1/images?storage_id="+st.ID.String()+"&name=chain", e.admin, hdr)
		assert.Contains(t, []int{409, 422}, r.Status, "%s", r.Body)
		r.problem(t)
	})
}

// TestHealth checks the probes and the OpenAPI and docs routes, which need no token.
func TestHealth(t *testing.T) {
	e := start(t, envOptions{})
	var h refserver.Health
	e.call("GET", "/healthz", nil, 200, &h)
	assert.Equal(t, "ok", h.Status)
	r := e.do("GET", "/readyz", "", nil)
	require.Equal(t, 200, r.Status)
	require.NoError(t, json.Unmarshal(r.Body, &h))
	assert.Equal(t, "ok", h.Store)
	assert.Equal(t, "not configured", h.Hypervisor)

	r = e.do("GET", "/openapi.json", "", nil)
	require.Equal(t, 200, r.Status)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &doc))
	assert.Equal(t, "3.1.0", doc["openapi"])
	r = e.do("GET", "/openapi.yaml", "", nil)
	require.Equal(t, 200, r.Status)
	assert.Contains(t, string(r.Body), "openapi: 3.1.0")

	r = e.do("GET", "/docs", "", nil)
	require.Equal(t, 200, r.Status)
	page := string(r.Body)
	assert.Contains(t, page, `fetch("openapi.json")`)
	assert.NotContains(t, page, "https://", "the docs page loads nothing from the network")
	assert.NotContains(t, page, "http://")
	assert.NotContains(t, page, "<script src")
}
