package client_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/storage"
)

// BenchmarkListStorages compares the client's ListStorages with a bare net/http GET of the same page decoded
// with encoding/json into the same types, against one server holding 50 storages: the difference is what
// the client adds (request building, the retry loop, problem handling).
func BenchmarkListStorages(b *testing.B) {
	const n = 50
	e := newEnv(b, nil, nil)
	ctx := b.Context()
	for i := range n {
		_, err := e.c.CreateStorage(ctx, storage.CreateRequest{Name: fmt.Sprintf("pool%02d", i), Type: "localfs",
			Config: map[string]string{"path": fmt.Sprintf("%s/pool%02d", e.base, i)}})
		require.NoError(b, err)
	}

	b.Run("client", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			all, err := e.c.ListStorages(ctx)
			if err != nil || len(all) != n {
				b.Fatal(len(all), err)
			}
		}
	})

	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		hc := &http.Client{}
		for b.Loop() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/api/v1/storages?limit=1000", nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+e.token)
			req.Header.Set("Accept", "application/json")
			res, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			var page struct {
				Items      []*storage.Storage `json:"items"`
				NextCursor string             `json:"next_cursor"`
			}
			err = json.NewDecoder(res.Body).Decode(&page)
			_ = res.Body.Close()
			if err != nil || res.StatusCode != http.StatusOK || len(page.Items) != n {
				b.Fatal(res.StatusCode, len(page.Items), err)
			}
		}
	})
}
