package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/openvair/openvair/internal/testenv"
	"github.com/openvair/openvair/internal/testenv/loopdev"
	"github.com/openvair/openvair/internal/testenv/pg"
)

// The multi-process harness: two (or more) runs of the server binary, each with its own data directory
// (hence its own instance id and admin token), on one PostgreSQL database, with a short lease and monitor
// interval so that takeovers and recoveries happen within seconds.

const (
	mpLease    = 3 * time.Second // OPENVAIR_LEASE
	mpInterval = time.Second     // monitor_interval
)

// mpAdminDSN returns a PostgreSQL server on which each subtest creates its database: the one
// OPENVAIR_TEST_PG_DSN names, or a throwaway cluster of the calling test, stopped and removed when it ends
// (this package's TestMain does not stop pg's shared cluster).
func mpAdminDSN(t *testing.T) string {
	t.Helper()
	if os.Getenv(pg.EnvDSN) != "" {
		return pg.Admin(t)
	}
	return pg.NewCluster(t).AdminDSN()
}

// mpCluster is one database and the directories of the processes that share it.
type mpCluster struct {
	t    *testing.T
	bin  string
	dsn  string
	db   *sql.DB
	root string // absolute; data directories and storage directories live below it
	conf string // the TOML file every process reads
}

// newMPCluster creates a fresh database on adminDSN and the configuration of the processes.
func newMPCluster(t *testing.T, bin, adminDSN string) *mpCluster {
	t.Helper()
	dsn := pg.CreateDatabase(t, adminDSN)
	db := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn)))
	t.Cleanup(func() { _ = db.Close() })
	root := t.TempDir()
	conf := filepath.Join(root, "openvair.toml")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf("monitor_interval = %q\ndefault_storage = false\n", mpInterval)), 0o600))
	return &mpCluster{t: t, bin: bin, dsn: dsn, db: db, root: root, conf: conf}
}

// mpNode is one server process (restarted on the same data directory as often as a test wants).
type mpNode struct {
	c       *mpCluster
	name    string
	dataDir string

	mu    sync.Mutex
	proc  *crashProc
	token string
	past  []*crashProc // earlier runs
}

// startNode starts a process named name (its data directory is <root>/<name>).
func (c *mpCluster) startNode(name string) *mpNode {
	c.t.Helper()
	n := &mpNode{c: c, name: name, dataDir: filepath.Join(c.root, name)}
	n.start()
	if dir := os.Getenv("OPENVAIR_MULTIPROC_LOGS"); dir != "" {
		// Keep every run's log for a look after the test.
		t := c.t
		t.Cleanup(func() {
			file := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+name+".log")
			if err := os.MkdirAll(dir, 0o755); err == nil {
				_ = os.WriteFile(file, []byte(n.allLogs()), 0o644)
			}
		})
	}
	return n
}

// start starts the process and waits until its API answers.
func (n *mpNode) start() {
	n.c.t.Helper()
	p, token := crashStartWith(n.c.t, n.c.bin, n.dataDir, n.c.dsn, []string{"-config", n.c.conf},
		[]string{"OPENVAIR_LEASE=" + mpLease.String()})
	n.mu.Lock()
	if n.proc != nil {
		n.past = append(n.past, n.proc)
	}
	n.proc, n.token = p, token
	n.mu.Unlock()
}

// kill sends SIGKILL to the process group and waits for the process to exit.
func (n *mpNode) kill() {
	n.current().kill()
}

// restart kills the process (SIGKILL) and starts it again on the same data directory.
func (n *mpNode) restart() {
	n.c.t.Helper()
	n.kill()
	n.start()
}

func (n *mpNode) current() *crashProc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// base is the URL of the current run; tok its admin token.
func (n *mpNode) base() string { return n.current().url }

func (n *mpNode) tok() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.token
}

// pid is the process id of the current run (also its process group id).
func (n *mpNode) pid() int { return n.current().cmd.Process.Pid }

// logs returns the log of the current run.
func (n *mpNode) logs() string { return n.current().logs.String() }

