package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// crashClient talks to one run of the server with the admin token. Its requests fail once the server is
// killed; the workload ignores those failures.
type crashClient struct {
	base  string
	token string
	http  *http.Client
}

// do sends a request and decodes a JSON answer into out (when not nil and the status is 2xx).
func (c *crashClient) do(ctx context.Context, method, path, contentType string, body io.Reader, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return res.StatusCode, err
	}
	if out != nil && res.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			return res.StatusCode, fmt.Errorf("decode %s %s: %w: %s", method, path, err, b)
		}
	}
	return res.StatusCode, nil
}

// postJSON sends v as JSON.
func (c *crashClient) postJSON(ctx context.Context, path string, v, out any) (int, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	return c.do(ctx, http.MethodPost, path, "application/json", bytes.NewReader(b), out)
}

// crashItem is the part of a storage, volume, image or VM the harness reads.
type crashItem struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	StorageID    string `json:"storage_id"`
	Status       string `json:"status"`
	StatusReason string `json:"status_reason"`
	Format       string `json:"format"`
	Size         int64  `json:"size"`
	LocalFS      *struct {
		Path string `json:"path"`
	} `json:"localfs"`
}

// list reads every item of a collection ("storages", "volumes", "images", "vms"), page by page.
func (c *crashClient) list(ctx context.Context, what string) ([]crashItem, int, error) {
	var all []crashItem
	cursor := ""
	for {
		var page struct {
			Items      []crashItem `json:"items"`
			NextCursor string      `json:"next_cursor"`
		}
		path := "/api/v1/" + what + "?limit=1000"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		code, err := c.do(ctx, http.MethodGet, path, "", nil, &page)
		if err != nil || code != http.StatusOK {
			return all, code, err
		}
		all = append(all, page.Items...)
		if page.NextCursor == "" {
			return all, code, nil
		}
		cursor = page.NextCursor
	}
}

// crashStats counts what the workload did (attempts and successes), for the log.
type crashStats struct {
	attempts, ok atomic.Int64
}

// crashWorkload runs a seeded mix of storage, volume and image operations with workers goroutines until
// ctx ends. Storage directories are created under storeRoot (absolute), named by n so that runs never
// reuse a path. Every decision comes from rng streams derived from seed.
type crashWorkload struct {
	c         *crashClient
	storeRoot string
	seed      uint64
	stats     *crashStats
	nameSeq   *atomic.Int64
}

// run starts the workers and returns when they have all stopped.
func (w *crashWorkload) run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(w.seed, uint64(i)+1))
			for ctx.Err() == nil {
				w.step(ctx, rng)
			}
		}()
	}
	wg.Wait()
}

// name returns a fresh name for an entity.
func (w *crashWorkload) name(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, w.seed%100000, w.nameSeq.Add(1))
}

// pick returns a random item of a list of the server's current ones ("" when there is none).
func (w *crashWorkload) pick(ctx context.Context, rng *rand.Rand, what string, filter func(crashItem) bool) (crashItem, bool) {
	items, _, err := w.c.list(ctx, what)
	if err != nil {
		return crashItem{}, false
	}
	var ok []crashItem
	for _, it := range items {
		if filter == nil || filter(it) {
			ok = append(ok, it)
		}
	}
	if len(ok) == 0 {
		return crashItem{}, false
	}
	return ok[rng.IntN(len(ok))], true
}

