package refserver_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/telemetry/exporter"
	"github.com/openvair/openvair/refserver"
	"github.com/openvair/openvair/storage"
)

// measuredEnv is a server on the memory store with real localfs and the fake hypervisor, whose SDK and
// server are measured on the registry of tel.
type measuredEnv struct {
	*env
	tel *exporter.Telemetry
	hv  *fake.Hypervisor
}

func startMeasured(t *testing.T, tcfg exporter.Config) *measuredEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tel, shutdown, err := exporter.Setup(ctx, tcfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = shutdown(context.Background()) })

	dir := t.TempDir()
	lfs, err := localfs.New(driver.Config{DataDir: filepath.Join(dir, "data")})
	require.NoError(t, err)
	hv := fake.NewHypervisor()
	sys, err := openvair.Open(ctx, openvair.Config{DSN: "memory:", DataDir: filepath.Join(dir, "data"), HypervisorInstance: hv,
		StorageBackends: map[storage.Type]driver.StorageBackend{"localfs": lfs}, Logger: quietLogger(),
		Metrics: tel.Registry, TracerProvider: tel.TracerProvider})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sys.Close() })

	e := &env{t: t, dir: dir, sys: sys}
	e.admin, err = refserver.GenerateToken()
	require.NoError(t, err)
	e.reader, err = refserver.GenerateToken()
	require.NoError(t, err)
	tokens, err := refserver.NewTokens(
		refserver.Token{Name: "admin", Role: refserver.RoleAdmin, SHA256: refserver.HashToken(e.admin)},
		refserver.Token{Name: "reader", Role: refserver.RoleReader, SHA256: refserver.HashToken(e.reader)})
	require.NoError(t, err)
	h, err := refserver.New(sys, refserver.Config{Tokens: tokens, Logger: quietLogger(), Metrics: tel.Registry,
		TracerProvider: tel.TracerProvider, EventHeartbeat: 50 * time.Millisecond})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.URL = srv.URL
	return &measuredEnv{env: e, tel: tel, hv: hv}
}

// scrape reads /metrics with token and parses it.
func (e *measuredEnv) scrape(token string) map[string]*dto.MetricFamily {
	e.t.Helper()
	r := e.do("GET", refserver.MetricsPath, token, nil)
	require.Equal(e.t, 200, r.Status, "%s", r.Body)
	return parseMetrics(e.t, string(r.Body))
}

func parseMetrics(t testing.TB, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	require.NoError(t, err)
	return mfs
}

// value returns the value of the series of family name whose labels include want (summed over the
// others), and whether there is one.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
	var sum float64
	found := false
next:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum, found
}

