package refserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/refserver"
	"github.com/openvair/openvair/refserver/internal/apiclient"
	"github.com/openvair/openvair/volume"
)

// noRedirect sends one request and never follows a redirect.
func noRedirect(t *testing.T, method, url, token string, body io.Reader, hdr ...string) resp {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// fullProblem requires a problem+json body with every field the server's own problems have.
func fullProblem(t *testing.T, r resp, status int) refserver.Problem {
	t.Helper()
	require.Equal(t, status, r.Status, "body: %s", r.Body)
	p := r.problem(t)
	assert.Equal(t, "about:blank", p.Type, "type: %s", r.Body)
	assert.NotEmpty(t, p.Title, "title: %s", r.Body)
	assert.NotEmpty(t, p.Detail, "detail: %s", r.Body)
	assert.NotEmpty(t, p.Instance, "instance: %s", r.Body)
	assert.NotEmpty(t, p.Kind, "kind: %s", r.Body)
	return p
}

func locations(p refserver.Problem) []string {
	var out []string
	for _, e := range p.Errors {
		out = append(out, e.Location)
	}
	return out
}

// TestControlCharactersInParameters: a NUL or another control character in any query or path parameter
// is 422 naming the parameter, before it reaches the store (a NUL in a list filter was a 500).
func TestControlCharactersInParameters(t *testing.T) {
	e := start(t, envOptions{})
	for _, list := range []string{"storages", "volumes", "images", "vms"} {
		for _, q := range []string{"name=%00", "name=a%01b", "name=%7f", "name=%c2%85", "cursor=%00", "name=%ff"} {
			p := fullProblem(t, e.do("GET", "/api/v1/"+list+"?"+q, e.admin, nil), 422)
			assert.Equal(t, []string{"query." + strings.SplitN(q, "=", 2)[0]}, locations(p), "%s?%s", list, q)
		}
	}
	p := fullProblem(t, e.do("POST", "/api/v1/images?name=a%00b", e.admin, iso()), 422)
	assert.Contains(t, locations(p), "query.name")
	p = fullProblem(t, e.do("GET", "/api/v1/volumes/%00", e.admin, nil), 422)
	assert.Equal(t, []string{"path.id"}, locations(p))
	p = fullProblem(t, e.do("DELETE", "/api/v1/vms/"+uuid.NewString()+"/volumes/%01", e.admin, nil), 422)
	assert.Equal(t, []string{"path.volume_id"}, locations(p))
	// Authentication comes first.
	fullProblem(t, e.do("GET", "/api/v1/volumes?name=%00", "", nil), 401)
}

// TestSchemaBounds: filters are enums (an unknown status is 422, not an empty list; a storage type is
// any well-formed backend name), limit is 1..1000, a
// negative stop timeout is 422 at once (it was a 60 s wait, then 504).
func TestSchemaBounds(t *testing.T) {
	e := start(t, envOptions{})
	for _, q := range []string{"/api/v1/storages?status=bogus", "/api/v1/storages?type=Ceph%21", "/api/v1/volumes?status=bogus",
		"/api/v1/images?status=bogus", "/api/v1/vms?status=bogus", "/api/v1/vms?power_state=bogus", "/api/v1/volumes?limit=0",
		"/api/v1/vms?limit=-1", "/api/v1/images?storage_id=../..", "/api/v1/storages?name=" + strings.Repeat("n", 256)} {
		fullProblem(t, e.do("GET", q, e.admin, nil), 422)
	}
	e.call("GET", "/api/v1/volumes?status=available&limit=1", nil, 200, nil)
	var none refserver.StoragePage
	e.call("GET", "/api/v1/storages?type=ceph", nil, 200, &none)
	assert.Empty(t, none.Items, "a type no storage has lists nothing")
	began := time.Now()
	p := fullProblem(t, e.do("POST", "/api/v1/vms/"+uuid.NewString()+"/stop", e.admin, map[string]any{"timeout": -1}), 422)
	assert.Equal(t, []string{"body.timeout"}, locations(p))
	assert.Less(t, time.Since(began), 5*time.Second)
	st := e.localStorage("local", e.storageDir("pool"))
	fullProblem(t, e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "v", "storage_id": st.ID, "format": "vmdk", "size": 1 << 20}), 422)
	fullProblem(t, e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "v", "storage_id": st.ID, "format": "raw", "size": 0}), 422)
	fullProblem(t, e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": strings.Repeat("é", 256), "storage_id": st.ID, "format": "raw", "size": 1}), 422)
}

