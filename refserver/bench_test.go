package refserver_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/volume"
)

// BenchmarkListVolumes compares GET /api/v1/volumes (a page of 100 out of 10,000 volumes, SQLite store)
// through the server over loopback HTTP with the same SDK call in-process, in the same run. It reports
// both costs per call and their ratio (http/sdk).
func BenchmarkListVolumes(b *testing.B) {
	e := start(b, envOptions{})
	st := e.localStorage("local", e.storageDir("pool"))
	ctx := context.Background()
	// The volumes are written straight into the store (one transaction): the benchmark is about reads.
	now := time.Now().UTC()
	require.NoError(b, e.sys.Store.InTx(ctx, func(ctx context.Context) error {
		for i := range 10000 {
			v := &volume.Volume{ID: uuid.Must(uuid.NewV7()), Name: fmt.Sprintf("vol-%05d", i), StorageID: st.ID,
				Format: volume.FormatQCOW2, Size: 1 << 30, Status: volume.StatusAvailable, CreatedAt: now, UpdatedAt: now}
			if err := e.sys.Store.Volumes().Create(ctx, v); err != nil {
				return err
			}
		}
		return nil
	}))
	// A page from the middle of the list.
	opts := volume.ListOptions{Limit: 100}
	for range 50 {
		p, err := e.sys.Volumes.List(ctx, opts)
		require.NoError(b, err)
		opts.Cursor = p.NextCursor
	}
	url := e.URL + "/api/v1/volumes?limit=100&cursor=" + opts.Cursor
	req, err := http.NewRequest("GET", url, nil)
	require.NoError(b, err)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

	viaHTTP := func() {
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || n < 100*200 {
			b.Fatalf("status %d, %d bytes", res.StatusCode, n)
		}
	}
	viaSDK := func() {
		p, err := e.sys.Volumes.List(ctx, opts)
		if err != nil || len(p.Items) != 100 {
			b.Fatalf("%d items, %v", len(p.Items), err)
		}
	}
	viaHTTP()
	viaSDK()

	b.ResetTimer()
	var sdkTime, httpTime time.Duration
	for range b.N {
		t0 := time.Now()
		viaSDK()
		t1 := time.Now()
		viaHTTP()
		httpTime += time.Since(t1)
		sdkTime += t1.Sub(t0)
	}
	b.StopTimer()
	b.ReportMetric(float64(sdkTime.Nanoseconds())/float64(b.N), "sdk-ns/call")
	b.ReportMetric(float64(httpTime.Nanoseconds())/float64(b.N), "http-ns/call")
	b.ReportMetric(float64(httpTime)/float64(sdkTime), "http/sdk")
}
