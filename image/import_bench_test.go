package image_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/storage"
)

// BenchmarkImport measures an image import of 256 MiB from a loopback HTTP server into a localfs storage
// (download, SSRF checks, SHA-256, format detection, sync, rename), against `curl -o` of the same URL into
// the same directory in the same run.
func BenchmarkImport(b *testing.B) {
	const size = 256 << 20
	content := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		_, _ = w.Write(content)
	}))
	b.Cleanup(srv.Close)
	ctx := context.Background()
	be, err := localfs.New(driver.Config{DataDir: b.TempDir()})
	require.NoError(b, err)
	sys, err := openvair.Open(ctx, openvair.Config{DSN: "memory:", HypervisorInstance: fake.NewHypervisor(),
		StorageBackends:  map[storage.Type]driver.StorageBackend{"localfs": be},
		ImportAllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	require.NoError(b, err)
	b.Cleanup(func() { _ = sys.Close() })
	dir := filepath.Join(b.TempDir(), "pool")
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "pool", Type: localfs.Type, Config: localfs.Config{Path: dir}})
	require.NoError(b, err)

	b.Run("Import", func(b *testing.B) {
		b.SetBytes(size)
		i := 0
		for b.Loop() {
			i++
			img, err := sys.Images.Import(ctx, image.ImportRequest{Name: "img-" + strconv.Itoa(i), StorageID: st.ID, URL: srv.URL + "/disk.img"})
			require.NoError(b, err)
			b.StopTimer()
			require.NoError(b, sys.Images.Delete(ctx, img.ID))
			b.StartTimer()
		}
	})
	b.Run("curl", func(b *testing.B) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			b.Skip("curl not installed")
		}
		b.SetBytes(size)
		out := filepath.Join(dir, "curl.out")
		for b.Loop() {
			require.NoError(b, exec.CommandContext(ctx, curl, "-sS", "-o", out, srv.URL+"/disk.img").Run())
		}
	})
}