// TestOpenAPIDeclaresWhatTheServerDoes checks the statuses, enums, bounds and formats of the document.
func TestOpenAPIDeclaresWhatTheServerDoes(t *testing.T) {
	e := start(t, envOptions{})
	r := e.do("GET", "/openapi.json", "", nil)
	require.Equal(t, 200, r.Status)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &doc))
	get := func(v any, path ...string) any {
		for _, p := range path {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[p]
		}
		return v
	}
	schema := func(name string) any { return get(doc, "components", "schemas", name) }
	enum := func(v any) []string {
		var out []string
		xs, _ := get(v, "enum").([]any)
		for _, x := range xs {
			out = append(out, x.(string))
		}
		sort.Strings(out)
		return out
	}
	assert.Equal(t, []string{"qcow2", "raw"}, enum(get(schema("VolumeCreate"), "properties", "format")))
	assert.Equal(t, []string{"localfs"}, enum(get(schema("StorageCreateLocalfs"), "properties", "type")))
	assert.Equal(t, []string{"nfs"}, enum(get(schema("StorageCreateNfs"), "properties", "type")))
	assert.Equal(t, []string{"sata", "scsi", "virtio"}, enum(get(schema("DiskRequest"), "properties", "bus")))
	assert.Equal(t, []string{"sata", "scsi", "virtio"}, enum(get(schema("VolumeAttach"), "properties", "bus")))
	assert.Equal(t, []string{"none", "spice", "vnc"}, enum(get(schema("GraphicsRequest"), "properties", "type")))
	assert.Equal(t, []string{"bridge", "network"}, enum(get(schema("Interface"), "properties", "type")))
	assert.Equal(t, []string{"e1000", "rtl8139", "virtio"}, enum(get(schema("Interface"), "properties", "model")))
	assert.Equal(t, []string{"cdrom", "hd", "network"}, enum(get(schema("VMCreate"), "properties", "boot", "items")))
	assert.EqualValues(t, 1, get(schema("VolumeCreate"), "properties", "size", "minimum"))
	assert.EqualValues(t, 1, get(schema("VolumeExtend"), "properties", "size", "minimum"))
	assert.EqualValues(t, 0, get(schema("VMStop"), "properties", "timeout", "minimum"))
	assert.Equal(t, "uuid", get(schema("VolumeCreate"), "properties", "storage_id", "format"))
	for _, s := range []string{"StorageCreateLocalfs", "StorageCreateNfs", "VolumeCreate", "VMCreate", "MetaEdit", "VolumeEdit", "VMEdit"} {
		assert.EqualValues(t, 255, get(schema(s), "properties", "name", "maxLength"), s)
	}

	paths := doc["paths"].(map[string]any)
	for p, item := range paths {
		for m, o := range item.(map[string]any) {
			op := o.(map[string]any)
			id := op["operationId"].(string)
			has := func(code int) bool { return get(op, "responses", strconv.Itoa(code)) != nil }
			assert.True(t, has(431), "%s: 431", id)
			assert.NotEmpty(t, op["description"], "%s: description", id)
			if strings.HasPrefix(p, "/api/v1/") {
				assert.True(t, has(401), "%s: 401", id)
				if m != "get" || strings.Contains(p, "/console") {
					assert.True(t, has(403), "%s: 403", id)
				}
			}
			if get(op, "requestBody", "content", "application/json") != nil {
				for _, c := range []int{400, 413, 415, 422} {
					assert.True(t, has(c), "%s: %d", id, c)
				}
			}
			if m == "delete" {
				assert.True(t, has(400), "%s: 400", id)
			}
			params, _ := op["parameters"].([]any)
			for _, pv := range params {
				prm := pv.(map[string]any)
				name := prm["name"].(string)
				if prm["in"] == "path" || name == "storage_id" {
					assert.Equal(t, "uuid", get(prm, "schema", "format"), "%s: %s", id, name)
				}
				switch name {
				case "limit":
					assert.EqualValues(t, 1, get(prm, "schema", "minimum"), id)
					assert.EqualValues(t, 1000, get(prm, "schema", "maximum"), id)
				case "status", "power_state", "type":
					// A closed set: an enum, or for a list of them (the event types) a pattern.
					assert.True(t, get(prm, "schema", "enum") != nil || get(prm, "schema", "pattern") != nil, "%s: %s", id, name)
				case "name":
					assert.EqualValues(t, 255, get(prm, "schema", "maxLength"), "%s: %s", id, name)
				}
			}
		}
	}
	stop := get(paths, "/api/v1/vms/{id}/stop", "post")
	assert.NotNil(t, get(stop, "responses", "400"))
	assert.NotNil(t, get(paths, "/api/v1/vms/{id}/start", "post", "responses", "502"))
	assert.Contains(t, get(paths, "/api/v1/vms/{id}", "delete", "description"), "400")
	assert.Contains(t, get(paths, "/api/v1/vms/{id}/console", "get", "description"), "admin")
}