// step runs one operation chosen at random.
func (w *crashWorkload) step(ctx context.Context, rng *rand.Rand) {
	w.stats.attempts.Add(1)
	var code int
	var err error
	switch r := rng.IntN(100); {
	case r < 6: // create a storage
		storages, _, lerr := w.c.list(ctx, "storages")
		if lerr != nil || len(storages) >= 4 {
			return
		}
		name := w.name("st")
		code, err = w.c.postJSON(ctx, "/api/v1/storages", map[string]any{"name": name, "type": "localfs",
			"localfs": map[string]any{"path": filepath.Join(w.storeRoot, name)}}, nil)
	case r < 10: // delete a storage other than the default one (refused while it holds objects)
		st, ok := w.pick(ctx, rng, "storages", func(it crashItem) bool { return it.Name != "default" })
		if !ok {
			return
		}
		w.emptyStorage(ctx, st.ID)
		code, err = w.c.do(ctx, http.MethodDelete, "/api/v1/storages/"+st.ID, "", nil, nil)
	case r < 32: // create a volume
		st, ok := w.pick(ctx, rng, "storages", func(it crashItem) bool { return it.Status == "available" })
		if !ok {
			return
		}
		format := "qcow2"
		if rng.IntN(2) == 0 {
			format = "raw"
		}
		size := int64(1+rng.IntN(4)) << 20
		code, err = w.c.postJSON(ctx, "/api/v1/volumes", map[string]any{"name": w.name("vol"), "storage_id": st.ID,
			"format": format, "size": size}, nil)
	case r < 44: // extend a volume
		v, ok := w.pick(ctx, rng, "volumes", func(it crashItem) bool { return it.Status == "available" })
		if !ok {
			return
		}
		code, err = w.c.postJSON(ctx, "/api/v1/volumes/"+v.ID+"/extend", map[string]any{"size": v.Size + int64(1+rng.IntN(3))<<20}, nil)
	case r < 58: // delete a volume
		v, ok := w.pick(ctx, rng, "volumes", nil)
		if !ok {
			return
		}
		code, err = w.c.do(ctx, http.MethodDelete, "/api/v1/volumes/"+v.ID, "", nil, nil)
	case r < 86: // upload an image, a third of them slowly so that kills land mid-upload
		st, ok := w.pick(ctx, rng, "storages", func(it crashItem) bool { return it.Status == "available" })
		if !ok {
			return
		}
		size := int64(1+rng.IntN(4)) << 20
		body := &crashImageReader{size: size, iso: rng.IntN(2) == 0, seed: rng.Uint64()}
		if rng.IntN(3) == 0 {
			body.delay = time.Duration(5+rng.IntN(20)) * time.Millisecond
		}
		q := url.Values{"storage_id": {st.ID}, "name": {w.name("img")}}
		code, err = w.c.do(ctx, http.MethodPost, "/api/v1/images?"+q.Encode(), "application/octet-stream", body, nil)
	default: // delete an image
		img, ok := w.pick(ctx, rng, "images", nil)
		if !ok {
			return
		}
		code, err = w.c.do(ctx, http.MethodDelete, "/api/v1/images/"+img.ID, "", nil, nil)
	}
	if err == nil && code/100 == 2 {
		w.stats.ok.Add(1)
	}
}

// emptyStorage deletes the volumes and images of a storage, so that deleting it can succeed.
func (w *crashWorkload) emptyStorage(ctx context.Context, storageID string) {
	for _, what := range []string{"volumes", "images"} {
		items, _, err := w.c.list(ctx, what)
		if err != nil {
			return
		}
		for _, it := range items {
			if it.StorageID == storageID {
				_, _ = w.c.do(ctx, http.MethodDelete, "/api/v1/"+what+"/"+it.ID, "", nil, nil)
			}
		}
	}
}

// crashImageReader streams size bytes of seeded content: an ISO 9660 image (the "CD001" descriptor at
// 32769) or raw bytes, in 64 KiB chunks, sleeping delay before each chunk.
type crashImageReader struct {
	size  int64
	iso   bool
	seed  uint64
	delay time.Duration
	off   int64
	rng   *rand.Rand
}

func (r *crashImageReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if r.rng == nil {
		r.rng = rand.New(rand.NewPCG(r.seed, 7))
	}
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	n := int64(len(p))
	n = min(n, 64<<10, r.size-r.off)
	for i := range n {
		p[i] = byte(r.rng.Uint32())
		if r.iso && r.off+i >= 32768 && r.off+i < 32768+6 {
			p[i] = "\x01CD001"[r.off+i-32768]
		}
		if !r.iso && r.off+i < 64 {
			p[i] = 0 // no magic of a known format at the start: raw
		}
	}
	r.off += n
	return int(n), nil
}
