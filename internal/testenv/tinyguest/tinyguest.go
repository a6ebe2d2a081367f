// Package tinyguest builds a tiny real Linux guest for integration tests: a bootable ISO (ISOLINUX, Debian's
// kernel, a Go /init) of about 10 MiB that boots under TCG in seconds, prints fixed lines on its serial and VGA
// consoles, counts its boots in a marker at offset 0 of its first virtio disk, and powers off on the ACPI power
// button; and a bootable raw disk image of the same guest (see DiskImage) for VMs that boot from a volume.
//
// When a NoCloud seed is attached (a cdrom holding an ISO 9660 labelled cidata, as openvair's cloud_init
// attaches one), the guest reads it in Go, prints LineCIData followed by meta-data's local-hostname, and adds
// instance-id, hostname and a marker from the user-data to its record (see Record and package guestrec for
// the format and the user-data convention). ReadRecord reads a record back from a raw or qcow2 disk file.
//
// Where the record goes: a guest booted from the ISO writes it at ISORecordOffset (0) of /dev/vda, as it
// always has; a guest booted from DiskImage writes it at DiskRecordOffset (512 KiB), in the gap between the
// MBR and the boot partition.
//
// Both are built from Debian packages (see reference/test-infrastructure.md, "Real guests") at most once per
// machine and cached; see ISO and DiskImage.
package tinyguest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/internal/qcow2"
	"github.com/openvair/openvair/internal/testenv"
	"github.com/openvair/openvair/internal/testenv/tinyguest/guestrec"
)

// Marker starts the record the guest writes on its first virtio disk (/dev/vda).
const Marker = guestrec.Marker

// Console lines the guest prints on its serial console (ttyS0) and VGA console.
const (
	LineBooted   = "tinyguest: booted"                     // /init started
	LineMarker   = "tinyguest: marker written"             // after the marker is on disk (fsync'ed)
	LineNoDisk   = "tinyguest: no disk"                    // no /dev/vda appeared within about 20 s
	LinePowerOff = "tinyguest: power button, powering off" // KEY_POWER seen; the guest powers off
	// LineCIData is followed by meta-data's local-hostname when the guest read a NoCloud seed; it comes
	// before LineMarker, whose record then holds what the seed said.
	LineCIData = "tinyguest: cidata hostname="
)

// SectorSize is the size of the marker record on disk.
const SectorSize = 512

// guestSource is the source of the guest's /init; its hash is part of the cache key.
//
//go:embed guestinit/*.go guestrec/*.go
var guestSource embed.FS

// layoutVersion changes whenever the way the ISO is put together changes (kernel command line, initramfs
// layout, module list), so that cached ISOs built the old way are not reused.
const layoutVersion = "tinyguest-layout-2"

// buildTimeout bounds a whole build (download, extraction, go build, xorriso).
const buildTimeout = 10 * time.Minute

// unavailableError marks a build failure caused by a missing tool or package: ISO skips (or, in CI, fails)
// with its message instead of failing outright.
type unavailableError struct{ msg string }

func (e *unavailableError) Error() string { return e.msg }

func unavailable(format string, args ...any) error {
	return &unavailableError{msg: fmt.Sprintf(format, args...)}
}

// artifact is a file built once per process (and cached per machine by its build function).
type artifact struct {
	once sync.Once
	path string
	err  error
}

// get builds the artifact on first use and returns its path; a missing component makes the test
// unavailable (skip, or fail in CI), another failure fails it.
func (a *artifact) get(t testing.TB, what string, build func(ctx context.Context, logf func(string, ...any)) (string, error)) string {
	t.Helper()
	a.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		a.path, a.err = build(ctx, t.Logf)
	})
	var ue *unavailableError
	switch {
	case errors.As(a.err, &ue):
		testenv.Unavailable(t, "%s: %s", what, ue.msg)
	case a.err != nil:
		t.Fatalf("%s: %v", what, a.err)
	}
	return a.path
}

var isoArtifact artifact

// ISO returns the path of a bootable tiny-guest ISO (El Torito, ISOLINUX, ~10 MiB). It builds it at most once
// per machine and caches it (cache dir: $OPENVAIR_TEST_CACHE/tinyguest if OPENVAIR_TEST_CACHE is set, else
// /var/cache/openvair-test/tinyguest, else the user's cache directory when that one is not writable), keyed by
// the kernel package version and a hash of the guest's source (guestinit and guestrec), so later test
// processes reuse it; a per-process sync.Once plus a file lock (flock) makes concurrent test binaries safe, and
// the ISO is written to a temp name then renamed. When a needed tool or package is missing it calls testenv.Unavailable(t, ...) with the
// apt-get line that fixes it. The caller must not modify or delete the file.
func ISO(t testing.TB) string {
	t.Helper()
	return isoArtifact.get(t, "tiny guest ISO", cachedISO)
}