// allLogs returns the logs of every run, oldest first.
func (n *mpNode) allLogs() string {
	n.mu.Lock()
	runs := append(append([]*crashProc(nil), n.past...), n.proc)
	n.mu.Unlock()
	var b strings.Builder
	for i, p := range runs {
		fmt.Fprintf(&b, "--- %s, run %d ---\n%s", n.name, i+1, p.logs.String())
	}
	return b.String()
}

// instanceID returns the process's identity in operations and leases (<DataDir>/instance.id).
func (n *mpNode) instanceID() string {
	n.c.t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dataDir, "instance.id"))
	require.NoError(n.c.t, err)
	id := strings.TrimSpace(string(b))
	require.NotEmpty(n.c.t, id)
	return id
}

// mpResp is an answer of the API.
type mpResp struct {
	code   int
	header http.Header
	body   []byte
}

func (r mpResp) String() string { return fmt.Sprintf("%d %s", r.code, crashTail(string(r.body), 2000)) }

// mpHTTP is the client of ordinary requests; uploads and event streams use their own, without a timeout.
var mpHTTP = &http.Client{Timeout: 30 * time.Second}

// call sends a request to the current run with the admin token and reads the whole answer.
func (n *mpNode) call(ctx context.Context, client *http.Client, method, path string, hdr map[string]string, body io.Reader) (mpResp, error) {
	req, err := http.NewRequestWithContext(ctx, method, n.base()+path, body)
	if err != nil {
		return mpResp{}, err
	}
	req.Header.Set("Authorization", "Bearer "+n.tok())
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := client.Do(req)
	if err != nil {
		return mpResp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return mpResp{code: res.StatusCode, header: res.Header, body: b}, err
}

// must sends a JSON request (body may be "") and requires an answer.
func (n *mpNode) must(t *testing.T, method, path string, hdr map[string]string, body string) mpResp {
	t.Helper()
	h := map[string]string{}
	for k, v := range hdr {
		h[k] = v
	}
	var r io.Reader
	if body != "" {
		h["Content-Type"] = "application/json"
		r = strings.NewReader(body)
	}
	res, err := n.call(context.Background(), mpHTTP, method, path, h, r)
	require.NoError(t, err, "%s %s on %s", method, path, n.name)
	return res
}

// getJSON GETs path, requires want, and decodes the answer into out.
func (n *mpNode) getJSON(t *testing.T, path string, want int, out any) {
	t.Helper()
	res := n.must(t, http.MethodGet, path, nil, "")
	require.Equal(t, want, res.code, "GET %s on %s: %s", path, n.name, res)
	if out != nil {
		require.NoError(t, json.Unmarshal(res.body, out), "GET %s: %s", path, res.body)
	}
}

// createStorage creates a LocalFS storage at dir through n and returns its id.
func (n *mpNode) createStorage(t *testing.T, name, dir string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"name": name, "type": "localfs", "localfs": map[string]any{"path": dir}})
	require.NoError(t, err)
	res := n.must(t, http.MethodPost, "/api/v1/storages", nil, string(b))
	require.Equal(t, http.StatusCreated, res.code, "create storage %s: %s", name, res)
	var st crashItem
	require.NoError(t, json.Unmarshal(res.body, &st))
	require.Equal(t, "available", st.Status, "%s", res.body)
	return st.ID
}

// createVolume creates a raw volume through n and returns it.
func (n *mpNode) createVolume(t *testing.T, name, storageID string, size int64) crashItem {
	t.Helper()
	b, err := json.Marshal(map[string]any{"name": name, "storage_id": storageID, "format": "raw", "size": size})
	require.NoError(t, err)
	res := n.must(t, http.MethodPost, "/api/v1/volumes", nil, string(b))
	require.Equal(t, http.StatusCreated, res.code, "create volume %s: %s", name, res)
	var v crashItem
	require.NoError(t, json.Unmarshal(res.body, &v))
	return v
}

