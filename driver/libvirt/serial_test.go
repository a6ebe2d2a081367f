package libvirt_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/testenv/tinyguest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serialReader collects what a serial console says, in the background.
type serialReader struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	err  error
	done chan struct{}
}

func readSerial(c io.Reader) *serialReader {
	r := &serialReader{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		b := make([]byte, 4096)
		for {
			n, err := c.Read(b)
			r.mu.Lock()
			r.buf.Write(b[:n])
			if err != nil {
				r.err = err
			}
			r.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return r
}

func (r *serialReader) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// await waits until the console said s.
func (r *serialReader) await(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(r.text(), s) {
		if time.Now().After(deadline) {
			r.mu.Lock()
			err := r.err
			r.mu.Unlock()
			require.Failf(t, "serial console", "no %q within %s (read error %v); the console said:\n%s", s, within, err, r.text())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serialGoroutines counts the goroutines of open serial consoles.
func serialGoroutines() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("libvirt.openSerialStream"))
}

// TestQEMUSerialConsole boots the tiny guest and talks to its serial console: what it prints arrives, what
// is typed is echoed by the guest's tty, a second client is refused while the first holds the console,
// closing leaves the domain running, and the console ends when the domain stops.
func TestQEMUSerialConsole(t *testing.T) { onEachDaemon(t, testQEMUSerialConsole) }

func testQEMUSerialConsole(t *testing.T, e *qemuEnv) {
	drv := e.driver(t)
	ctx := ctxT(t, 5*time.Minute)
	iso := tinyguest.ISO(t)
	id := uuid.New()
	spec := e.spec(t, id)
	spec.MemoryBytes = 256 << 20
	guestISO := filepath.Join(e.images, "tinyguest-"+id.String()+".iso")
	b, err := os.ReadFile(iso)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(guestISO, b, 0o600))
	e.d.Chown(t, guestISO)
	spec.Disks = append(spec.Disks, driver.DiskSpec{Device: "cdrom", Source: driver.DiskSource{Type: "file", Path: guestISO}})
	spec.Boot = []string{"cdrom", "hd"}
	require.NoError(t, drv.Define(ctx, spec))
	t.Cleanup(func() { _ = drv.Destroy(context.Background(), id); _ = drv.Undefine(context.Background(), id) })

	_, err = drv.OpenSerial(ctx, id)
	require.ErrorIs(t, err, driver.ErrUnavailable, "not running")
	_, err = drv.OpenSerial(ctx, uuid.New())
	require.ErrorIs(t, err, driver.ErrNotFound)

	// Started paused, the guest runs only once its console is open: nothing it prints is missed.
	raw := e.d.Dial(t, e.uri)
	dom, err := raw.DomainLookupByUUID(golibvirt.UUID(id))
	require.NoError(t, err)
	_, err = raw.DomainCreateWithFlags(dom, uint32(golibvirt.DomainStartPaused))
	require.NoError(t, err)
	before := serialGoroutines()
	con, err := drv.OpenSerial(ctx, id)
	require.NoError(t, err)
	out := readSerial(con)
	require.NoError(t, raw.DomainResume(dom))
	out.await(t, tinyguest.LineBooted, 4*time.Minute)
	out.await(t, tinyguest.LineMarker, 4*time.Minute)

	// Typed text reaches the guest: its tty (open, in its default cooked mode) echoes it.
	_, err = con.Write([]byte("openvair-typed\r"))
	require.NoError(t, err)
	out.await(t, "openvair-typed", time.Minute)

	// VIR_DOMAIN_CONSOLE_SAFE: a second client does not take the console over.
	_, err = drv.OpenSerial(ctx, id)
	require.ErrorIs(t, err, driver.ErrUnavailable, "the console is held by the first client")
	t.Logf("a second client: %v", err)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = drv.OpenSerial(cctx, id)
	require.Error(t, err, "a caller that gave up opens nothing")

	start := time.Now()
	require.NoError(t, con.Close())
	t.Logf("close took %v", time.Since(start))
	<-out.done
	st, err := drv.State(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, driver.PowerRunning, st.Power, "closing the console leaves the domain running")
	assert.Equal(t, before, serialGoroutines(), "nothing left of the closed console")
	_, err = con.Write([]byte("x"))
	assert.Error(t, err, "a closed console takes no input")

	// The console is free again; it ends when the domain stops.
	con, err = drv.OpenSerial(ctx, id)
	require.NoError(t, err, "the first client released the console")
	out = readSerial(con)
	require.NoError(t, drv.Destroy(ctx, id))
	select {
	case <-out.done:
		assert.ErrorIs(t, out.err, io.EOF, "the stream ended")
	case <-time.After(30 * time.Second):
		require.Fail(t, "the console did not end with its domain")
	}
	require.NoError(t, con.Close())
	assert.Equal(t, before, serialGoroutines())
}
