package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMetricsListenAndStdoutTraces runs the binary with a scrape address and the stdout span exporter: the
// scrape address serves /metrics without a token, the main listener only with one, and the counters show
// the requests made; -tracing stdout writes the spans of those requests with their request ids.
func TestMetricsListenAndStdoutTraces(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	args := []string{"-listen", "127.0.0.1:0", "-data-dir", dataDir, "-libvirt-uri", "none",
		"-metrics-listen", "127.0.0.1:0"}
	s := startRun(t, args, map[string]string{"OPENVAIR_TRACING": "stdout"})
	b, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	require.NoError(t, err)
	admin := strings.TrimSpace(string(b))

	code, body := request(t, "GET", s.url+"/api/v1/storages", admin, "")
	require.Equal(t, 200, code, "%s", body)
	code, _ = request(t, "GET", s.url+"/metrics", "", "")
	assert.Equal(t, 401, code, "/metrics on the main listener needs a token")
	code, body = request(t, "GET", s.url+"/metrics", admin, "")
	require.Equal(t, 200, code)
	assert.Contains(t, string(body), `openvair_http_requests_total{method="GET",route="/api/v1/storages",status="200"} 1`)

	m := regexp.MustCompile(`msg="metrics listening" addr=(\S+)`).FindStringSubmatch(s.logs.String())
	require.NotNil(t, m, "the scrape address is logged: %s", s.logs.String())
	code, body = request(t, "GET", "http://"+m[1]+"/metrics", "", "")
	require.Equal(t, 200, code)
	assert.Contains(t, string(body), `openvair_storage_capacity_bytes{`, "the default storage is measured")
	assert.Contains(t, string(body), `go_goroutines`)
	code, _ = request(t, "GET", "http://"+m[1]+"/api/v1/storages", "", "")
	assert.Equal(t, 404, code, "the scrape address serves nothing but /metrics")
	s.stop(t)
}

// TestStdoutTracesCarryRequestIDs checks -tracing stdout end to end: the spans written to stdout are JSON and
// one of them is the HTTP span of a request, with its request id.
func TestStdoutTracesCarryRequestIDs(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	out := &lockedWriter{w: &bytes.Buffer{}}
	s := startRunOut(t, []string{"-listen", "127.0.0.1:0", "-data-dir", dataDir, "-libvirt-uri", "none", "-tracing", "stdout"}, nil, out)
	b, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	require.NoError(t, err)
	code, _ := requestWithID(t, s.url+"/api/v1/storages", strings.TrimSpace(string(b)), "trace-me-42")
	require.Equal(t, 200, code)
	s.stop(t) // flushes the exporter

	dec := json.NewDecoder(strings.NewReader(out.String()))
	found := false
	for dec.More() {
		var span struct {
			Name       string
			Attributes []struct {
				Key   string
				Value struct{ Value any }
			}
		}
		require.NoError(t, dec.Decode(&span))
		for _, a := range span.Attributes {
			if a.Key == "openvair.request_id" && a.Value.Value == "trace-me-42" && span.Name == "GET /api/v1/storages" {
				found = true
			}
		}
	}
	assert.True(t, found, "a span of the request with its id in:\n%s", out.String())
}

// requestWithID GETs url with a bearer token and an X-Request-Id.
func requestWithID(t *testing.T, url, token, id string) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Request-Id", id)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	return res.StatusCode, res.Header
}
