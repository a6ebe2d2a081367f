package refserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/refserver"
)

// BenchmarkHTTPVolumeEdit measures one volume edit over loopback HTTP against an in-process server, on the
// memory store and on SQLite (a file in a temporary directory), no hypervisor:
//
//   - sync: PATCH /api/v1/volumes/{id} (the edit runs in the request and records its operation and
//     events), 200;
//   - async+wait: the same PATCH with Prefer: respond-async, 202 with the pending operation and its
//     Location, then GET <Location>/wait?timeout=30 until the operation has succeeded.
//
// ns/op is the time of one edit as the client sees it. Each edit sets a new description, so that every
// one is a change. async+wait is skipped, saying so, when the server answers the PATCH 200 instead of 202
// (respond-async not applied).
func BenchmarkHTTPVolumeEdit(b *testing.B) {
	for _, store := range []string{"memory", "sqlite"} {
		b.Run(store+"/sync", func(b *testing.B) {
			e, volID := benchOpsEnv(b, store)
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			b.ResetTimer()
			for i := range b.N {
				code, _, body := benchOpsPatch(b, c, e, volID, i, false)
				if code != http.StatusOK {
					b.Fatalf("PATCH: %d %s", code, body)
				}
			}
		})
		b.Run(store+"/async+wait", func(b *testing.B) {
			e, volID := benchOpsEnv(b, store)
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			// respond-async must be applied: else there is nothing to measure.
			if code, _, body := benchOpsPatch(b, c, e, volID, -1, true); code != http.StatusAccepted {
				b.Skipf("PATCH /api/v1/volumes/{id} with Prefer: respond-async answered %d, not 202: %s", code, body)
			}
			waits := 0
			b.ResetTimer()
			for i := range b.N {
				waits += benchOpsAsyncEdit(b, c, e, volID, i)
			}
			b.StopTimer()
			b.ReportMetric(float64(waits)/float64(b.N), "waits/op")
		})
	}
}

// benchOpsEnv starts an in-process server on store ("memory" or "sqlite") with a LocalFS storage and a
// raw volume on it, and returns the server and the volume's id.
func benchOpsEnv(b *testing.B, store string) (*env, string) {
	b.Helper()
	dir := b.TempDir()
	dsn := "memory:"
	if store == "sqlite" {
		dsn = "sqlite://" + filepath.Join(dir, "openvair.db")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sys, err := openvair.Open(ctx, openvair.Config{DSN: dsn, DataDir: dir, Logger: quietLogger()})
	require.NoError(b, err)
	b.Cleanup(func() { _ = sys.Close() })
	e := &env{t: b, dir: dir, sys: sys}
	e.admin, err = refserver.GenerateToken()
	require.NoError(b, err)
	e.reader, err = refserver.GenerateToken()
	require.NoError(b, err)
	tokens, err := refserver.NewTokens(
		refserver.Token{Name: "admin", Role: refserver.RoleAdmin, SHA256: refserver.HashToken(e.admin)},
		refserver.Token{Name: "reader", Role: refserver.RoleReader, SHA256: refserver.HashToken(e.reader)})
	require.NoError(b, err)
	h, err := refserver.New(sys, refserver.Config{Tokens: tokens, Logger: quietLogger()})
	require.NoError(b, err)
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	e.URL = srv.URL

	st := e.localStorage("pool", e.storageDir("pool"))
	var v refserver.Volume
	e.call(http.MethodPost, "/api/v1/volumes", map[string]any{"name": "v", "storage_id": st.ID, "format": "raw", "size": 1 << 20},
		http.StatusCreated, &v)
	return e, v.ID.String()
}

// benchOpsPatch sends PATCH /api/v1/volumes/{id} with a description made of i (respond-async when async)
// and returns the status, the headers and the body.
func benchOpsPatch(b *testing.B, c *http.Client, e *env, volID string, i int, async bool) (int, http.Header, []byte) {
	req, err := http.NewRequest(http.MethodPatch, e.URL+"/api/v1/volumes/"+volID,
		strings.NewReader(fmt.Sprintf(`{"description":"edit %d"}`, i)))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.admin)
	req.Header.Set("Content-Type", "application/json")
	if async {
		req.Header.Set("Prefer", "respond-async")
	}
	return benchOpsDo(b, c, req)
}

// benchOpsAsyncEdit makes one edit with Prefer: respond-async and waits for its operation (at the 202's
// Location) to succeed; it returns how many waits that took.
func benchOpsAsyncEdit(b *testing.B, c *http.Client, e *env, volID string, i int) int {
	code, hdr, body := benchOpsPatch(b, c, e, volID, i, true)
	if code != http.StatusAccepted {
		b.Fatalf("PATCH with Prefer: respond-async: %d %s", code, body)
	}
	loc := hdr.Get("Location")
	if !strings.HasPrefix(loc, "/api/v1/operations/") {
		b.Fatalf("202 with Location %q", loc)
	}
	var op struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(body, &op); err != nil {
		b.Fatalf("202 body %s: %v", body, err)
	}
	waits := 0
	for op.Status != "succeeded" {
		if op.Status == "failed" || op.Status == "cancelled" {
			b.Fatalf("operation %s: %s", op.ID, body)
		}
		req, err := http.NewRequest(http.MethodGet, e.URL+loc+"/wait?timeout=30", nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+e.admin)
		code, _, body = benchOpsDo(b, c, req)
		if code != http.StatusOK {
			b.Fatalf("wait for operation %s: %d %s", op.ID, code, body)
		}
		if err := json.Unmarshal(body, &op); err != nil {
			b.Fatalf("wait body %s: %v", body, err)
		}
		waits++
	}
	return waits
}

// benchOpsDo sends req and reads the whole answer.
func benchOpsDo(b *testing.B, c *http.Client, req *http.Request) (int, http.Header, []byte) {
	res, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, res.Body); err != nil {
		b.Fatal(err)
	}
	return res.StatusCode, res.Header, buf.Bytes()
}
