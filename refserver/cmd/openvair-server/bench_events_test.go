package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkEventDelivery measures how fast a change reaches the followers of GET /api/v1/events on a real
// server process: the binary, started once as a child process with no hypervisor (-libvirt-uri none) on
// the default store (SQLite in a temporary data directory), monitors slowed to once an hour so that they
// add no changes of their own.
//
// Each sub-benchmark opens N event streams (subscribers=1, 100, 1000), all filtered to the updates of one
// storage (type=storage.updated&resource_id=<id>), over one http.Transport. Each iteration PATCHes that
// storage's description and waits until every subscriber has received the event whose version is the one
// the PATCH answered; a subscriber's latency is from just before the PATCH is sent to the moment its reader
// goroutine has read the whole message (so it includes the client's own scheduling, on the same machine).
// ns/op is therefore the time of one change delivered to all N.
//
// Metrics: p50-ns, p99-ns and max-ns of the latencies over all subscribers and iterations;
// patch-p50-ns, the median round trip of the PATCH itself; server-cpu-ns/change, the server process's
// utime+stime (from /proc/<pid>/stat, in clock ticks of 10 ms: CLK_TCK is 100 on Linux) over the timed
// loop divided by b.N. The tick makes that figure coarse over few changes: run it with -benchtime 50x or
// more. The benchmark is skipped when the binary cannot be built.
func BenchmarkEventDelivery(b *testing.B) {
	bin, err := bevBuild(b)
	if err != nil {
		b.Skipf("cannot build the server binary: %v", err)
	}
	bevRaiseNoFile(b, 2*1000+512)

	root := b.TempDir()
	dataDir := filepath.Join(root, "data")
	conf := filepath.Join(root, "openvair.toml")
	if err := os.WriteFile(conf, []byte("monitor_interval = \"1h\"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	p, token := bevStart(b, bin, dataDir, []string{"-config", conf})

	tr := &http.Transport{MaxConnsPerHost: 2048, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}
	b.Cleanup(tr.CloseIdleConnections)
	c := &bevClient{base: p.url, token: token, api: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		streams: &http.Client{Transport: tr}}

	storeDir := filepath.Join(root, "pool")
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		b.Fatal(err)
	}
	var st struct {
		ID string `json:"id"`
	}
	if code, body, err := c.json(http.MethodPost, "/api/v1/storages",
		map[string]any{"name": "bench", "type": "localfs", "localfs": map[string]any{"path": storeDir}}, &st); err != nil || code != http.StatusCreated {
		b.Fatalf("create a storage: %d %s %v", code, body, err)
	}
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			bevDeliver(b, c, p, st.ID, n)
		})
	}

	select {
	case <-p.exited:
		b.Errorf("the server exited during the benchmark\n--- server log ---\n%s", crashTail(p.logs.String(), 4000))
	default:
	}
}

