package refserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHostileInput reads the served OpenAPI document and sends every operation malformed, boundary and
// random requests: wrong JSON types, huge and negative numbers, control characters and NUL bytes in body
// strings and in query and path parameters, 100k strings, traversal strings, invalid UUIDs, wrong content
// types, empty, truncated and oversized bodies, unknown fields, missing or wrong tokens and URLs over the
// limit. Ids of real entities fill id fields and parameters, so most requests reach the handlers and the
// SDK. It requires of every answer: no 5xx; a status the document declares for the operation; every error
// is application/problem+json with type, title, status, detail, instance and kind; every 2xx body
// validates against the response schema the document declares.
//
// The run is seeded (OPENVAIR_HOSTILE_SEED, logged) and bounded (OPENVAIR_HOSTILE_REQUESTS per server,
// default 1500); it runs against a server without a hypervisor and one on libvirt's test driver.
func TestHostileInput(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("OPENVAIR_HOSTILE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "OPENVAIR_HOSTILE_SEED")
		seed = v
	}
	n := 1500
	if s := os.Getenv("OPENVAIR_HOSTILE_REQUESTS"); s != "" {
		v, err := strconv.Atoi(s)
		require.NoError(t, err, "OPENVAIR_HOSTILE_REQUESTS")
		n = v
	}
	t.Logf("seed %d (OPENVAIR_HOSTILE_SEED=%d reproduces this run), %d requests per server", seed, seed, n)
	t.Run("no hypervisor", func(t *testing.T) {
		runHostile(t, start(t, envOptions{maxBodyBytes: 64 << 10}), seed, n, false)
	})
	t.Run("libvirt test driver", func(t *testing.T) {
		runHostile(t, start(t, envOptions{libvirt: golibvirt.TestDefault, maxBodyBytes: 64 << 10}), seed+1, n, true)
	})
}

// hostileMaxBody is the body limit the hostile servers run with.
const hostileMaxBody = 64 << 10

// hostileOp is one operation of the document.
type hostileOp struct {
	method, path, id string
	params           []hostileParam
	body             map[string]any // the application/json request schema, nil when there is none
	binary           bool           // the body is the raw content (image upload)
	statuses         map[int]bool
	ok               map[int]*jsonschema.Schema // 2xx application/json response schemas
}

type hostileParam struct {
	name, in string
	schema   map[string]any
}

// hostileRun is one run against one server.
type hostileRun struct {
	t        *testing.T
	e        *env
	rnd      *rand.Rand
	doc      map[string]any
	client   *http.Client
	vms      bool
	storage  string
	volume   string
	image    string
	vm       string
	findings map[string][]string
	counts   map[string]int
	statuses map[int]int
}

func runHostile(t *testing.T, e *env, seed uint64, n int, vms bool) {
	h := &hostileRun{t: t, e: e, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), vms: vms,
		client: &http.Client{Timeout: time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect is an answer to check, not to follow
		}}, findings: map[string][]string{}, counts: map[string]int{},
		statuses: map[int]int{}}
	r := e.do("GET", "/openapi.json", "", nil)
	require.Equal(t, 200, r.Status)
	require.NoError(t, json.Unmarshal(r.Body, &h.doc))
	ops := h.operations(r.Body)
	require.NotEmpty(t, ops)
	h.ensureFixtures()

	began := time.Now()
	for i := 0; i < n; i++ {
		op := ops[h.rnd.IntN(len(ops))]
		h.send(op)
	}
	var codes []string
	for s, c := range h.statuses {
		codes = append(codes, fmt.Sprintf("%d:%d", s, c))
	}
	sort.Strings(codes)
	t.Logf("%d requests over %d operations in %v; statuses %s; %d answers 503 for want of a hypervisor", n, len(ops),
		time.Since(began).Round(time.Millisecond), strings.Join(codes, " "), h.counts["503 without a hypervisor (expected)"])
	for _, cat := range []string{"5xx", "undeclared status", "not problem+json", "problem fields", "2xx body", "transport"} {
		if h.counts[cat] > 0 {
			t.Logf("%s: %d, e.g.\n  %s", cat, h.counts[cat], strings.Join(h.findings[cat], "\n  "))
		}
		assert.Zero(t, h.counts[cat], "%s responses (seed %d)", cat, seed)
	}
}