// mpOp is the part of an operation the tests read.
type mpOp struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`
	TargetID   string     `json:"target_id"`
	Status     string     `json:"status"`
	Owner      string     `json:"owner"`
	RequestID  string     `json:"request_id"`
	LeaseUntil *time.Time `json:"lease_until"`
	FinishedAt *time.Time `json:"finished_at"`
	Error      *struct {
		Kind   string `json:"kind"`
		Detail string `json:"detail"`
	} `json:"error"`
	Result *struct {
		ID string `json:"id"`
	} `json:"result"`
}

// ops lists operations with a query such as "request_id=x" or "status=running".
func (n *mpNode) ops(t *testing.T, query string) []mpOp {
	t.Helper()
	var page struct {
		Items []mpOp `json:"items"`
	}
	n.getJSON(t, "/api/v1/operations?limit=1000&"+query, http.StatusOK, &page)
	return page.Items
}

// op reads one operation.
func (n *mpNode) op(t *testing.T, id string) mpOp {
	t.Helper()
	var op mpOp
	n.getJSON(t, "/api/v1/operations/"+id, http.StatusOK, &op)
	return op
}

// waitOpByRequest waits until the request named rid has an operation that satisfies ok, and returns it.
func (n *mpNode) waitOpByRequest(t *testing.T, rid string, timeout time.Duration, ok func(mpOp) bool) mpOp {
	t.Helper()
	var last []mpOp
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		last = n.ops(t, "request_id="+url.QueryEscape(rid))
		for _, op := range last {
			if ok(op) {
				return op
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no operation of request %s as wanted after %s (seen on %s: %+v)", rid, timeout, n.name, last)
	return mpOp{}
}

// monitorLease reads the monitors' lease: its holder ("" when nobody holds it) and until when.
func (c *mpCluster) monitorLease(t *testing.T) (string, time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var holder string
	var until int64
	err := c.db.QueryRowContext(ctx, "SELECT holder, until FROM leases WHERE name = 'monitors'").Scan(&holder, &until)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}
	}
	require.NoError(t, err, "read the monitors lease")
	return holder, time.Unix(0, until)
}

// waitLeaseHolder waits until the monitors lease is held by want and returns when it saw it first.
func (c *mpCluster) waitLeaseHolder(t *testing.T, want string, timeout time.Duration) time.Time {
	t.Helper()
	end := time.Now().Add(timeout)
	var holder string
	for time.Now().Before(end) {
		if holder, _ = c.monitorLease(t); holder == want {
			return time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the monitors lease is held by %q, not %q, after %s", holder, want, timeout)
	return time.Time{}
}

// eventIDs returns the ids of the events after from up to to, in order.
func (c *mpCluster) eventIDs(t *testing.T, from, to int64) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := c.db.QueryContext(ctx, "SELECT id FROM events WHERE id > $1 AND id <= $2 ORDER BY id", from, to)
	require.NoError(t, err)
	defer rows.Close()
	ids := []int64{}
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	return ids
}

// lastEventID returns the greatest event id committed so far.
func (c *mpCluster) lastEventID(t *testing.T) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var id int64
	require.NoError(t, c.db.QueryRowContext(ctx, "SELECT COALESCE(max(id), 0) FROM events").Scan(&id))
	return id
}

// mpStoredEvent is an event as stored.
type mpStoredEvent struct {
	ID          int64
	Type        string
	OperationID string
	Data        string
}

// eventsOf returns the stored events about one entity, in order.
func (c *mpCluster) eventsOf(t *testing.T, resourceID string) []mpStoredEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := c.db.QueryContext(ctx, "SELECT id, type, operation_id::text, COALESCE(data, '') FROM events WHERE resource_id = $1 ORDER BY id", resourceID)
	require.NoError(t, err)
	defer rows.Close()
	var out []mpStoredEvent
	for rows.Next() {
		var e mpStoredEvent
		require.NoError(t, rows.Scan(&e.ID, &e.Type, &e.OperationID, &e.Data))
		out = append(out, e)
	}
	require.NoError(t, rows.Err())
	return out
}

// mpEvent is one message of an event stream.
type mpEvent struct {
	ID   int64
	Type string
	Data json.RawMessage
	At   time.Time // when the client read it
}

// mpStream is an open GET /api/v1/events.
type mpStream struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	events []mpEvent
	err    error // why the stream ended (nil while it runs, or when closed by the test)
}

// subscribe opens the event stream of n with query (e.g. "since=12") and, when lastEventID is not empty,
// a Last-Event-ID header. It requires the 200 answer; messages are collected in the background.
func (n *mpNode) subscribe(t *testing.T, query, lastEventID string) *mpStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.base()+"/api/v1/events?"+query, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+n.tok())
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	res, err := (&http.Client{}).Do(req)
	if err != nil {
		cancel()
		require.NoError(t, err, "GET /api/v1/events on %s", n.name)
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		t.Fatalf("GET /api/v1/events?%s on %s: %d %s", query, n.name, res.StatusCode, b)
	}
	s := &mpStream{cancel: cancel, done: make(chan struct{})}
	go s.read(res.Body)
	t.Cleanup(s.close)
	return s
}

// read parses Server-Sent Events until the body ends.
func (s *mpStream) read(body io.ReadCloser) {
	defer close(s.done)
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var cur mpEvent
	var haveID bool
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if haveID {
				cur.At = time.Now()
				s.mu.Lock()
				s.events = append(s.events, cur)
				s.mu.Unlock()
			}
			cur, haveID = mpEvent{}, false
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id:"):
			id, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "id:")), 10, 64)
			if err != nil {
				s.fail(fmt.Errorf("bad id line %q", line))
				return
			}
			cur.ID, haveID = id, true
		case strings.HasPrefix(line, "event:"):
			cur.Type = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			cur.Data = json.RawMessage(strings.TrimSpace(strings.TrimPrefix(line, "data:")))
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) {
		s.fail(err)
		return
	}
	s.fail(io.EOF)
}

func (s *mpStream) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// close ends the stream (the client goes away) and waits for the reader.
func (s *mpStream) close() {
	s.cancel()
	<-s.done
}

// snapshot returns the messages received so far and the end of the stream, if it ended.
func (s *mpStream) snapshot() ([]mpEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mpEvent(nil), s.events...), s.err
}

// waitFor waits until a received message satisfies ok and returns it.
func (s *mpStream) waitFor(t *testing.T, timeout time.Duration, what string, ok func(mpEvent) bool) mpEvent {
	t.Helper()
	end := time.Now().Add(timeout)
	for {
		evs, err := s.snapshot()
		for _, e := range evs {
			if ok(e) {
				return e
			}
		}
		select {
		case <-s.done:
			t.Fatalf("the event stream ended (%v) before %s; got %d messages", err, what, len(evs))
		default:
		}
		if time.Now().After(end) {
			t.Fatalf("no %s within %s; got %d messages", what, timeout, len(evs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mpSlowBody streams an image through a pipe: chunks of 64 KiB of seeded random bytes (the first 64 bytes
// zero, so the content is raw) every 50 ms, until finish or abort is called. It hashes what it sends.
type mpSlowBody struct {
	r      *io.PipeReader
	w      *io.PipeWriter
	finish chan struct{}
	done   chan struct{}

	mu   sync.Mutex
	sent int64
	sum  string
	err  error
}

const (
	mpChunk      = 64 << 10
	mpChunkPause = 50 * time.Millisecond
)

func newMPSlowBody(seed uint64) *mpSlowBody {
	r, w := io.Pipe()
	b := &mpSlowBody{r: r, w: w, finish: make(chan struct{}), done: make(chan struct{})}
	go b.run(seed)
	return b
}

func (b *mpSlowBody) run(seed uint64) {
	defer close(b.done)
	rng := rand.New(rand.NewPCG(seed, 1))
	h := sha256.New()
	chunk := make([]byte, mpChunk)
	for first := true; ; first = false {
		for i := range chunk {
			chunk[i] = byte(rng.Uint32())
		}
		if first {
			clear(chunk[:64])
		}
		if _, err := b.w.Write(chunk); err != nil {
			b.mu.Lock()
			b.err = err
			b.mu.Unlock()
			return
		}
		h.Write(chunk)
		b.mu.Lock()
		b.sent += mpChunk
		b.mu.Unlock()
		select {
		case <-b.finish:
			b.mu.Lock()
			b.sum = hex.EncodeToString(h.Sum(nil))
			b.mu.Unlock()
			_ = b.w.Close()
			return
		case <-time.After(mpChunkPause):
		}
	}
}

// bytesSent returns how much was written into the request so far.
func (b *mpSlowBody) bytesSent() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sent
}

// end stops the stream after the current chunk and returns its length and SHA-256.
func (b *mpSlowBody) end() (int64, string, error) {
	close(b.finish)
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sent, b.sum, b.err
}

// abort breaks the stream (after the server died).
func (b *mpSlowBody) abort() {
	_ = b.w.CloseWithError(errors.New("aborted by the test"))
	_ = b.r.Close()
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
	}
}

// upload POSTs body as an image named name into storageID through n, in the background; the answer (or
// the error) arrives on the returned channel.
func (n *mpNode) upload(storageID, name, requestID string, body io.Reader) <-chan mpUploadResult {
	out := make(chan mpUploadResult, 1)
	q := url.Values{"storage_id": {storageID}, "name": {name}}
	go func() {
		res, err := n.call(context.Background(), &http.Client{}, http.MethodPost, "/api/v1/images?"+q.Encode(),
			map[string]string{"Content-Type": "application/octet-stream", "X-Request-Id": requestID}, body)
		out <- mpUploadResult{res, err}
	}()
	return out
}

type mpUploadResult struct {
	res mpResp
	err error
}

// mpFS is an ext4 filesystem on a loop device, mounted for the test, that the test can freeze.
type mpFS struct {
	dir    string
	mu     sync.Mutex
	frozen bool
}

// newMPFS makes a 256 MiB ext4 filesystem on a loop device and mounts it; it is unmounted (and the device
// detached) when the test ends.
func newMPFS(t *testing.T) *mpFS {
	t.Helper()
	testenv.RequireRoot(t)
	mkfs := testenv.LookPath(t, "mkfs.ext4")
	mount := testenv.LookPath(t, "mount")
	umount := testenv.LookPath(t, "umount")
	testenv.LookPath(t, "fsfreeze")
	dir := filepath.Join(t.TempDir(), "mnt")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	dev := loopdev.New(t, 256<<20)
	mpRun(t, mkfs, "-q", "-F", dev)
	mpRun(t, mount, dev, dir)
	t.Cleanup(func() {
		if out, err := exec.Command(umount, dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v %s; unmounting lazily", dir, err, out)
			_ = exec.Command(umount, "-l", dir).Run()
		}
	})
	return &mpFS{dir: dir}
}

// freeze freezes the filesystem (fsfreeze -f): writes to it block in the kernel until thaw. It is thawed
// when the test ends in any case.
func (f *mpFS) freeze(t *testing.T) {
	t.Helper()
	mpRun(t, "fsfreeze", "-f", f.dir)
	f.mu.Lock()
	f.frozen = true
	f.mu.Unlock()
	t.Cleanup(f.thaw)
}

// thaw unfreezes the filesystem; it may be called more than once.
func (f *mpFS) thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozen {
		_ = exec.Command("fsfreeze", "-u", f.dir).Run()
		f.frozen = false
	}
}

// mpRun runs a command and requires it to succeed.
func mpRun(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	require.NoError(t, err, "%s %v: %s", name, args, out)
}

// mpFrozenThreads returns the threads of process pid that wait for a frozen filesystem (in the kernel's
// percpu_rwsem_wait, where sb_start_write sleeps), with the top of their kernel stacks.
func mpFrozenThreads(pid int) []string {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	var out []string
	for _, task := range tasks {
		wchan, err := os.ReadFile(filepath.Join(task, "wchan"))
		if err != nil || !strings.Contains(string(wchan), "percpu_rwsem_wait") {
			continue
		}
		stack, _ := os.ReadFile(filepath.Join(task, "stack"))
		var frames []string
		for _, l := range strings.Split(strings.TrimSpace(string(stack)), "\n") {
			if f := strings.Fields(l); len(f) > 1 && len(frames) < 4 {
				frames = append(frames, strings.Split(f[1], "+")[0])
			}
		}
		out = append(out, filepath.Base(task)+": "+strings.Join(frames, " < "))
	}
	return out
}

// signalKill sends SIGKILL to the process group of n's current run without waiting (a thread blocked on a
// frozen filesystem keeps the process until it is thawed).
func (n *mpNode) signalKill() {
	_ = syscall.Kill(-n.pid(), syscall.SIGKILL)
}

// waitExit waits for n's current run to exit after signalKill and records its log.
func (n *mpNode) waitExit(t *testing.T, timeout time.Duration) {
	t.Helper()
	p := n.current()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s after SIGKILL", n.name, timeout)
	}
}

// mpExists reports whether path exists.
func mpExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