// ParseMarker reads the marker record from the first 512 bytes of guest disk data (as read from the disk's
// offset 0) and returns the boot count the guest wrote; ok=false when no marker is there.
//
// The record is Marker + " boots=<decimal>\n", padded with NUL bytes to 512 bytes; the first boot writes 1.
func ParseMarker(sector []byte) (boots int, ok bool) {
	if len(sector) > SectorSize {
		sector = sector[:SectorSize]
	}
	m := markerRE.FindSubmatch(sector)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(string(m[1]))
	if err != nil {
		return 0, false
	}
	return n, true
}

var markerRE = regexp.MustCompile(`\A` + regexp.QuoteMeta(Marker) + ` boots=([0-9]{1,9})\n`)

// formatMarker returns the sector the guest writes for a boot count (used by tests).
func formatMarker(boots int) []byte {
	b := make([]byte, SectorSize)
	copy(b, Marker+" boots="+strconv.Itoa(boots)+"\n")
	return b
}

// cacheDir returns (and creates) the directory that holds built ISOs.
func cacheDir() (string, error) {
	var candidates []string
	if d := os.Getenv("OPENVAIR_TEST_CACHE"); d != "" {
		candidates = append(candidates, filepath.Join(d, "tinyguest"))
	} else {
		candidates = append(candidates, "/var/cache/openvair-test/tinyguest")
		if d, err := os.UserCacheDir(); err == nil {
			candidates = append(candidates, filepath.Join(d, "openvair-test", "tinyguest"))
		}
	}
	var errs []error
	for _, d := range candidates {
		if err := os.MkdirAll(d, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if unix.Access(d, unix.W_OK) != nil {
			errs = append(errs, fmt.Errorf("%s is not writable", d))
			continue
		}
		return d, nil
	}
	return "", fmt.Errorf("tinyguest: no usable cache directory: %w", errors.Join(errs...))
}

// sourceHash hashes everything that decides the contents of the ISO apart from the kernel package: the guest's
// source, the Go version that compiles it, and the layout version.
func sourceHash() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", layoutVersion, runtime.Version())
	err := fs.WalkDir(guestSource, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, "_test.go") { // tests are not in the guest
			return err
		}
		b, err := guestSource.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("tinyguest: hash guest source: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// cachedISO returns the cached ISO for the current kernel package and guest source, building it under an
// exclusive file lock when it is missing.
func cachedISO(ctx context.Context, logf func(string, ...any)) (string, error) {
	if err := checkTools(); err != nil {
		return "", err
	}
	pkg, version, err := kernelPackage(ctx)
	if err != nil {
		return "", err
	}
	hash, err := sourceHash()
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s_%s-%s.iso", sanitize(pkg), sanitize(version), hash)
	return cachedFile(ctx, name, pkg+" "+version, logf, func(ctx context.Context, out string) error {
		return build(ctx, pkg, out, logf)
	})
}

// cachedFile returns the path of name in the cache directory, building it with build (into a temporary file
// of the same directory, renamed once complete) under an exclusive file lock when it is missing. from says
// what it is built from, for the log.
func cachedFile(ctx context.Context, name, from string, logf func(string, ...any), build func(ctx context.Context, out string) error) (string, error) {
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	if isFile(path) {
		return path, nil
	}

	lock, err := os.OpenFile(filepath.Join(dir, "build.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return "", fmt.Errorf("tinyguest: open lock file: %w", err)
	}
	defer lock.Close()
	if err := flock(ctx, lock); err != nil {
		return "", err
	}
	defer func() { _ = unix.Flock(int(lock.Fd()), unix.LOCK_UN) }()
	if isFile(path) { // another process built it while we waited
		return path, nil
	}

	start := time.Now()
	tmp, err := os.CreateTemp(dir, ".tinyguest-*"+filepath.Ext(name)+".tmp")
	if err != nil {
		return "", fmt.Errorf("tinyguest: %w", err)
	}
	tmpName := tmp.Name()
	_ = tmp.Close()
	defer os.Remove(tmpName) // a no-op after the rename
	if err := build(ctx, tmpName); err != nil {
		return "", err
	}
	if err := os.Chmod(tmpName, 0o644); err != nil {
		return "", fmt.Errorf("tinyguest: %w", err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return "", fmt.Errorf("tinyguest: %w", err)
	}
	logf("tinyguest: built %s from %s in %v", path, from, time.Since(start).Round(time.Millisecond))
	return path, nil
}

// flock takes an exclusive lock on f, giving up when ctx ends.
func flock(ctx context.Context, f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("tinyguest: lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tinyguest: waiting for another build (lock %s): %w", f.Name(), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Size() > 0
}

// sanitize keeps a package version usable in a file name.
func sanitize(s string) string {
	return string(bytes.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_', r == '+':
			return r
		}
		return '_'
	}, []byte(s)))
}

// ReadQCOW2Marker reads the marker the guest wrote at the start of its disk from a qcow2 image file: the
// boot count, and ok false when there is no marker (yet).
func ReadQCOW2Marker(path string) (boots int, ok bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	r, err := qcow2.NewReader(f)
	if err != nil {
		return 0, false, err
	}
	sector := make([]byte, SectorSize)
	if _, err := r.ReadAt(sector, 0); err != nil {
		return 0, false, err
	}
	boots, ok = ParseMarker(sector)
	return boots, ok, nil
}
