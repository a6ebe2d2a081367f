package refserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/internal/event"
	"github.com/openvair/openvair/refserver"
	"github.com/openvair/openvair/storage"
)

// memEnv is a server over a System on the memory store with a fake hypervisor, served by httptest.
func memEnv(t *testing.T, cfg refserver.Config) *env {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sys, err := openvair.Open(ctx, openvair.Config{DSN: "memory:", DataDir: dir, HypervisorInstance: fake.NewHypervisor(),
		Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sys.Close() })
	require.NotNil(t, sys.Events, "the System follows its event log")
	e := &env{t: t, dir: dir, sys: sys}
	e.admin, err = refserver.GenerateToken()
	require.NoError(t, err)
	e.reader, err = refserver.GenerateToken()
	require.NoError(t, err)
	cfg.Tokens, err = refserver.NewTokens(
		refserver.Token{Name: "admin", Role: refserver.RoleAdmin, SHA256: refserver.HashToken(e.admin)},
		refserver.Token{Name: "reader", Role: refserver.RoleReader, SHA256: refserver.HashToken(e.reader)})
	require.NoError(t, err)
	cfg.Logger = quietLogger()
	h, err := refserver.New(sys, cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.URL = srv.URL
	return e
}

// sseMessage is one message of an event stream.
type sseMessage struct {
	ID    string
	Event string
	Data  string
}

// sseStream reads an event stream in the background.
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	cancel context.CancelFunc
	msgs   chan sseMessage
	mu     sync.Mutex
	pings  int
	ended  chan struct{}
}

// openStream GETs /api/v1/events?query with the token and headers (name, value pairs) and requires 200.
func (e *env) openStream(t *testing.T, query, token string, hdr ...string) *sseStream {
	t.Helper()
	res, cancel := e.getStream(t, query, token, hdr...)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	s := &sseStream{t: t, resp: res, cancel: cancel, msgs: make(chan sseMessage, 1000), ended: make(chan struct{})}
	go s.read()
	t.Cleanup(s.close)
	return s
}

// getStream sends the request and returns the response as it comes (the body is the stream).
func (e *env) getStream(t *testing.T, query, token string, hdr ...string) (*http.Response, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.URL+"/api/v1/events?"+query, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	return res, cancel
}

func (s *sseStream) read() {
	defer close(s.ended)
	defer close(s.msgs)
	sc := bufio.NewScanner(s.resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var m sseMessage
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if m != (sseMessage{}) {
				s.msgs <- m
			}
			m = sseMessage{}
		case strings.HasPrefix(line, ":"):
			if strings.TrimSpace(line[1:]) == "ping" {
				s.mu.Lock()
				s.pings++
				s.mu.Unlock()
			}
		case strings.HasPrefix(line, "id: "):
			m.ID = line[4:]
		case strings.HasPrefix(line, "event: "):
			m.Event = line[7:]
		case strings.HasPrefix(line, "data: "):
			m.Data += line[6:]
		default:
			s.t.Errorf("unexpected line in the stream: %q", line)
		}
	}
}

// close disconnects.
func (s *sseStream) close() {
	s.cancel()
	_ = s.resp.Body.Close()
	<-s.ended
}

func (s *sseStream) pingCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pings
}

// next returns the next message, failing after a while.
func (s *sseStream) next() sseMessage {
	s.t.Helper()
	select {
	case m, ok := <-s.msgs:
		require.True(s.t, ok, "the stream ended")
		return m
	case <-time.After(10 * time.Second):
		s.t.Fatal("no event within 10 s")
	}
	return sseMessage{}
}

// wireEvent is the data of a message as a client decodes it.
type wireEvent struct {
	ID          int64           `json:"id"`
	Type        string          `json:"type"`
	Resource    string          `json:"resource"`
	ResourceID  uuid.UUID       `json:"resource_id"`
	Version     int64           `json:"version"`
	OperationID *uuid.UUID      `json:"operation_id"`
	RequestID   string          `json:"request_id"`
	Requester   string          `json:"requester"`
	Time        time.Time       `json:"time"`
	Data        json.RawMessage `json:"data"`
}

