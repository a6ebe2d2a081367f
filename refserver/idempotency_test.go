package refserver_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/refserver"
)

// countVolumes returns how many volumes have the name.
func (e *env) countVolumes(name string) int {
	e.t.Helper()
	var p refserver.VolumePage
	e.call("GET", "/api/v1/volumes?name="+name, nil, 200, &p)
	return len(p.Items)
}

// TestIdempotentReplay: a retry with the same key and request gets the first answer again, byte for byte,
// and does nothing; the same key with another request is 422.
func TestIdempotentReplay(t *testing.T) {
	e := start(t, envOptions{})
	st := e.localStorage("local", e.storageDir("pool"))
	body := fmt.Sprintf(`{"name":"once","storage_id":%q,"format":"qcow2","size":1048576}`, st.ID)
	key := "create-once-" + uuid.NewString()

	first := e.do("POST", "/api/v1/volumes", e.admin, body, refserver.IdempotencyKeyHeader, key)
	require.Equal(t, 201, first.Status, "%s", first.Body)
	assert.Empty(t, first.Header.Get("Idempotent-Replayed"))
	for range 3 {
		again := e.do("POST", "/api/v1/volumes", e.admin, body, refserver.IdempotencyKeyHeader, key, refserver.RequestIDHeader, "retry")
		require.Equal(t, 201, again.Status, "%s", again.Body)
		assert.Equal(t, string(first.Body), string(again.Body), "the same bytes")
		assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
		for _, h := range []string{"Content-Type", "Location", "ETag", "Operation-Id"} {
			assert.NotEmpty(t, first.Header.Get(h), h)
			assert.Equal(t, first.Header.Get(h), again.Header.Get(h), h)
		}
		assert.Equal(t, "retry", again.Header.Get(refserver.RequestIDHeader), "the retry's own request id")
	}
	assert.Equal(t, 1, e.countVolumes("once"), "created once")

	// The same key with another body, query or path: 422, nothing done.
	other := strings.Replace(body, "1048576", "2097152", 1)
	e.do("POST", "/api/v1/volumes", e.admin, other, refserver.IdempotencyKeyHeader, key).problemIs(t, 422, "invalid")
	e.do("POST", "/api/v1/volumes?x=1", e.admin, body, refserver.IdempotencyKeyHeader, key).problemIs(t, 422, "invalid")
	e.do("POST", "/api/v1/storages", e.admin, body, refserver.IdempotencyKeyHeader, key).problemIs(t, 422, "invalid")
	assert.Equal(t, 1, e.countVolumes("once"))

	// Another key runs again (here: refused, the name is taken).
	e.do("POST", "/api/v1/volumes", e.admin, body, refserver.IdempotencyKeyHeader, key+"-2").problemIs(t, 409, "already_exists")

	// A refusal (4xx) is stored too: its retry gets it again even once the cause is gone.
	missing := uuid.NewString()
	refused := fmt.Sprintf(`{"name":"late","storage_id":%q,"format":"raw","size":1048576}`, missing)
	r1 := e.do("POST", "/api/v1/volumes", e.admin, refused, refserver.IdempotencyKeyHeader, "refused")
	require.True(t, r1.Status >= 400 && r1.Status < 500, "%d %s", r1.Status, r1.Body)
	r2 := e.do("POST", "/api/v1/volumes", e.admin, refused, refserver.IdempotencyKeyHeader, "refused")
	assert.Equal(t, r1.Status, r2.Status)
	assert.Equal(t, string(r1.Body), string(r2.Body))
	assert.Equal(t, "true", r2.Header.Get("Idempotent-Replayed"))

	// Keys must be 1 to 255 printable ASCII characters.
	for _, bad := range []string{strings.Repeat("k", refserver.MaxIdempotencyKeyBytes+1), "caf\u00e9"} {
		e.do("POST", "/api/v1/volumes", e.admin, body, refserver.IdempotencyKeyHeader, bad).problemIs(t, 400, "invalid")
	}
	long := strings.Repeat("k", refserver.MaxIdempotencyKeyBytes)
	r := e.do("POST", "/api/v1/volumes", e.admin, strings.Replace(body, "once", "long-key", 1), refserver.IdempotencyKeyHeader, long)
	assert.Equal(t, 201, r.Status, "%s", r.Body)
}