// TestAPIClientVolumeFormatEnum: the generated client has a type for a volume's format with exactly the
// values qcow2 and raw, and it rejects others.
func TestAPIClientVolumeFormatEnum(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), apiclientFile, nil, 0)
	require.NoError(t, err)
	var values []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); ok && id.Name == "VolumeCreateFormat" {
				for _, v := range vs.Values {
					u, err := strconv.Unquote(v.(*ast.BasicLit).Value)
					require.NoError(t, err)
					values = append(values, u)
				}
			}
		}
	}
	sort.Strings(values)
	assert.Equal(t, []string{"qcow2", "raw"}, values)
	assert.True(t, apiclient.VolumeCreateFormatQcow2.Valid())
	assert.True(t, apiclient.VolumeCreateFormatRaw.Valid())
	assert.False(t, apiclient.VolumeCreateFormat("vmdk").Valid())
}

// TestDotSegmentsAreNeverRedirected: a path with ".", ".." or empty segments is not redirected to its
// clean form (which happened before authentication): 401 without a token, then 404.
func TestDotSegmentsAreNeverRedirected(t *testing.T) {
	e := start(t, envOptions{})
	for _, p := range []string{"/api/v1/storages/..", "/api/v1/../api/v1/storages", "/api/v1/volumes/./x", "/api/v1//storages",
		"/api/v1/%2e%2e/api/v1/storages", "/api/v1/storages/%2E", "/api/v1/vms/x/../../storages"} {
		r := noRedirect(t, "GET", e.URL+p, "", nil)
		fullProblem(t, r, 401)
		r = noRedirect(t, "GET", e.URL+p, e.admin, nil)
		fullProblem(t, r, 404)
		assert.Empty(t, r.Header.Get("Location"), p)
		r = noRedirect(t, "DELETE", e.URL+p, e.reader, nil)
		fullProblem(t, r, 404)
	}
	r := noRedirect(t, "GET", e.URL+"/docs/../openapi.json", "", nil)
	fullProblem(t, r, 404)
}