// until reads messages until it has one with id last or greater (requiring each to be consistent), and
// returns them decoded.
func (s *sseStream) until(last int64) []wireEvent {
	s.t.Helper()
	var out []wireEvent
	for {
		m := s.next()
		var ev wireEvent
		dec := json.NewDecoder(strings.NewReader(m.Data))
		dec.DisallowUnknownFields()
		require.NoError(s.t, dec.Decode(&ev), "data: %s", m.Data)
		assert.Equal(s.t, strconv.FormatInt(ev.ID, 10), m.ID, "the message id is the event id")
		assert.Equal(s.t, ev.Type, m.Event, "the message event is the event type")
		out = append(out, ev)
		if ev.ID >= last {
			return out
		}
	}
}

// quiet requires that no message arrives for a moment.
func (s *sseStream) quiet() {
	s.t.Helper()
	select {
	case m, ok := <-s.msgs:
		if ok {
			s.t.Fatalf("unexpected message %+v", m)
		}
	case <-time.After(150 * time.Millisecond):
	}
}

// logAfter returns the events of the System's log after id.
func logAfter(t *testing.T, sys *openvair.System, after int64) []event.Event {
	t.Helper()
	var out []event.Event
	for {
		page, err := sys.Store.Events().After(context.Background(), after, 500)
		require.NoError(t, err)
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].ID
	}
}

func lastID(t *testing.T, sys *openvair.System) int64 {
	t.Helper()
	last, err := sys.Events.Last(context.Background())
	require.NoError(t, err)
	return last
}

func ids[T any](xs []T, id func(T) int64) []int64 {
	out := make([]int64, len(xs))
	for i, x := range xs {
		out[i] = id(x)
	}
	return out
}

func apiID(e wireEvent) int64   { return e.ID }
func logID(e event.Event) int64 { return e.ID }

