package nfs

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/qcow2"
	"github.com/openvair/openvair/internal/testenv"
)

// hookReader yields random bytes forever and calls hook once after `after` bytes.
type hookReader struct {
	n, after int64
	hook     func()
	once     sync.Once
}

func (r *hookReader) Read(p []byte) (int, error) {
	if r.n >= r.after {
		r.once.Do(r.hook)
	}
	n, _ := rand.Read(p)
	r.n += int64(n)
	return n, nil
}

func prepare(t *testing.T, b *Backend, pool driver.PoolSpec) {
	t.Helper()
	_, err := b.Prepare(t.Context(), pool)
	require.NoError(t, err)
}

// TestUploadServerStopped stops the server in the middle of an upload: the upload fails with
// ErrUnavailable, and once the server is back a Status sweeps the partial file.
func TestUploadServerStopped(t *testing.T) {
	srv := startServer(t)
	b := newBackend(t, nil)
	pool := spec(srv.Addr(), srv.Export())
	prepare(t, b, pool)

	id := uuid.New()
	r := &hookReader{after: 16 << 20, hook: srv.Stop}
	_, err := b.WriteImage(context.Background(), pool, driver.ImageWrite{ID: id}, r)
	require.ErrorIs(t, err, driver.ErrUnavailable)
	t.Logf("upload error: %v", err)
	assert.Less(t, r.n, int64(1<<30), "the upload must stop soon after the server went away")
	require.NotEmpty(t, partFiles(t, srv.Dir(), pool), "the server was gone, so the .part file could not be removed yet")

	require.NoError(t, srv.Restart())
	_, err = b.Status(t.Context(), pool)
	require.NoError(t, err, "Status after the server is back")
	require.Empty(t, partFiles(t, srv.Dir(), pool), "Status sweeps the abandoned .part file")
	_, err = b.InspectImage(t.Context(), pool, id)
	require.ErrorIs(t, err, driver.ErrNotFound)
}

// TestCancelledUploadLeavesNoFile cancels an upload midway and checks the server's directory.
func TestCancelledUploadLeavesNoFile(t *testing.T) {
	srv := startServer(t)
	b := newBackend(t, nil)
	pool := spec(srv.Addr(), srv.Export())
	prepare(t, b, pool)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err := b.WriteImage(ctx, pool, driver.ImageWrite{ID: uuid.New()}, &hookReader{after: 8 << 20, hook: cancel})
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, partFiles(t, srv.Dir(), pool))
	entries, err := os.ReadDir(poolFile(srv.Dir(), pool, ""))
	require.NoError(t, err)
	require.Empty(t, entries, "nothing left in the storage directory")
}

// blackhole accepts TCP connections on 127.0.0.N:111 and never answers: a server that hangs.
func blackhole(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	var l net.Listener
	for n := 254; n > 2; n-- {
		var err error
		if l, err = net.Listen("tcp", net.JoinHostPort("127.0.0."+itoa(n), "111")); err == nil {
			break
		}
	}
	require.NotNil(t, l, "no free 127.0.0.N:111")
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr).IP.String()
}

func itoa(n int) string {
	return string(rune('0'+n/100)) + string(rune('0'+n/10%10)) + string(rune('0'+n%10))
}

// TestDeadServerIsolation: a stopped server and a hung one make Status fail with ErrUnavailable within
// the status timeout even without a caller deadline, while calls on another NFS storage and on a LocalFS
// storage keep answering; a restarted server answers again.
func TestDeadServerIsolation(t *testing.T) {
	stopped, healthy := startServer(t), startServer(t)
	hung := blackhole(t)
	b := newBackend(t, nil)
	poolStopped := spec(stopped.Addr(), stopped.Export())
	poolHealthy := spec(healthy.Addr(), healthy.Export())
	poolHung := spec(hung, "/")
	prepare(t, b, poolStopped)
	prepare(t, b, poolHealthy)

	lfs, err := localfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	poolLocal := localfs.Pool(uuid.New(), localfs.Config{Path: t.TempDir()}, localfs.State{})
	_, err = lfs.Prepare(t.Context(), poolLocal)
	require.NoError(t, err)

	stopped.Stop()
	var wg sync.WaitGroup
	results := map[string]error{}
	var mu sync.Mutex
	for name, pool := range map[string]driver.PoolSpec{"stopped": poolStopped, "hung": poolHung} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_, err := b.Status(context.Background(), pool) // no deadline: the driver applies its own
			mu.Lock()
			results[name] = err
			mu.Unlock()
			t.Logf("Status of the %s server: %v after %v", name, err, time.Since(start).Round(time.Millisecond))
			assert.Less(t, time.Since(start), 5*time.Second, "Status of the %s server must give up within 5 s", name)
		}()
	}
	// While those calls hang, the other storages answer, and again and again.
	for range 20 {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		_, err := b.Status(ctx, poolHealthy)
		require.NoError(t, err, "another NFS storage")
		id := uuid.New()
		_, err = b.CreateVolume(ctx, poolHealthy, driver.VolumeSpec{ID: id, Format: driver.FormatRaw, Size: 1 << 20})
		require.NoError(t, err)
		require.NoError(t, b.DeleteVolume(ctx, poolHealthy, id))
		_, err = lfs.Status(ctx, poolLocal)
		require.NoError(t, err, "a LocalFS storage")
		cancel()
	}
	wg.Wait()
	require.ErrorIs(t, results["stopped"], driver.ErrUnavailable)
	require.ErrorIs(t, results["hung"], driver.ErrUnavailable)

	require.NoError(t, stopped.Restart())
	_, err = b.Status(t.Context(), poolStopped)
	require.NoError(t, err, "Status after the server is back")
}