// TestEveryErrorIsAFullProblem: Huma's own errors and the limits of the outer handler have every field
// of the server's problems.
func TestEveryErrorIsAFullProblem(t *testing.T) {
	e := start(t, envOptions{maxBodyBytes: 4 << 10})
	st := e.localStorage("local", e.storageDir("pool"))
	vol := e.volume(st.ID, "disk", 1<<20)
	fullProblem(t, e.do("POST", "/api/v1/volumes", e.admin, `{"name":`), 400)
	p := fullProblem(t, e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "x", "storage_id": st.ID, "format": "raw", "size": "big"}), 422)
	assert.Equal(t, "invalid", p.Kind)
	assert.Equal(t, "/api/v1/volumes", p.Instance)
	p = fullProblem(t, e.do("POST", "/api/v1/volumes", e.admin, strings.NewReader("x"), "Content-Type", "application/xml"), 415)
	assert.Equal(t, "unsupported_media_type", p.Kind)
	p = fullProblem(t, e.do("PATCH", "/api/v1/volumes/"+vol.ID.String(), e.admin, map[string]any{"description": strings.Repeat("x", 8<<10)}), 413)
	assert.Equal(t, "too_large", p.Kind)
	p = fullProblem(t, e.do("GET", "/api/v1/volumes/nope", e.admin, nil), 422)
	assert.Equal(t, []string{"path.id"}, locations(p))
	p = fullProblem(t, e.do("PUT", "/api/v1/volumes/"+vol.ID.String(), e.admin, nil), 405)
	assert.Equal(t, "method_not_allowed", p.Kind)

	// A URL or headers over 64 KiB: 431 as a problem (the test server's MaxHeaderBytes is net/http's 1 MiB).
	p = fullProblem(t, e.do("GET", "/api/v1/volumes?name="+strings.Repeat("n", refserver.MaxURLBytes), e.admin, nil), 431)
	assert.Equal(t, "too_large", p.Kind)
	fullProblem(t, e.do("GET", "/healthz", "", nil, "X-Pad", strings.Repeat("h", refserver.MaxHeaderBytes)), 431)
	e.call("GET", "/api/v1/volumes?name="+strings.Repeat("n", 255), nil, 200, nil)
}

// TestDeleteWithBodyIsRefused: a DELETE's options are query parameters; a body (which was silently
// ignored) is 400 and nothing is deleted.
func TestDeleteWithBodyIsRefused(t *testing.T) {
	e := start(t, envOptions{})
	st := e.localStorage("local", e.storageDir("pool"))
	vol := e.volume(st.ID, "disk", 1<<20)
	fullProblem(t, e.do("DELETE", "/api/v1/vms/"+uuid.NewString(), e.admin, map[string]any{"delete_volumes": true}), 400)
	fullProblem(t, e.do("DELETE", "/api/v1/volumes/"+vol.ID.String(), e.admin, map[string]any{}), 400)
	e.call("GET", "/api/v1/volumes/"+vol.ID.String(), nil, 200, nil)
	e.call("DELETE", "/api/v1/volumes/"+vol.ID.String(), nil, 204, nil)
}

// TestConsoleNeedsAdmin: a console is control of the guest, and its log what the guest shows its
// operator: a reader token gets 403.
func TestConsoleNeedsAdmin(t *testing.T) {
	e := start(t, envOptions{})
	id := uuid.NewString()
	for _, p := range []string{"/console", "/console/log"} {
		fullProblem(t, e.do("GET", "/api/v1/vms/"+id+p, e.reader, nil), 403)
		r := e.do("GET", "/api/v1/vms/"+id+p, e.admin, nil)
		assert.NotEqual(t, 403, r.Status, "%s: %s", p, r.Body)
	}
	e.call("GET", "/api/v1/vms/"+id, nil, 404, nil)
	assert.Equal(t, 404, e.do("GET", "/api/v1/vms/"+id, e.reader, nil).Status, "a reader still reads VMs")
}