// TestEventsSSE: a client follows the stream while volumes and a storage are created, edited and deleted
// through the API, disconnects, misses more changes, reconnects with Last-Event-ID and has then received
// every event of the log exactly once, each with the entity as the REST API shows it.
func TestEventsSSE(t *testing.T) {
	e := memEnv(t, refserver.Config{})
	start := lastID(t, e.sys)
	s := e.openStream(t, "", e.admin)

	st := e.localStorage("events", e.storageDir("events"))
	v := e.volume(st.ID, "disk1", 1<<20)
	var edited refserver.Volume
	e.call("PATCH", "/api/v1/volumes/"+v.ID.String(), map[string]any{"description": "edited"}, 200, &edited)
	v2 := e.volume(st.ID, "disk2", 1<<20)
	e.call("DELETE", "/api/v1/volumes/"+v.ID.String(), nil, 204, nil)

	log1 := logAfter(t, e.sys, start)
	require.NotEmpty(t, log1)
	got1 := s.until(log1[len(log1)-1].ID)
	require.Equal(t, ids(log1, logID), ids(got1, apiID), "every event of the log, once, in order")
	for i, ev := range got1 {
		assert.Equal(t, log1[i].Type, ev.Type)
		assert.Equal(t, log1[i].ResourceID, ev.ResourceID)
		assert.Equal(t, log1[i].Version, ev.Version)
		assert.Equal(t, "admin", ev.Requester, "event %d", ev.ID)
		assert.NotEmpty(t, ev.RequestID, "event %d", ev.ID)
		if ev.Resource != "operation" {
			assert.NotNil(t, ev.OperationID, "event %d: made by an operation", ev.ID)
		}
	}
	// The volume's events, with the volume as GET shows it.
	var types []string
	var lastEdit wireEvent
	for _, ev := range got1 {
		if ev.ResourceID == v.ID {
			types = append(types, ev.Type)
			if ev.Type == "volume.updated" {
				lastEdit = ev
			}
		}
	}
	assert.Equal(t, "volume.created", types[0])
	assert.Equal(t, "volume.deleted", types[len(types)-1])
	assert.Contains(t, types, "volume.updated")
	var fromEvent refserver.Volume
	require.NoError(t, json.Unmarshal(lastEdit.Data, &fromEvent))
	assert.Equal(t, v.ID, fromEvent.ID)
	assert.Equal(t, st.ID, fromEvent.StorageID)
	assert.NotNil(t, fromEvent.Attachments, "attachments: [] as GET shows them")
	for _, ev := range got1 {
		if ev.Type == "volume.updated" && ev.ResourceID == v.ID && ev.Version == edited.Version {
			var at refserver.Volume
			require.NoError(t, json.Unmarshal(ev.Data, &at))
			assert.Equal(t, edited, at, "the event's volume is the PATCH answer")
		}
		if ev.Type == "volume.deleted" {
			assert.Equal(t, "null", string(ev.Data), "a delete has no entity")
		}
	}

	// Disconnect, change more, reconnect with the last id received.
	s.close()
	e.call("PATCH", "/api/v1/volumes/"+v2.ID.String(), map[string]any{"name": "disk2b"}, 200, nil)
	e.call("DELETE", "/api/v1/volumes/"+v2.ID.String(), nil, 204, nil)
	e.call("DELETE", "/api/v1/storages/"+st.ID.String(), nil, 204, nil)
	resumeFrom := got1[len(got1)-1].ID
	s2 := e.openStream(t, "since=0", e.admin, "Last-Event-ID", strconv.FormatInt(resumeFrom, 10)) // the header wins
	all := logAfter(t, e.sys, start)
	got2 := s2.until(all[len(all)-1].ID)
	require.Equal(t, ids(all, logID), append(ids(got1, apiID), ids(got2, apiID)...), "every event exactly once across the reconnection")
	assert.Contains(t, ids(got2, func(ev wireEvent) int64 {
		if ev.Type == "storage.deleted" && ev.ResourceID == st.ID {
			return 1
		}
		return 0
	}), int64(1), "the storage's delete is in the stream")
	s2.quiet()

	// Live again after the catch-up.
	st2 := e.localStorage("again", e.storageDir("again"))
	more := logAfter(t, e.sys, all[len(all)-1].ID)
	got3 := s2.until(more[len(more)-1].ID)
	assert.Equal(t, ids(more, logID), ids(got3, apiID))
	var created refserver.Storage
	for _, ev := range got3 {
		if ev.Type == "storage.created" {
			require.NoError(t, json.Unmarshal(ev.Data, &created))
		}
	}
	assert.Equal(t, st2.ID, created.ID)
}

// TestEventsSSEGone: a resume from below the pruned mark, or from an id the server never handed out, is
// 410 with a problem of kind gone; from the mark itself it streams.
func TestEventsSSEGone(t *testing.T) {
	e := memEnv(t, refserver.Config{})
	st := e.localStorage("gone", e.storageDir("gone"))
	e.volume(st.ID, "d", 1<<20)
	last := lastID(t, e.sys)
	require.Greater(t, last, int64(2))
	pruned, err := e.sys.Store.Events().Prune(context.Background(), time.Now().Add(time.Hour)) // everything so far
	require.NoError(t, err)
	require.Equal(t, last, pruned)

	for _, tc := range []struct {
		name, query string
		hdr         []string
		status      int
	}{
		{"since 0", "since=0", nil, 410},
		{"since below the mark", "since=" + strconv.FormatInt(last-1, 10), nil, 410},
		{"Last-Event-ID below the mark", "since=" + strconv.FormatInt(last, 10), []string{"Last-Event-ID", "1"}, 410},
		{"beyond the last id", "since=" + strconv.FormatInt(last+100, 10), nil, 410},
		{"at the mark", "since=" + strconv.FormatInt(last, 10), nil, 200},
		{"from now", "", nil, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.status == 200 {
				s := e.openStream(t, tc.query, e.admin, tc.hdr...)
				s.quiet()
				return
			}
			r := e.do("GET", "/api/v1/events?"+tc.query, e.admin, nil, tc.hdr...)
			r.problemIs(t, http.StatusGone, "gone")
		})
	}
}