// operations lists the document's operations and compiles their 2xx response schemas.
func (h *hostileRun) operations(raw []byte) []*hostileOp {
	t := h.t
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	docv, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	require.NoError(t, err)
	require.NoError(t, c.AddResource("mem:///openapi.json", docv))
	ptr := func(parts ...string) string {
		for i, p := range parts {
			parts[i] = url.PathEscape(strings.ReplaceAll(strings.ReplaceAll(p, "~", "~0"), "/", "~1"))
		}
		return "mem:///openapi.json#/" + strings.Join(parts, "/")
	}
	var ops []*hostileOp
	paths, _ := h.doc["paths"].(map[string]any)
	for p, item := range paths {
		for m, o := range item.(map[string]any) {
			od, ok := o.(map[string]any)
			if !ok {
				continue
			}
			op := &hostileOp{method: strings.ToUpper(m), path: p, id: fmt.Sprint(od["operationId"]),
				statuses: map[int]bool{}, ok: map[int]*jsonschema.Schema{}}
			params, _ := od["parameters"].([]any)
			for _, pv := range params {
				pm := h.resolve(pv.(map[string]any))
				sch, _ := pm["schema"].(map[string]any)
				op.params = append(op.params, hostileParam{name: fmt.Sprint(pm["name"]), in: fmt.Sprint(pm["in"]), schema: sch})
			}
			if rb, ok := od["requestBody"].(map[string]any); ok {
				content, _ := rb["content"].(map[string]any)
				if js, ok := content["application/json"].(map[string]any); ok {
					op.body, _ = js["schema"].(map[string]any)
				}
				if _, ok := content["application/octet-stream"]; ok {
					op.binary = true
				}
			}
			responses, _ := od["responses"].(map[string]any)
			for code, rv := range responses {
				s, err := strconv.Atoi(code)
				if err != nil {
					continue // "default" declares nothing precise; it is not counted as declaring a status
				}
				op.statuses[s] = true
				content, _ := h.resolve(rv.(map[string]any))["content"].(map[string]any)
				if s < 300 && content["application/json"] != nil {
					sch, err := c.Compile(ptr("paths", p, m, "responses", code, "content", "application/json", "schema"))
					require.NoError(t, err, "%s %s %s", m, p, code)
					op.ok[s] = sch
				}
			}
			ops = append(ops, op)
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].id < ops[j].id })
	return ops
}

// resolve follows a local $ref.
func (h *hostileRun) resolve(s map[string]any) map[string]any {
	for i := 0; i < 10 && s != nil; i++ {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		var cur any = h.doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, _ := cur.(map[string]any)
			cur = m[strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")]
		}
		s, _ = cur.(map[string]any)
	}
	return s
}

// ensureFixtures (re)creates the storage, volume, image and (with a hypervisor) VM whose ids fill id
// fields, after a hostile request deleted one.
func (h *hostileRun) ensureFixtures() {
	e := h.e
	exists := func(kind, id string) bool {
		return id != "" && e.do("GET", "/api/v1/"+kind+"/"+id, e.admin, nil).Status == 200
	}
	if !exists("storages", h.storage) {
		name := "hstore" + strconv.Itoa(h.rnd.IntN(1e9))
		h.storage = e.localStorage(name, e.storageDir(name)).ID.String()
	}
	sid := uuid.MustParse(h.storage)
	if !exists("volumes", h.volume) {
		h.volume = e.volume(sid, "hvol"+strconv.Itoa(h.rnd.IntN(1e9)), 1<<20).ID.String()
	}
	if !exists("images", h.image) {
		h.image = e.image(sid, "himg"+strconv.Itoa(h.rnd.IntN(1e9))).ID.String()
	}
	if h.vms && !exists("vms", h.vm) {
		var v struct{ ID string }
		e.call("POST", "/api/v1/vms", map[string]any{"name": "hvm" + strconv.Itoa(h.rnd.IntN(1e9)),
			"cpu": map[string]any{"sockets": 1, "cores": 1, "threads": 1}, "memory": 64 << 20}, 201, &v)
		h.vm = v.ID
	}
}