// TestMetricsFlow runs storage, volume, image upload and a VM's life through the API, then scrapes /metrics:
// every route used, every operation kind and every driver method called has moved, labelled by route
// template, never by raw path; the inventory reports the storage and the VMs.
func TestMetricsFlow(t *testing.T) {
	e := startMeasured(t, exporter.Config{})
	st := e.localStorage("local", e.storageDir("pool"))
	vol := e.volume(st.ID, "root", 1<<30)
	img := e.image(st.ID, "installer")
	var v refserver.VM
	e.call("POST", "/api/v1/vms", vmBody("web", map[string]any{
		"disks":  []map[string]any{{"volume_id": vol.ID}},
		"cdroms": []map[string]any{{"image_id": img.ID}},
	}), 201, &v)
	vid := v.ID.String()
	e.call("POST", "/api/v1/vms/"+vid+"/start", nil, 200, nil)

	// An event stream open while the VM runs.
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, "GET", e.URL+"/api/v1/events", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.reader)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)
	running := e.scrape(e.reader)
	n, _ := value(running, "openvair_event_subscribers", nil)
	assert.Equal(t, 1.0, n, "one open event stream")
	n, _ = value(running, "openvair_vms", map[string]string{"power_state": "running"})
	assert.Equal(t, 1.0, n, "one running VM")
	cancel()
	_ = res.Body.Close()

	e.call("POST", "/api/v1/vms/"+vid+"/stop", map[string]any{"force": true}, 200, nil)
	e.call("GET", "/api/v1/vms/"+vid, nil, 200, nil)
	e.call("DELETE", "/api/v1/vms/"+vid, nil, 204, nil)
	e.do("GET", "/api/v1/vms/"+vid, e.admin, nil).problemIs(t, 404, "not_found")
	e.do("GET", "/no/such/route", e.admin, nil).problemIs(t, 404, "")
	e.sys.MonitorOnce(t.Context())

	mfs := e.scrape(e.admin)

	// Requests, by route template, method and status.
	routes := []struct {
		route, method, status string
	}{
		{"/api/v1/storages", "POST", "201"},
		{"/api/v1/volumes", "POST", "201"},
		{"/api/v1/images", "POST", "201"},
		{"/api/v1/vms", "POST", "201"},
		{"/api/v1/vms/{id}/start", "POST", "200"},
		{"/metrics", "GET", "200"},
		{"/api/v1/vms/{id}/stop", "POST", "200"},
		{"/api/v1/vms/{id}", "GET", "200"},
		{"/api/v1/vms/{id}", "DELETE", "204"},
		{"/api/v1/vms/{id}", "GET", "404"},
		{"unmatched", "GET", "404"},
	}
	for _, r := range routes {
		n, ok := value(mfs, "openvair_http_requests_total", map[string]string{"route": r.route, "method": r.method, "status": r.status})
		assert.True(t, ok && n >= 1, "%s %s %s counted (%v)", r.method, r.route, r.status, n)
		n, ok = value(mfs, "openvair_http_request_duration_seconds", map[string]string{"route": r.route, "method": r.method})
		assert.True(t, ok && n >= 1, "%s %s timed", r.method, r.route)
	}
	uuidRE := regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-`)
	for _, m := range mfs["openvair_http_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			assert.NotRegexp(t, uuidRE, l.GetValue(), "no raw path in labels")
			assert.NotContains(t, l.GetValue(), "/no/such", "no raw path in labels")
		}
	}

	// Operations, by kind and status: each kind the SDK recorded, and those of the flow.
	ops, err := e.sys.Operations.List(t.Context(), openvair.OperationListOptions{Limit: 1000})
	require.NoError(t, err)
	kinds := map[string]bool{"storage.create": true, "volume.create": true, "vm.create": true, "vm.start": true, "vm.stop": true, "vm.delete": true}
	for _, op := range ops.Items {
		kinds[op.Kind] = true
	}
	require.Greater(t, len(kinds), 6, "an image upload is an operation too")
	for kind := range kinds {
		n, ok := value(mfs, "openvair_operations_total", map[string]string{"kind": kind, "status": "succeeded"})
		assert.True(t, ok && n >= 1, "operation %s counted", kind)
		n, ok = value(mfs, "openvair_operation_duration_seconds", map[string]string{"kind": kind})
		assert.True(t, ok && n >= 1, "operation %s timed", kind)
	}

	// Driver calls, by driver, method and outcome: what the flow must have called, and every hypervisor
	// method as often as the fake driver saw it.
	for _, m := range []string{"CheckConfig", "Prepare", "CreateVolume", "WriteImage", "Status"} {
		n, ok := value(mfs, "openvair_driver_calls_total", map[string]string{"kind": "storage", "driver": "localfs", "method": m, "outcome": "ok"})
		assert.True(t, ok && n >= 1, "localfs.%s counted", m)
		n, ok = value(mfs, "openvair_driver_call_duration_seconds", map[string]string{"driver": "localfs", "method": m})
		assert.True(t, ok && n >= 1, "localfs.%s timed", m)
	}
	for _, m := range []string{"Define", "Start", "Destroy", "Undefine", "State", "States", "WatchStates", "Shutdown", "HostFacts"} {
		want := float64(e.hv.Calls(m))
		got, _ := value(mfs, "openvair_driver_calls_total", map[string]string{"kind": "hypervisor", "driver": "fake", "method": m})
		assert.Equal(t, want, got, "fake.%s: counted as often as called", m)
	}
	for _, m := range []string{"Define", "Start", "Destroy", "Undefine"} {
		assert.Positive(t, e.hv.Calls(m), "the flow called %s", m)
	}
	e.do("GET", "/api/v1/vms/"+vid+"/console", e.admin, nil) // a VM that is gone: no driver call
	_, err = e.sys.VMs.Get(t.Context(), v.ID)
	require.ErrorIs(t, err, openvair.ErrNotFound)

	// Monitor cycles and the inventory.
	n, _ = value(mfs, "openvair_monitor_cycles_total", nil)
	assert.GreaterOrEqual(t, n, 1.0)
	n, _ = value(mfs, "openvair_monitor_cycle_duration_seconds", nil)
	assert.GreaterOrEqual(t, n, 1.0)
	capacity, ok := value(mfs, "openvair_storage_capacity_bytes", map[string]string{"storage": st.ID.String(), "name": "local", "type": "localfs"})
	assert.True(t, ok && capacity > 0, "storage capacity")
	avail, ok := value(mfs, "openvair_storage_available_bytes", map[string]string{"storage": st.ID.String()})
	assert.True(t, ok && avail > 0 && avail <= capacity, "storage free space")
	n, ok = value(mfs, "openvair_vms", map[string]string{"power_state": "running"})
	assert.True(t, ok)
	assert.Zero(t, n, "the VM is gone")
	assert.Eventually(t, func() bool {
		mfs := e.scrape(e.admin)
		n, _ := value(mfs, "openvair_event_subscribers", nil)
		// The client closed the stream: 499, as logged.
		streams, _ := value(mfs, "openvair_http_requests_total", map[string]string{"route": "/api/v1/events", "method": "GET", "status": "499"})
		return n == 0 && streams == 1
	}, 5*time.Second, 20*time.Millisecond, "the event stream closed")
}

// TestMetricsAuth: /metrics needs a token of any role on the API listener; the scrape handler serves it
// without one, and nothing else.
func TestMetricsAuth(t *testing.T) {
	e := startMeasured(t, exporter.Config{})
	r := e.do("GET", refserver.MetricsPath, "", nil)
	r.problemIs(t, 401, "unauthenticated")
	assert.NotEmpty(t, r.Header.Get("WWW-Authenticate"))
	e.do("GET", refserver.MetricsPath, "not-a-token", nil).problemIs(t, 401, "unauthenticated")
	e.scrape(e.reader)
	e.scrape(e.admin)
	e.do("POST", refserver.MetricsPath, e.admin, nil).problemIs(t, 405, "")

	scrape := httptest.NewServer(e.tel.ScrapeHandler())
	defer scrape.Close()
	res, err := http.Get(scrape.URL + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Equal(t, 200, res.StatusCode)
	mfs := parseMetrics(t, string(body))
	n, ok := value(mfs, "openvair_http_requests_total", map[string]string{"route": "/metrics", "status": "401"})
	assert.True(t, ok && n == 2, "the refused scrapes are counted")
	assert.Contains(t, mfs, "go_goroutines", "the runtime's metrics")
	for _, path := range []string{"/api/v1/storages", "/", "/healthz"} {
		res, err := http.Get(scrape.URL + path)
		require.NoError(t, err)
		_ = res.Body.Close()
		assert.Equal(t, 404, res.StatusCode, "the scrape address serves only /metrics: %s", path)
	}
}

// TestMetricsDefaultRegistry: without Config.Metrics the server still serves its own metrics, and two
// servers over one registry share its series.
func TestMetricsDefaultRegistry(t *testing.T) {
	e := start(t, envOptions{})
	e.do("GET", "/healthz", "", nil)
	r := e.do("GET", refserver.MetricsPath, e.reader, nil)
	require.Equal(t, 200, r.Status)
	n, ok := value(parseMetrics(t, string(r.Body)), "openvair_http_requests_total", map[string]string{"route": "/healthz"})
	assert.True(t, ok && n == 1)

	tel, _, err := exporter.Setup(t.Context(), exporter.Config{})
	require.NoError(t, err)
	tokens, err := refserver.NewTokens(refserver.Token{Name: "a", Role: refserver.RoleAdmin, SHA256: refserver.HashToken("x")})
	require.NoError(t, err)
	for range 2 {
		_, err := refserver.New(e.sys, refserver.Config{Tokens: tokens, Metrics: tel.Registry})
		require.NoError(t, err, "a second server on the same registry")
	}
}