// TestEventsSSEFilters: resource, resource_id and type select events, from the log (since) and live;
// malformed filters and ids are 422.
func TestEventsSSEFilters(t *testing.T) {
	e := memEnv(t, refserver.Config{})
	start := lastID(t, e.sys)
	st := e.localStorage("filters", e.storageDir("filters"))
	v1 := e.volume(st.ID, "a", 1<<20)
	v2 := e.volume(st.ID, "b", 1<<20)
	e.call("PATCH", "/api/v1/volumes/"+v1.ID.String(), map[string]any{"description": "x"}, 200, nil)
	e.call("DELETE", "/api/v1/volumes/"+v2.ID.String(), nil, 204, nil)

	for _, tc := range []struct {
		name  string
		query url.Values
		f     event.Filter
	}{
		{"resource", url.Values{"resource": {"volume"}}, event.Filter{Resource: "volume"}},
		{"resource id", url.Values{"resource_id": {v1.ID.String()}}, event.Filter{ResourceID: v1.ID}},
		{"types", url.Values{"type": {"volume.created, volume.deleted"}}, event.Filter{Types: []string{"volume.created", "volume.deleted"}}},
		{"storage created", url.Values{"resource": {"storage"}, "type": {"storage.created"}}, event.Filter{Resource: "storage", Types: []string{"storage.created"}}},
		{"operations", url.Values{"resource": {"operation"}}, event.Filter{Resource: "operation"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want []int64
			for _, ev := range logAfter(t, e.sys, start) {
				if tc.f.Match(&ev) {
					want = append(want, ev.ID)
				}
			}
			require.NotEmpty(t, want)
			q := tc.query
			q.Set("since", strconv.FormatInt(start, 10))
			s := e.openStream(t, q.Encode(), e.admin)
			got := s.until(want[len(want)-1])
			assert.Equal(t, want, ids(got, apiID))
			s.quiet()

			// Live: one more of everything; the stream shows what matches.
			before := lastID(t, e.sys)
			v := e.volume(st.ID, "live-"+strings.ReplaceAll(tc.name, " ", "-"), 1<<20)
			e.call("DELETE", "/api/v1/volumes/"+v.ID.String(), nil, 204, nil)
			want = nil
			for _, ev := range logAfter(t, e.sys, before) {
				if tc.f.Match(&ev) {
					want = append(want, ev.ID)
				}
			}
			if len(want) > 0 {
				assert.Equal(t, want, ids(s.until(want[len(want)-1]), apiID))
			}
			s.quiet()
		})
	}

	for _, tc := range []struct {
		name, query string
		hdr         []string
		location    string
	}{
		{"unknown type", "type=volume.exploded", nil, "query.type"},
		{"unknown resource in type", "type=disk.created", nil, "query.type"},
		{"unknown resource", "resource=disk", nil, "query.resource"},
		{"bad resource id", "resource_id=nope", nil, "query.resource_id"},
		{"bad since", "since=abc", nil, "query.since"},
		{"negative since", "since=-2", nil, "query.since"},
		{"bad Last-Event-ID", "", []string{"Last-Event-ID", "x"}, "header.Last-Event-ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := e.do("GET", "/api/v1/events?"+tc.query, e.admin, nil, tc.hdr...).problemIs(t, 422, "invalid")
			require.NotEmpty(t, p.Errors)
			assert.Equal(t, tc.location, p.Errors[0].Location)
		})
	}
}

// TestEventsSSEReader: a reader token may follow the stream; no token is 401.
func TestEventsSSEReader(t *testing.T) {
	e := memEnv(t, refserver.Config{})
	s := e.openStream(t, "", e.reader)
	e.localStorage("reader", e.storageDir("reader"))
	all := logAfter(t, e.sys, 0)
	got := s.until(all[len(all)-1].ID)
	assert.NotEmpty(t, got)
	e.do("GET", "/api/v1/events", "", nil).problemIs(t, 401, "unauthenticated")
}