// bevDeliver runs one sub-benchmark: n subscribers, b.N changes of storage id.
func bevDeliver(b *testing.B, c *bevClient, p *crashProc, storageID string, n int) {
	logFrom := len(p.logs.String())
	defer func() {
		// What the server said meanwhile besides its request logs: warnings and errors are worth a look.
		var odd []string
		for _, l := range strings.Split(p.logs.String()[logFrom:], "\n") {
			if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
				odd = append(odd, l)
			}
		}
		if len(odd) > 0 {
			b.Logf("server log: %d warning/error lines, first ones:\n%s", len(odd), strings.Join(odd[:min(len(odd), 10)], "\n"))
		} else {
			b.Logf("server log: no warning or error")
		}
	}()
	query := "type=storage.updated&resource_id=" + storageID + "&since=-1"
	subs := c.subscribeAll(b, query, n)
	defer func() {
		for _, s := range subs {
			s.close()
		}
	}()

	// One change before the timed loop: every stream is live and the paths are warm.
	if _, _, err := bevChange(c, storageID, "warm-up", subs); err != nil {
		b.Fatal(err)
	}

	lat := make([]time.Duration, 0, b.N*n)
	perSub := make([][]time.Duration, n) // each subscriber's latencies, to spot one that lags
	patches := make([]time.Duration, 0, b.N)
	pid := p.cmd.Process.Pid
	cpu0, cpuErr := bevCPUTicks(pid)
	b.ResetTimer()
	for i := range b.N {
		got, rtt, err := bevChange(c, storageID, "change "+strconv.Itoa(i), subs)
		if err != nil {
			b.Fatalf("change %d: %v", i, err)
		}
		lat = append(lat, got...)
		for j, d := range got {
			perSub[j] = append(perSub[j], d)
		}
		patches = append(patches, rtt)
	}
	b.StopTimer()
	cpu1, err := bevCPUTicks(pid)
	if cpuErr == nil {
		cpuErr = err
	}

	// The subscribers' own medians: a subscriber always last would stand out from the rest.
	medians := make([]time.Duration, n)
	worst := 0
	for j, l := range perSub {
		slices.Sort(l)
		medians[j] = bevPercentile(l, 50)
		if medians[j] > medians[worst] {
			worst = j
		}
	}
	worstMedian := medians[worst]
	slices.Sort(medians)
	b.Logf("N=%d: subscribers' median latencies: lowest %v, median %v, highest %v (subscriber %d)",
		b.N, medians[0], bevPercentile(medians, 50), worstMedian, worst)

	slices.Sort(lat)
	slices.Sort(patches)
	b.ReportMetric(float64(bevPercentile(lat, 50).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(bevPercentile(lat, 99).Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "max-ns")
	b.ReportMetric(float64(bevPercentile(patches, 50).Nanoseconds()), "patch-p50-ns")
	if cpuErr == nil {
		// utime+stime are in clock ticks; CLK_TCK (sysconf(_SC_CLK_TCK)) is 100 on Linux: 10 ms a tick.
		b.ReportMetric(float64(cpu1-cpu0)*float64(10*time.Millisecond)/float64(b.N), "server-cpu-ns/change")
	} else {
		b.Logf("no server CPU figure: %v", cpuErr)
	}
}

// bevChange PATCHes the storage's description and waits until every subscriber has received the event of
// the version the PATCH answered. It returns each subscriber's latency from just before the PATCH, and the
// PATCH's round trip.
func bevChange(c *bevClient, storageID, desc string, subs []*bevSub) ([]time.Duration, time.Duration, error) {
	body, err := json.Marshal(map[string]any{"description": desc})
	if err != nil {
		return nil, 0, err
	}
	req, err := http.NewRequest(http.MethodPatch, c.base+"/api/v1/storages/"+storageID, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	res, err := c.api.Do(req)
	if err != nil {
		return nil, 0, err
	}
	rb, err := io.ReadAll(res.Body)
	res.Body.Close()
	rtt := time.Since(t0)
	if err != nil {
		return nil, 0, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("PATCH: %d %s", res.StatusCode, rb)
	}
	var st struct {
		Version int64 `json:"version"`
	}
	if err := json.Unmarshal(rb, &st); err != nil {
		return nil, 0, fmt.Errorf("PATCH answer %s: %w", rb, err)
	}

	out := make([]time.Duration, len(subs))
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for i, s := range subs {
		for {
			var r bevRecv
			select {
			case r = <-s.got:
			case <-s.done:
				return nil, 0, fmt.Errorf("subscriber %d: the stream ended (%v) before version %d", i, s.err, st.Version)
			case <-deadline.C:
				return nil, 0, fmt.Errorf("subscriber %d of %d: no event of version %d within 30s", i, len(subs), st.Version)
			}
			if r.version < st.Version {
				continue // an earlier change (none is expected)
			}
			if r.version > st.Version {
				return nil, 0, fmt.Errorf("subscriber %d: version %d arrived, version %d never did", i, r.version, st.Version)
			}
			out[i] = r.at.Sub(t0)
			break
		}
	}
	return out, rtt, nil
}

// bevClient talks to the server: api for ordinary requests (with a timeout), streams for event streams
// (without one), both over the same transport.
type bevClient struct {
	base, token  string
	api, streams *http.Client
}

// json sends a JSON request with the admin token and decodes a 2xx answer into out.
func (c *bevClient) json(method, path string, in, out any) (int, []byte, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	res, err := c.api.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err == nil && res.StatusCode/100 == 2 && out != nil {
		err = json.Unmarshal(body, out)
	}
	return res.StatusCode, body, err
}

// bevRecv is one event a subscriber received: the entity's version, and when its message was read.
type bevRecv struct {
	version int64
	at      time.Time
}

// bevSub is one open event stream.
type bevSub struct {
	cancel context.CancelFunc
	body   io.ReadCloser
	got    chan bevRecv
	done   chan struct{}
	err    error // why the stream ended; read after done
}

// subscribeAll opens n streams with query, 32 at a time, and requires every one to answer 200.
func (c *bevClient) subscribeAll(b *testing.B, query string, n int) []*bevSub {
	b.Helper()
	subs := make([]*bevSub, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			subs[i], errs[i] = c.subscribe(query)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, s := range subs {
			if s != nil {
				s.close()
			}
		}
		b.Fatalf("open %d event streams: %v", n, err)
	}
	return subs
}

// subscribe opens one stream and reads it in the background.
func (c *bevClient) subscribe(query string) (*bevSub, error) {
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/events?"+query, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "text/event-stream")
	res, err := c.streams.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		return nil, fmt.Errorf("GET /api/v1/events?%s: %d %s", query, res.StatusCode, b)
	}
	s := &bevSub{cancel: cancel, body: res.Body, got: make(chan bevRecv, 1024), done: make(chan struct{})}
	go s.read(ctx)
	return s, nil
}

// read parses the stream: for each message, the version of its event (the first "version" of its data,
// the Event's own, which comes before the entity), stamped when the message's closing empty line is read.
func (s *bevSub) read(ctx context.Context) {
	defer close(s.done)
	defer s.body.Close()
	r := bufio.NewReaderSize(s.body, 64<<10)
	version, have := int64(0), false
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				s.err = errors.New("a line longer than 64 KiB")
			} else if ctx.Err() == nil {
				s.err = err
			}
			return
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if have {
				select {
				case s.got <- bevRecv{version: version, at: time.Now()}:
				case <-ctx.Done():
					return
				}
			}
			version, have = 0, false
		case bytes.HasPrefix(line, []byte("data:")):
			v, ok := bevVersion(line)
			if !ok {
				s.err = fmt.Errorf("no version in %q", line)
				return
			}
			version, have = v, true
		}
	}
}