// TestErrorsNameTheFieldsTheClientSent: every 422 names its field where the client put it.
func TestErrorsNameTheFieldsTheClientSent(t *testing.T) {
	e := start(t, envOptions{})
	st := e.localStorage("local", e.storageDir("pool"))
	vol := e.volume(st.ID, "disk", 2<<20)
	p := fullProblem(t, e.do("POST", "/api/v1/volumes/"+vol.ID.String()+"/extend", e.admin, map[string]any{"size": 1 << 20}), 422)
	assert.Equal(t, []string{"body.size"}, locations(p))
	p = fullProblem(t, e.do("GET", "/api/v1/volumes?cursor=garbage", e.admin, nil), 422)
	assert.Equal(t, []string{"query.cursor"}, locations(p))
	p = fullProblem(t, e.do("POST", "/api/v1/images?storage_id="+st.ID.String()+"&name=bad%2Fname", e.admin, iso()), 422)
	assert.Equal(t, []string{"query.name"}, locations(p))
	body := "--b\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbad/name\r\n--b\r\n" +
		"Content-Disposition: form-data; name=\"file\"; filename=\"x.iso\"\r\n\r\n" + string(iso()) + "\r\n--b--\r\n"
	p = fullProblem(t, e.do("POST", "/api/v1/images?storage_id="+st.ID.String(), e.admin, strings.NewReader(body), "Content-Type", "multipart/form-data; boundary=b"), 422)
	assert.Equal(t, []string{"body.name"}, locations(p))
	p = fullProblem(t, e.do("POST", "/api/v1/storages", e.admin, map[string]any{"name": "n", "type": "localfs", "localfs": map[string]any{"path": "rel"}}), 422)
	assert.Equal(t, []string{"body.localfs.path"}, locations(p))
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// goneWriter holds the first body write until the client has gone, so that the write fails as it does
// when a client drops a slow request.
type goneWriter struct {
	http.ResponseWriter
	gone <-chan struct{}
}

func (w *goneWriter) Write(b []byte) (int, error) {
	<-w.gone
	time.Sleep(20 * time.Millisecond)
	return w.ResponseWriter.Write(b)
}

// TestClientGone: a request whose client went away is logged as 499 "client gone", not as a server
// failure, and no header is written twice (net/http's "superfluous response.WriteHeader call").
func TestClientGone(t *testing.T) {
	e := start(t, envOptions{})
	st := e.localStorage("local", e.storageDir("pool"))
	ctx := context.Background()
	for i := 0; i < 40; i++ {
		_, err := e.sys.Volumes.Create(ctx, volume.CreateRequest{Name: "v" + strconv.Itoa(i), Description: strings.Repeat("d", 255),
			StorageID: st.ID, Format: volume.FormatRaw, Size: 1 << 20})
		require.NoError(t, err)
	}
	admin, err := refserver.GenerateToken()
	require.NoError(t, err)
	tokens, err := refserver.NewTokens(refserver.Token{Name: "admin", Role: refserver.RoleAdmin, SHA256: refserver.HashToken(admin)})
	require.NoError(t, err)
	var logs, errlog syncBuffer
	h, err := refserver.New(e.sys, refserver.Config{Tokens: tokens, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("when") {
		case "before": // the client is gone before the SDK is called
			<-r.Context().Done()
			h.ServeHTTP(w, r)
		default: // the client goes while the answer is written
			h.ServeHTTP(&goneWriter{ResponseWriter: w, gone: r.Context().Done()}, r)
		}
	}))
	srv.Config.ErrorLog = log.New(&errlog, "", 0)
	srv.Start()
	defer srv.Close()

	for i, when := range []string{"before", "while"} {
		cctx, cancel := context.WithCancel(ctx)
		req, err := http.NewRequestWithContext(cctx, "GET", srv.URL+"/api/v1/volumes?limit=1000&when="+when, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+admin)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if res, err := http.DefaultClient.Do(req); err == nil {
				_ = res.Body.Close()
			}
		}()
		time.Sleep(100 * time.Millisecond)
		cancel()
		<-done
		require.Eventually(t, func() bool { return strings.Count(logs.String(), `"path":"/api/v1/volumes"`) > i },
			10*time.Second, 10*time.Millisecond, "the request is logged")
	}
	time.Sleep(100 * time.Millisecond)
	var records []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		records = append(records, rec)
	}
	var gone int
	for _, rec := range records {
		assert.Equal(t, "INFO", rec["level"], "%v", rec)
		if rec["path"] == "/api/v1/volumes" {
			assert.EqualValues(t, 499, rec["status"], "%v", rec)
			assert.Equal(t, "request: client gone", rec["msg"], "%v", rec)
			gone++
		}
	}
	assert.Equal(t, 2, gone, "%s", logs.String())
	assert.NotContains(t, errlog.String(), "superfluous")
}