// TestEventsSSEHeartbeatAndDeadline: an idle stream gets a comment at every heartbeat, and outlives the
// server's request deadline (read and write): events still arrive after it.
func TestEventsSSEHeartbeatAndDeadline(t *testing.T) {
	e := memEnv(t, refserver.Config{EventHeartbeat: 50 * time.Millisecond, RequestTimeout: 300 * time.Millisecond})
	s := e.openStream(t, "", e.admin)
	time.Sleep(time.Second)
	assert.GreaterOrEqual(t, s.pingCount(), 5, "pings every 50 ms while idle")
	before := lastID(t, e.sys)
	// The change is made through the SDK: a request would have the 300 ms deadline too, which a loaded
	// machine can miss; what is tested is that the stream outlives it.
	_, err := e.sys.Storages.Create(t.Context(), storage.CreateRequest{Name: "late", Type: "localfs",
		Config: map[string]string{"path": e.storageDir("late")}})
	require.NoError(t, err)
	want := ids(logAfter(t, e.sys, before), logID)
	assert.Equal(t, want, ids(s.until(want[len(want)-1]), apiID), "the stream is alive after the request deadline")
}

// TestEventsSSEShutdown: http.Server.Shutdown ends open streams at once instead of waiting for them.
func TestEventsSSEShutdown(t *testing.T) {
	e := memEnv(t, refserver.Config{})
	tokens, err := refserver.NewTokens(refserver.Token{Name: "admin", Role: refserver.RoleAdmin, SHA256: refserver.HashToken(e.admin)})
	require.NoError(t, err)
	h, err := refserver.New(e.sys, refserver.Config{Tokens: tokens, Logger: quietLogger()})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	e2 := &env{t: t, URL: "http://" + ln.Addr().String(), admin: e.admin, sys: e.sys, dir: e.dir}
	streams := []*sseStream{e2.openStream(t, "", e.admin), e2.openStream(t, "since=0", e.admin)}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	require.NoError(t, srv.Shutdown(ctx), "Shutdown returns once the streams have ended")
	assert.Less(t, time.Since(began), 3*time.Second)
	require.ErrorIs(t, <-served, http.ErrServerClosed)
	for _, s := range streams {
		select {
		case <-s.ended:
		case <-time.After(5 * time.Second):
			t.Fatal("the stream did not end")
		}
	}
}

// TestEventsSSEVMNoPassword: a VM's events show it as GET does: never its graphics password.
func TestEventsSSEVMNoPassword(t *testing.T) {
	e := memEnv(t, refserver.Config{})
	s := e.openStream(t, "resource=vm", e.admin)
	const secret = "s3cr3t"
	var created refserver.VM
	e.call("POST", "/api/v1/vms", map[string]any{"name": "web", "cpu": map[string]any{"sockets": 1, "cores": 1, "threads": 1},
		"memory": 64 << 20, "graphics": map[string]any{"type": "vnc", "password": secret}}, 201, &created)
	var got refserver.VM
	e.call("GET", "/api/v1/vms/"+created.ID.String(), nil, 200, &got)
	var want []int64
	for _, ev := range logAfter(t, e.sys, 0) {
		if ev.Resource == "vm" {
			want = append(want, ev.ID)
		}
	}
	require.NotEmpty(t, want)
	evs := s.until(want[len(want)-1])
	assert.Equal(t, want, ids(evs, apiID))
	require.NotEmpty(t, evs)
	for _, ev := range evs {
		assert.NotContains(t, string(ev.Data), secret)
		assert.NotContains(t, strings.ToLower(string(ev.Data)), `"password"`)
	}
	var fromEvent refserver.VM
	require.NoError(t, json.Unmarshal(evs[len(evs)-1].Data, &fromEvent))
	assert.Equal(t, got.ID, fromEvent.ID)
	assert.Equal(t, got.Graphics.Type, fromEvent.Graphics.Type)
	assert.Equal(t, got.Version, fromEvent.Version)
}