// bevVersion returns the number after the first "version": of a data line.
func bevVersion(line []byte) (int64, bool) {
	const key = `"version":`
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := line[i+len(key):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	v, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	return v, err == nil
}

// close disconnects and waits for the reader.
func (s *bevSub) close() {
	s.cancel()
	<-s.done
}

// bevPercentile returns the p-th percentile of sorted (nearest rank).
func bevPercentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := (len(sorted)*p + 99) / 100 // ceil(len*p/100), 1-based
	return sorted[max(k, 1)-1]
}

// bevCPUTicks returns utime+stime of process pid, in clock ticks: fields 14 and 15 of /proc/<pid>/stat
// (the whole thread group, threads that exited included).
func bevCPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: count fields after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, b)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return utime + stime, nil
}

// bevRaiseNoFile raises this process's soft RLIMIT_NOFILE to at least want (up to the hard limit); the
// server started afterwards inherits it.
func bevRaiseNoFile(b *testing.B, want uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Logf("getrlimit: %v", err)
		return
	}
	if lim.Cur >= want {
		return
	}
	lim.Cur = min(want, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Logf("setrlimit: %v", err)
	}
	if lim.Cur < want {
		b.Logf("RLIMIT_NOFILE is %d, less than the %d the largest run wants", lim.Cur, want)
	}
}

// bevBuild builds the server binary into a directory removed when the benchmark ends.
func bevBuild(b *testing.B) (string, error) {
	dir, err := os.MkdirTemp("", "openvair-bench-bin")
	if err != nil {
		return "", err
	}
	b.Cleanup(func() { _ = os.RemoveAll(dir) })
	bin := filepath.Join(dir, "openvair-server")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// bevStart starts the binary on dataDir (no hypervisor, default store) with more arguments, in its own
// process group, and waits until its API answers; the process is killed when the benchmark ends. It
// returns the process and the admin token.
func bevStart(b *testing.B, bin, dataDir string, extraArgs []string) (*crashProc, string) {
	b.Helper()
	return crashStartWith(b, bin, dataDir, "", extraArgs, nil)
}