// hostileStrings are strings no field should take without a considered answer.
var hostileStrings = []string{
	"", " ", "\x00", "a\x00b", "\x01\x02\x1f", "\x7f", "line\nbreak", "tab\there", "\r\nX-Injected: 1", "\u0085",
	"\u202egnp.exe", "\ufeffbom", "\u200b", "é", strings.Repeat("é", 300), strings.Repeat("A", 256),
	strings.Repeat("A", 100_000), "../..", "../../etc/passwd", "..", ".", "%2e%2e", "%2e%2e%2f%2e%2e", "..%2f..", "..\\..",
	"/", "//", "/etc/passwd", "not-a-uuid", "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
	"{6ba7b810-9dad-11d1-80b4-00c04fd430c8}", "6ba7b8109dad11d180b400c04fd430c8", "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
	"' OR 1=1 --", "\"; DROP TABLE volumes; --", "<script>alert(1)</script>", "${jndi:ldap://x}", "%s%n%x", "-1", "1e309",
	"true", "null", "\xff\xfe", "\xc0\xaf",
}

// hostileNumbers are raw JSON numbers at and past every boundary.
var hostileNumbers = []string{
	"-1", "0", "1", "-0", "1.5", "-1.5", "2147483647", "2147483648", "-2147483649", "4294967296", "9007199254740993",
	"9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
	"18446744073709551616", "1e308", "1e309", "-1e309", "1e-400", "1E3", "100000000000000000000000000000",
}

// hostilePathValues replace a path parameter; the raw ones are put in the URL as they are.
var hostilePathValues = []string{"\x00", "a\x00", "\x01", "\x7f", "..", "../..", "not-a-uuid", "00000000-0000-0000-0000-000000000000",
	"{6ba7b810-9dad-11d1-80b4-00c04fd430c8}", strings.Repeat("a", 5000), "é", " ", "\u202e", "\n", "-1", "9999999999999999999"}

var hostileRawPath = []string{"%2e%2e", "..", "../..", "..%2f..", "%00", "%2e", ".", "%2F", "a%2Fb", "%252e%252e", "..;", "%c0%ae%c0%ae"}

func (h *hostileRun) pick(xs []string) string { return xs[h.rnd.IntN(len(xs))] }

// jsonString encodes s as a JSON string; invalid UTF-8 is kept as raw bytes.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	if !strings.ContainsRune(s, '\uFFFD') && strings.Contains(string(b), "\\ufffd") {
		return `"` + s + `"` // invalid UTF-8, sent as is
	}
	return string(b)
}

// hostileJSON returns a raw JSON value of any type, mostly hostile.
func (h *hostileRun) hostileJSON() string {
	switch h.rnd.IntN(7) {
	case 0, 1:
		return jsonString(h.pick(hostileStrings))
	case 2, 3:
		return h.pick(hostileNumbers)
	case 4:
		return h.pick([]string{"true", "false", "null", "[]", "{}", `[null]`, `{"":""}`, `"\ud800"`, `"\u0000"`})
	case 5:
		return strings.Repeat("[", 300) + strings.Repeat("]", 300)
	default:
		return `{"a":` + jsonString(h.pick(hostileStrings)) + `}`
	}
}

