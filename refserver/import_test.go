package refserver_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/refserver"
)

// POST /api/v1/images with a JSON body imports from a URL: refused with 422 naming url and the reason when
// the address is not public (loopback here), accepted when the server allows the range, with the checksum
// checked.
func TestImageImport(t *testing.T) {
	content := bytes.Repeat([]byte("an image "), 100_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(content) }))
	t.Cleanup(srv.Close)
	sum := sha256.Sum256(content)

	closed := start(t, envOptions{})
	st := closed.localStorage("pool", closed.storageDir("pool"))
	p := closed.do("POST", "/api/v1/images", closed.admin, map[string]any{"storage_id": st.ID, "url": srv.URL + "/disk.img"}).
		problemIs(t, 422, "invalid")
	require.Len(t, p.Errors, 1)
	assert.Equal(t, "body.url", p.Errors[0].Location)
	assert.Contains(t, p.Errors[0].Message, "loopback")

	open := start(t, envOptions{importAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	st = open.localStorage("pool", open.storageDir("pool"))
	var img refserver.Image
	open.call("POST", "/api/v1/images", map[string]any{"storage_id": st.ID, "url": srv.URL + "/disk.img",
		"sha256": hex.EncodeToString(sum[:])}, 201, &img)
	assert.Equal(t, "disk.img", img.Name)
	assert.EqualValues(t, len(content), img.Size)
	assert.Equal(t, hex.EncodeToString(sum[:]), img.SHA256)

	p = open.do("POST", "/api/v1/images", open.admin, map[string]any{"name": "bad", "storage_id": st.ID, "url": srv.URL + "/disk.img",
		"sha256": hex.EncodeToString(make([]byte, 32))}).problemIs(t, 422, "invalid")
	assert.Equal(t, "body.sha256", p.Errors[0].Location)
}
