package image_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/storage"
)

// importEnv is a System whose storage is the fake backend, allowed (or not) to import from loopback, and a
// loopback file server.
func importEnv(t *testing.T, allowLoopback bool) (*openvair.System, *storage.Storage, *httptest.Server, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cfg := openvair.Config{DSN: "memory:", HypervisorInstance: fake.NewHypervisor(),
		StorageBackends: map[storage.Type]driver.StorageBackend{"fake": fake.NewStorage(1 << 40)}}
	if allowLoopback {
		cfg.ImportAllowCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	sys, err := openvair.Open(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sys.Close() })
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "pool", Type: "fake", Config: map[string]string{"at": "x"}})
	require.NoError(t, err)
	content := bytes.Repeat([]byte("openvair disk "), 300_000) // ~4 MiB, raw
	mux := http.NewServeMux()
	mux.HandleFunc("/disk.img", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		_, _ = w.Write(content)
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/disk.img", http.StatusFound)
	})
	mux.HandleFunc("/to-metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return sys, st, srv, content
}

// An image imported from an allowed URL holds the content, named after the URL, with its SHA-256; a given
// checksum that matches is accepted.
func TestImportFromURL(t *testing.T) {
	sys, st, srv, content := importEnv(t, true)
	sum := sha256.Sum256(content)
	img, err := sys.Images.Import(t.Context(), image.ImportRequest{StorageID: st.ID, URL: srv.URL + "/disk.img", SHA256: hex.EncodeToString(sum[:])})
	require.NoError(t, err)
	assert.Equal(t, "disk.img", img.Name)
	assert.Equal(t, image.StatusAvailable, img.Status)
	assert.EqualValues(t, len(content), img.Size)
	assert.Equal(t, hex.EncodeToString(sum[:]), img.SHA256)

	// Through a redirect on the same allowed server.
	moved, err := sys.Images.Import(t.Context(), image.ImportRequest{Name: "moved", StorageID: st.ID, URL: srv.URL + "/moved"})
	require.NoError(t, err)
	assert.Equal(t, img.SHA256, moved.SHA256)

	// A redirect from the allowed server to a refused address is refused, and leaves nothing.
	_, err = sys.Images.Import(t.Context(), image.ImportRequest{Name: "meta", StorageID: st.ID, URL: srv.URL + "/to-metadata"})
	require.ErrorIs(t, err, errkind.Invalid)
	var ve *errkind.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, "url", ve.Fields[0].Field)
	assert.Contains(t, ve.Fields[0].Message, "169.254.169.254")
	page, err := sys.Images.List(t.Context(), image.ListOptions{Name: "meta"})
	require.NoError(t, err)
	assert.Empty(t, page.Items)

	// The operation records the bytes received.
	ops, err := sys.Operations.List(t.Context(), openvair.OperationListOptions{Kind: image.OpImport})
	require.NoError(t, err)
	require.Len(t, ops.Items, 3, "two imports and the refused redirect (refused while running, so recorded)")
	op := ops.Items[len(ops.Items)-1] // the first import: lists are newest first
	assert.EqualValues(t, len(content), op.Progress.BytesDone)
	assert.EqualValues(t, len(content), op.Progress.BytesTotal)
}

// A checksum that does not match refuses the import and leaves nothing.
func TestImportChecksumMismatch(t *testing.T) {
	sys, st, srv, _ := importEnv(t, true)
	_, err := sys.Images.Import(t.Context(), image.ImportRequest{StorageID: st.ID, URL: srv.URL + "/disk.img", SHA256: stringsRepeat("0", 64)})
	require.ErrorIs(t, err, errkind.Invalid)
	var ve *errkind.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, "sha256", ve.Fields[0].Field)
	page, err := sys.Images.List(t.Context(), image.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, page.Items, "nothing is left")
}

// By default the SSRF guard refuses loopback, directly, through a name and through a redirect, before
// anything is recorded; the error names url and the reason.
func TestImportRefusedByDefault(t *testing.T) {
	sys, st, srv, _ := importEnv(t, false)
	port := srv.Listener.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
	for _, u := range []string{
		srv.URL + "/disk.img",
		"http://localhost:" + strconv.Itoa(int(port)) + "/disk.img",
		"http://[::1]:" + strconv.Itoa(int(port)) + "/disk.img",
		"http://169.254.169.254/latest/meta-data/",
		"ftp://example.com/disk.img",
	} {
		_, err := sys.Images.Import(t.Context(), image.ImportRequest{Name: "x", StorageID: st.ID, URL: u})
		require.ErrorIs(t, err, errkind.Invalid, u)
		var ve *errkind.ValidationError
		require.ErrorAs(t, err, &ve, u)
		assert.Equal(t, "url", ve.Fields[0].Field, u)
		t.Logf("%s: %s", u, ve.Fields[0].Message)
	}
	page, err := sys.Images.List(t.Context(), image.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, page.Items)
	ops, err := sys.Operations.List(t.Context(), openvair.OperationListOptions{Kind: image.OpImport})
	require.NoError(t, err)
	assert.Empty(t, ops.Items, "refused before any operation is recorded")
}

func stringsRepeat(s string, n int) string { return string(bytes.Repeat([]byte(s), n)) }