// value returns a plausible raw JSON value for a schema; name is the field or parameter name.
func (h *hostileRun) value(s map[string]any, name string, depth int) any {
	s = h.resolve(s)
	if s == nil {
		return "x"
	}
	if enum, ok := s["enum"].([]any); ok && len(enum) > 0 {
		return enum[h.rnd.IntN(len(enum))]
	}
	typ := s["type"]
	if ts, ok := typ.([]any); ok {
		for _, tv := range ts {
			if tv != "null" {
				typ = tv
				break
			}
		}
	}
	switch typ {
	case "object":
		out := map[string]any{}
		props, _ := s["properties"].(map[string]any)
		req := map[string]bool{}
		if rs, ok := s["required"].([]any); ok {
			for _, r := range rs {
				req[fmt.Sprint(r)] = true
			}
		}
		for k, p := range props {
			if depth > 4 || (!req[k] && h.rnd.IntN(3) != 0) {
				continue
			}
			if k == "format" && name == "localfs" || k == "device" {
				continue // never ask for a block device to be formatted
			}
			out[k] = h.value(p.(map[string]any), k, depth+1)
		}
		return out
	case "array":
		items, _ := s["items"].(map[string]any)
		var out []any
		for i := h.rnd.IntN(3); i > 0; i-- {
			out = append(out, h.value(items, strings.TrimSuffix(name, "s"), depth+1))
		}
		if out == nil {
			out = []any{}
		}
		return out
	case "integer", "number":
		switch name {
		case "size":
			return int64(1+h.rnd.IntN(64)) << 20
		case "memory":
			return int64(64) << 20
		case "sockets", "cores", "threads":
			return 1
		case "timeout":
			return h.rnd.IntN(2)
		case "limit":
			return 1 + h.rnd.IntN(100)
		case "tail":
			return 1 + h.rnd.IntN(1000)
		case "version":
			return 3
		}
		lo, hi := 0.0, 10.0
		if v, ok := s["minimum"].(float64); ok {
			lo = v
		}
		if v, ok := s["maximum"].(float64); ok && v < lo+10 {
			hi = v
		} else {
			hi = lo + 10
		}
		return int64(lo) + h.rnd.Int64N(int64(hi-lo)+1)
	case "boolean":
		if name == "format" || name == "reuse_filesystem" {
			return false
		}
		return h.rnd.IntN(2) == 0
	}
	// strings
	switch {
	case name == "storage_id":
		return h.storage
	case name == "volume_id":
		return h.volume
	case name == "image_id":
		return h.image
	case name == "vm_id" || name == "id":
		if h.vm == "" {
			return uuid.NewString() // no hypervisor, no VM
		}
		return h.vm
	case name == "name":
		return "h" + strconv.Itoa(h.rnd.IntN(1e9))
	case name == "path":
		return filepath.Join(h.e.dir, "hpath"+strconv.Itoa(h.rnd.IntN(1e6)))
	case name == "server":
		return "127.0.0.1"
	case name == "export":
		return "/export"
	case name == "listen":
		return "127.0.0.1"
	case name == "source":
		return "default"
	case name == "mac":
		return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h.rnd.IntN(256), h.rnd.IntN(256), h.rnd.IntN(256))
	case name == "cursor" || name == "mode" || name == "model" || name == "machine_type" || name == "firmware" || name == "fs_type":
		return ""
	case s["format"] == "uuid":
		return uuid.NewString()
	}
	return "v" + strconv.Itoa(h.rnd.IntN(1000))
}

// mutateBody replaces one value somewhere in the body with a hostile one, or adds an unknown field.
func (h *hostileRun) mutateBody(v any) any {
	switch b := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(b))
		for k := range b {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if len(keys) == 0 || h.rnd.IntN(5) == 0 {
			b[h.pick([]string{"unknown", "colour", "id", "status", "version", "Name", "__proto__"})] = json.RawMessage(h.hostileJSON())
			return b
		}
		k := keys[h.rnd.IntN(len(keys))]
		if h.rnd.IntN(3) == 0 {
			b[k] = h.mutateBody(b[k])
		} else {
			b[k] = json.RawMessage(h.hostileJSON())
		}
		return b
	case []any:
		if len(b) > 0 && h.rnd.IntN(2) == 0 {
			i := h.rnd.IntN(len(b))
			b[i] = h.mutateBody(b[i])
			return b
		}
		return append(b, json.RawMessage(h.hostileJSON()))
	}
	return json.RawMessage(h.hostileJSON())
}

// hostileRequest is one request to send.
type hostileRequest struct {
	method, url, ct, token, what string
	body                         []byte
	hdr                          map[string]string
}

