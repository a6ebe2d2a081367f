// Package loopdev attaches sparse files as loop block devices for tests (LocalFS device mode). Every device
// it attaches is detached in t.Cleanup, even when the test fails.
package loopdev

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openvair/openvair/internal/testenv"
)

// cmdTimeout bounds every losetup call.
const cmdTimeout = 30 * time.Second

// New creates a sparse file of size bytes in a temporary directory, attaches it to a free loop device and
// returns the device path (/dev/loopN). It needs root and losetup; otherwise it calls testenv.Unavailable.
func New(t testing.TB, size int64) string {
	t.Helper()
	return Attach(t, NewBackingFile(t, size))
}

// NewBackingFile creates a sparse file of size bytes in a temporary directory and returns its path.
func NewBackingFile(t testing.TB, size int64) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "loop-*.img")
	if err != nil {
		t.Fatalf("loopdev: create backing file: %v", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatalf("loopdev: size backing file: %v", err)
	}
	return f.Name()
}

// Attach attaches file to a free loop device, returns the device path and detaches it in t.Cleanup.
func Attach(t testing.TB, file string) string {
	t.Helper()
	testenv.RequireRoot(t)
	losetup := testenv.LookPath(t, "losetup")
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, losetup, "-f", "--show", file).Output()
	if err != nil {
		testenv.Unavailable(t, "losetup -f --show %s: %v (%s)", file, err, stderr(err))
	}
	dev := strings.TrimSpace(string(out))
	if !strings.HasPrefix(dev, "/dev/loop") {
		t.Fatalf("loopdev: losetup printed %q", dev)
	}
	t.Cleanup(func() { Detach(t, dev) })
	return dev
}

// Detach detaches a loop device; detaching one that is already gone is not an error. Tests normally leave
// this to the cleanup registered by Attach; call it to simulate a device that disappears.
func Detach(t testing.TB, dev string) {
	t.Helper()
	losetup, err := exec.LookPath("losetup")
	if err != nil {
		t.Errorf("loopdev: losetup missing, cannot detach %s", dev)
		return
	}
	backing, _ := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(dev), "loop", "backing_file"))
	if len(backing) == 0 {
		return // not attached any more
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, losetup, "-d", dev).CombinedOutput(); err != nil {
		t.Errorf("loopdev: losetup -d %s: %v (%s)", dev, err, strings.TrimSpace(string(out)))
	}
}

func stderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}