// TestPrepareErrors: a missing export and a server that is not there.
func TestPrepareErrors(t *testing.T) {
	srv := startServer(t)
	b := newBackend(t, map[string]string{"op_timeout": "3s"})
	_, err := b.Prepare(t.Context(), spec("127.0.0.1", "/"))
	require.ErrorIs(t, err, driver.ErrUnavailable, "no server on 127.0.0.1")

	bad := spec(srv.Addr(), "/")
	bad.Config = driver.MustJSON(Config{Server: srv.Addr(), Export: "/", Version: 4})
	_, err = b.Prepare(t.Context(), bad)
	require.ErrorIs(t, err, driver.ErrUnsupported)
	bad = spec(srv.Addr(), "relative")
	_, err = b.Prepare(t.Context(), bad)
	require.ErrorIs(t, err, driver.ErrInvalid)
}

// TestQCOW2OverNFSChecksClean creates and grows a qcow2 volume over NFS and checks the file with qemu-img.
func TestQCOW2OverNFSChecksClean(t *testing.T) {
	qemuImg := testenv.LookPath(t, "qemu-img")
	srv := startServer(t)
	b := newBackend(t, nil)
	pool := spec(srv.Addr(), srv.Export())
	prepare(t, b, pool)
	id := uuid.New()
	_, err := b.CreateVolume(t.Context(), pool, driver.VolumeSpec{ID: id, Format: driver.FormatQCOW2, Size: 1 << 30})
	require.NoError(t, err)
	info, err := b.ExtendVolume(t.Context(), pool, driver.VolumeSpec{ID: id, Format: driver.FormatQCOW2, Size: 5 << 40})
	require.NoError(t, err)
	require.EqualValues(t, int64(5)<<40, info.VirtualSize)
	out, err := exec.CommandContext(t.Context(), qemuImg, "check", "-f", "qcow2", poolFile(srv.Dir(), pool, volumeName(id))).CombinedOutput()
	require.NoError(t, err, "%s", out)

	src := b.DiskSource(pool, driver.KindVolume, id)
	require.Equal(t, driver.DiskSource{Type: "network", Protocol: "nfs", Host: srv.Addr(),
		Name: "/openvair-" + pool.ID.String() + "/volume-" + id.String()}, src)
	_ = io.Discard
}

// TestRawVolumeWithQCOW2ContentStaysRaw: a guest that writes a qcow2 header into its raw disk does not turn
// the disk into a qcow2 volume for Inspect or Extend.
func TestRawVolumeWithQCOW2ContentStaysRaw(t *testing.T) {
	srv := startServer(t)
	b := newBackend(t, nil)
	pool := spec(srv.Addr(), srv.Export())
	prepare(t, b, pool)
	ctx := t.Context()
	id := uuid.New()
	_, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: driver.FormatRaw, Size: 64 << 20})
	require.NoError(t, err)
	// A valid qcow2 header claiming 1 TiB, written over the start of the raw volume as a guest would.
	tmp := filepath.Join(t.TempDir(), "hdr")
	f, err := os.Create(tmp)
	require.NoError(t, err)
	_, err = qcow2.Create(f, 1<<40, qcow2.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, f.Close())
	hdr, err := os.ReadFile(tmp)
	require.NoError(t, err)
	vf, err := os.OpenFile(poolFile(srv.Dir(), pool, volumeName(id)), os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = vf.WriteAt(hdr, 0)
	require.NoError(t, err)
	require.NoError(t, vf.Close())

	info, err := b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: driver.FormatRaw})
	require.NoError(t, err)
	assert.Equal(t, driver.FormatRaw, info.Format)
	assert.EqualValues(t, 64<<20, info.VirtualSize)
	info, err = b.ExtendVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: driver.FormatRaw, Size: 128 << 20})
	require.NoError(t, err)
	assert.EqualValues(t, 128<<20, info.VirtualSize)
	got, err := os.ReadFile(poolFile(srv.Dir(), pool, volumeName(id)))
	require.NoError(t, err)
	assert.Equal(t, hdr, got[:len(hdr)], "the guest's data is untouched")
}