// build makes a request for op, valid-looking or with one hostile change.
func (h *hostileRun) build(op *hostileOp) hostileRequest {
	e := h.e
	rq := hostileRequest{method: op.method, token: e.admin, hdr: map[string]string{}}
	mutation := h.rnd.IntN(12)
	path := op.path
	query := url.Values{}
	var pathParams, queryParams []hostileParam
	for _, p := range op.params {
		switch p.in {
		case "path":
			pathParams = append(pathParams, p)
		case "query":
			queryParams = append(queryParams, p)
		}
	}
	rq.what = "valid"
	for _, p := range pathParams {
		v := fmt.Sprint(h.value(p.schema, p.name, 0))
		switch {
		case p.name == "volume_id":
			v = h.volume
		case strings.HasPrefix(op.path, "/api/v1/storages/"):
			v = h.storage
		case strings.HasPrefix(op.path, "/api/v1/volumes/"):
			v = h.volume
		case strings.HasPrefix(op.path, "/api/v1/images/"):
			v = h.image
		case strings.HasPrefix(op.path, "/api/v1/vms/"):
			if h.vm != "" {
				v = h.vm
			} else {
				v = uuid.NewString()
			}
		}
		path = strings.Replace(path, "{"+p.name+"}", url.PathEscape(v), 1)
	}
	if mutation == 0 && len(pathParams) > 0 {
		p := pathParams[h.rnd.IntN(len(pathParams))]
		if h.rnd.IntN(2) == 0 {
			v := h.pick(hostilePathValues)
			rq.what = fmt.Sprintf("path %s=%q", p.name, v)
			v = url.PathEscape(v)
			path = h.replaceParam(op, path, p.name, v)
		} else {
			v := h.pick(hostileRawPath)
			rq.what = fmt.Sprintf("raw path %s=%s", p.name, v)
			path = h.replaceParam(op, path, p.name, v)
		}
	}
	for _, p := range queryParams {
		if h.rnd.IntN(2) == 0 || p.name == "storage_id" && op.binary {
			query.Set(p.name, fmt.Sprint(h.value(p.schema, p.name, 0)))
		}
	}
	if mutation == 1 {
		name := "unknown"
		if len(queryParams) > 0 && h.rnd.IntN(4) != 0 {
			name = queryParams[h.rnd.IntN(len(queryParams))].name
		}
		v := h.pick(append(hostileStrings, hostileNumbers...))
		query.Set(name, v)
		rq.what = fmt.Sprintf("query %s=%.80q", name, v)
	}
	if mutation == 2 && h.rnd.IntN(4) == 0 {
		query.Set("pad", strings.Repeat("x", 70<<10))
		rq.what = "URL over 64 KiB"
	}
	rq.url = e.URL + path
	if len(query) > 0 {
		rq.url += "?" + query.Encode()
	}

	switch {
	case op.binary:
		rq.ct = "application/octet-stream"
		if h.rnd.IntN(3) == 0 {
			rq.body = iso()
		} else {
			rq.body = make([]byte, h.rnd.IntN(4096))
			for i := range rq.body {
				rq.body[i] = byte(h.rnd.IntN(256))
			}
		}
		if mutation == 3 {
			rq.ct = h.pick([]string{"multipart/form-data; boundary=zz", "multipart/form-data", "application/json", "", "text/plain"})
			rq.what = "content type " + rq.ct
		}
	case op.body != nil:
		v := h.value(op.body, "", 0)
		if mutation >= 3 && mutation <= 5 {
			v = h.mutateBody(v)
			rq.what = "body field"
		}
		b, err := json.Marshal(v)
		require.NoError(h.t, err)
		rq.body, rq.ct = b, "application/json"
		switch mutation {
		case 6:
			raw := []string{"", "{", "null", "[]", `"x"`, "{}", `{"a":`, "\xef\xbb\xbf{}", "\x00", "{}{}", "{} x",
				strings.Repeat("[", 10000) + strings.Repeat("]", 10000), `{"name":"` + strings.Repeat("x", hostileMaxBody) + `"}`}
			rq.body = []byte(h.pick(raw))
			rq.what = fmt.Sprintf("raw body %.40q (%d bytes)", rq.body, len(rq.body))
		case 7:
			rq.ct = h.pick([]string{"", "text/plain", "application/xml", "application/json; charset=utf-16", "multipart/form-data; boundary=x",
				"application/x-www-form-urlencoded", "application/merge-patch+json", "application/json-patch+json", "*/*", "application/json;;"})
			rq.what = "content type " + rq.ct
		}
	default:
		if mutation == 6 {
			rq.body, rq.ct = []byte(h.pick([]string{`{"delete_volumes": true}`, "{}", "x", strings.Repeat("y", hostileMaxBody+1)})), "application/json"
			rq.what = fmt.Sprintf("unexpected body %.40q", rq.body)
		}
	}
	if mutation == 8 {
		switch h.rnd.IntN(5) {
		case 0:
			rq.token = ""
		case 1, 2:
			rq.token = e.reader
		case 3:
			rq.token = h.pick([]string{"ovt_" + strings.Repeat("A", 43), "ovt_é", " ", strings.Repeat("t", 8000)})
		default:
			rq.token = ""
			rq.hdr["Authorization"] = h.pick([]string{"Basic YWRtaW46YWRtaW4=", "Bearer", "bearer  " + e.admin + "x", e.admin, "Bearer\t" + e.admin})
		}
		rq.what = "token"
	}
	if mutation == 9 {
		// Not Expect: net/http answers an unknown expectation with a plain-text 417 before any handler runs.
		rq.hdr[h.pick([]string{"Accept", "Content-Encoding", "Accept-Encoding", "X-HTTP-Method-Override", "Content-Language"})] =
			h.pick([]string{"gzip", "application/xml", "chunked", "DELETE", "*/*;q=0", "identity", "\u00e9"})
		rq.what = fmt.Sprintf("header %v", rq.hdr)
	}
	return rq
}