// TestIdempotentActionAndUpload: an action and an image upload with a key run once.
func TestIdempotentActionAndUpload(t *testing.T) {
	e := start(t, envOptions{})
	st := e.localStorage("local", e.storageDir("pool"))
	vol := e.volume(st.ID, "grow", 1<<20)

	ext := e.do("POST", "/api/v1/volumes/"+vol.ID.String()+"/extend", e.admin, `{"size":2097152}`, refserver.IdempotencyKeyHeader, "grow-1")
	require.Equal(t, 200, ext.Status, "%s", ext.Body)
	var grown refserver.Volume
	require.NoError(t, json.Unmarshal(ext.Body, &grown))
	again := e.do("POST", "/api/v1/volumes/"+vol.ID.String()+"/extend", e.admin, `{"size":2097152}`, refserver.IdempotencyKeyHeader, "grow-1")
	require.Equal(t, 200, again.Status, "%s", again.Body)
	assert.Equal(t, string(ext.Body), string(again.Body))
	var now refserver.Volume
	e.call("GET", "/api/v1/volumes/"+vol.ID.String(), nil, 200, &now)
	assert.Equal(t, grown.Version, now.Version, "extended once")

	up := "/api/v1/images?storage_id=" + st.ID.String() + "&name=disc"
	u1 := e.do("POST", up, e.admin, iso(), refserver.IdempotencyKeyHeader, "upload-1")
	require.Equal(t, 201, u1.Status, "%s", u1.Body)
	u2 := e.do("POST", up, e.admin, iso(), refserver.IdempotencyKeyHeader, "upload-1")
	require.Equal(t, 201, u2.Status, "%s", u2.Body)
	assert.Equal(t, string(u1.Body), string(u2.Body))
	assert.Equal(t, "true", u2.Header.Get("Idempotent-Replayed"))
	var ip refserver.ImagePage
	e.call("GET", "/api/v1/images?name=disc", nil, 200, &ip)
	assert.Len(t, ip.Items, 1, "uploaded once")
	// An upload's fingerprint is its path, query, length and type: another name is another request.
	e.do("POST", up+"2", e.admin, iso(), refserver.IdempotencyKeyHeader, "upload-1").problemIs(t, 422, "invalid")
	e.do("POST", up, e.admin, append(iso(), 0), refserver.IdempotencyKeyHeader, "upload-1").problemIs(t, 422, "invalid")
}

// TestIdempotentAsync: a 202 is stored like any answer: the retry gets the same operation.
func TestIdempotentAsync(t *testing.T) {
	e := start(t, envOptions{})
	st := e.localStorage("local", e.storageDir("pool"))
	body := fmt.Sprintf(`{"name":"async-once","storage_id":%q,"format":"raw","size":1048576}`, st.ID)
	a1 := e.do("POST", "/api/v1/volumes", e.admin, body, refserver.IdempotencyKeyHeader, "async", "Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, a1.Status, "%s", a1.Body)
	a2 := e.do("POST", "/api/v1/volumes", e.admin, body, refserver.IdempotencyKeyHeader, "async", "Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, a2.Status, "%s", a2.Body)
	assert.Equal(t, string(a1.Body), string(a2.Body))
	assert.Equal(t, a1.Header.Get("Location"), a2.Header.Get("Location"))
	assert.Equal(t, "respond-async", a2.Header.Get("Preference-Applied"))
	e.call("GET", a1.Header.Get("Location")+"/wait?timeout=30", nil, 200, nil)
	// Without Prefer the retry still gets the stored 202: the key names the request, not how it is answered.
	a3 := e.do("POST", "/api/v1/volumes", e.admin, body, refserver.IdempotencyKeyHeader, "async")
	assert.Equal(t, http.StatusAccepted, a3.Status)
	assert.Equal(t, 1, e.countVolumes("async-once"))
}

// TestIdempotentConcurrent: requests racing with the same key: exactly one runs; every other one gets 409
// (the first still runs) or the first's answer.
func TestIdempotentConcurrent(t *testing.T) { idempotentConcurrent(t, envOptions{}) }

// TestIdempotentConcurrentPostgres races on PostgreSQL, where the key's row is taken under serializable
// transactions.
func TestIdempotentConcurrentPostgres(t *testing.T) {
	idempotentConcurrent(t, envOptions{postgres: true})
}

func idempotentConcurrent(t *testing.T, o envOptions) {
	e := start(t, o)
	st := e.localStorage("local", e.storageDir("pool"))
	body := fmt.Sprintf(`{"name":"raced","storage_id":%q,"format":"qcow2","size":1048576}`, st.ID)
	const n = 12
	results := make([]resp, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			results[i] = e.do("POST", "/api/v1/volumes", e.admin, body, refserver.IdempotencyKeyHeader, "race")
		}()
	}
	close(gate)
	wg.Wait()
	ran, replayed, busy := 0, 0, 0
	var created []byte
	for _, r := range results {
		switch {
		case r.Status == 201 && r.Header.Get("Idempotent-Replayed") == "":
			ran++
			created = r.Body
		case r.Status == 201:
			replayed++
		case r.Status == 409:
			assert.Equal(t, "conflict", r.problem(t).Kind, "%s", r.Body)
			busy++
		default:
			t.Errorf("unexpected answer %d: %s", r.Status, r.Body)
		}
	}
	assert.Equal(t, 1, ran, "exactly one request ran (%d replayed, %d busy)", replayed, busy)
	for _, r := range results {
		if r.Status == 201 {
			assert.Equal(t, string(created), string(r.Body))
		}
	}
	assert.Equal(t, 1, e.countVolumes("raced"))
}