// replaceParam sets path parameter name of op's template to the escaped value v in the expanded path.
func (h *hostileRun) replaceParam(op *hostileOp, expanded, name, v string) string {
	tmpl := strings.Split(op.path, "/")
	parts := strings.Split(expanded, "/")
	for i, seg := range tmpl {
		if seg == "{"+name+"}" && i < len(parts) {
			parts[i] = v
		}
	}
	return strings.Join(parts, "/")
}

var problemContentType = regexp.MustCompile(`^application/problem\+json(;.*)?$`)

// send sends one request for op and records what is wrong with the answer.
func (h *hostileRun) send(op *hostileOp) {
	rq := h.build(op)
	var body io.Reader
	if rq.body != nil {
		body = bytes.NewReader(rq.body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, rq.method, rq.url, body)
	if err != nil {
		h.find("transport", op, rq, 0, []byte(err.Error()))
		return
	}
	if rq.ct != "" {
		req.Header.Set("Content-Type", rq.ct)
	}
	if rq.token != "" {
		req.Header.Set("Authorization", "Bearer "+rq.token)
	}
	for k, v := range rq.hdr {
		req.Header.Set(k, v)
	}
	res, err := h.client.Do(req)
	if err != nil {
		h.find("transport", op, rq, 0, []byte(err.Error()))
		return
	}
	if res.StatusCode == http.StatusOK && strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		// An event stream never ends by itself: its answer is its status and first bytes.
		time.AfterFunc(50*time.Millisecond, cancel)
	}
	b, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	st := res.StatusCode
	h.statuses[st]++
	if st >= 500 {
		var p struct{ Kind string }
		_ = json.Unmarshal(b, &p)
		switch {
		case !h.vms && st == http.StatusServiceUnavailable && p.Kind == "unavailable" &&
			(strings.HasPrefix(op.path, "/api/v1/vms") || op.path == "/api/v1/host" || op.path == "/api/v1/networks"):
			h.counts["503 without a hypervisor (expected)"]++
		case op.id == "createStorage" && st == http.StatusServiceUnavailable && p.Kind == "unavailable" &&
			bytes.Contains(rq.body, []byte(`"nfs"`)):
			h.counts["503 unreachable NFS server (expected)"]++
		default:
			h.find("5xx", op, rq, st, b)
		}
	}
	if !op.statuses[st] {
		h.find("undeclared status", op, rq, st, b)
	}
	if st >= 400 {
		ct := res.Header.Get("Content-Type")
		if !problemContentType.MatchString(ct) {
			h.find("not problem+json", op, rq, st, []byte(ct+": "+string(b)))
		} else {
			var p map[string]any
			if err := json.Unmarshal(b, &p); err != nil {
				h.find("problem fields", op, rq, st, b)
			} else {
				for _, f := range []string{"type", "title", "status", "detail", "instance", "kind"} {
					if p[f] == nil || p[f] == "" {
						h.find("problem fields", op, rq, st, []byte("no "+f+": "+string(b)))
						break
					}
				}
				if s, _ := p["status"].(float64); int(s) != st {
					h.find("problem fields", op, rq, st, []byte("status differs: "+string(b)))
				}
			}
		}
	}
	if st < 300 {
		mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
		if sch := op.ok[st]; sch != nil && mt == "application/json" {
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err == nil {
				err = sch.Validate(v)
			}
			if err != nil {
				h.find("2xx body", op, rq, st, []byte(err.Error()))
			}
		} else if st == http.StatusNoContent && len(b) > 0 {
			h.find("2xx body", op, rq, st, b)
		}
		if op.method == http.MethodDelete || op.id == "detachVolume" {
			h.ensureFixtures()
		}
	}
}

func (h *hostileRun) find(cat string, op *hostileOp, rq hostileRequest, status int, body []byte) {
	h.counts[cat]++
	if len(h.findings[cat]) < 8 {
		h.findings[cat] = append(h.findings[cat], fmt.Sprintf("%s %s (%s) -> %d %.300s", op.method, op.path, rq.what, status, body))
	}
}
