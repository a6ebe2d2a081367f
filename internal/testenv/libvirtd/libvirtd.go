// Package libvirtd starts throwaway session libvirt daemons for integration tests, as described in
// reference/test-infrastructure.md: a short temporary directory holding the daemon's XDG directories, a
// qemu.conf with stdio_handler = "file" (so no virtlogd outlives the test), an unprivileged uid when the test
// runs as root, its own process group and a parent-death signal. The QEMU capability cache is shared by every
// daemon of one test process, so the slow capability probe happens once per run.
//
// StartSystem starts a system-mode daemon (qemu:///system) instead, in a private mount namespace; see
// system.go.
package libvirtd

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/openvair/openvair/internal/testenv"
)

// UnprivilegedUID is the uid (and gid) a daemon started by root runs as ("nobody" on Debian).
const UnprivilegedUID = 65534

// readyTimeout bounds how long Start waits for the daemon's socket.
const readyTimeout = 20 * time.Second

// Daemon is one running throwaway libvirtd.
type Daemon struct {
	t      testing.TB
	bin    string
	dir    string
	cache  string
	uid    int // -1: same uid as the test; system: the libvirt-qemu uid
	mu     sync.Mutex
	cmd    *exec.Cmd
	waited chan struct{}

	// System-mode daemons only (StartSystem).
	system  bool
	gid     int // the libvirt-qemu gid
	logdBin string
	unshare string
	nsenter string
	ctx     context.Context
	cancel  context.CancelFunc
	holder  *proc // owns the mount namespace
	logd    *proc // virtlogd
}

var (
	cacheOnce sync.Once
	cacheDir  string
	cacheErr  error
)

// sharedCache returns the XDG_CACHE_HOME shared by every daemon of this process.
func sharedCache(uid int) (string, error) {
	cacheOnce.Do(func() {
		cacheDir, cacheErr = os.MkdirTemp("", "ovlvc")
		if cacheErr == nil && uid >= 0 {
			cacheErr = os.Chown(cacheDir, uid, uid)
		}
	})
	return cacheDir, cacheErr
}

// CleanupCache removes the capability caches shared by the daemons of this process (session and system).
// Call it from TestMain after m.Run; without it the cache directories stay in the temp directory.
func CleanupCache() {
	if cacheDir != "" {
		_ = os.RemoveAll(cacheDir)
	}
	if sysCacheDir != "" {
		_ = os.RemoveAll(sysCacheDir)
	}
}

// Binary returns the path of libvirtd, or "" when it is not installed.
func Binary() string {
	if p, err := exec.LookPath("libvirtd"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/libvirtd", "/usr/local/sbin/libvirtd"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

// Start starts a throwaway libvirtd and stops it (and every QEMU it started) when the test ends. When
// libvirtd is missing it calls testenv.Unavailable.
func Start(t testing.TB) *Daemon {
	t.Helper()
	bin := Binary()
	if bin == "" {
		testenv.Unavailable(t, "libvirtd not installed (apt-get install libvirt-daemon libvirt-daemon-driver-qemu)")
	}
	uid := -1
	if os.Geteuid() == 0 {
		uid = UnprivilegedUID
	}
	cache, err := sharedCache(uid)
	if err != nil {
		t.Fatalf("libvirtd: cache dir: %v", err)
	}
	// Unix socket paths must stay under 108 bytes: keep the directory short and in /tmp.
	dir, err := os.MkdirTemp("/tmp", "ovlv")
	if err != nil {
		t.Fatalf("libvirtd: temp dir: %v", err)
	}
	d := &Daemon{t: t, bin: bin, dir: dir, cache: cache, uid: uid}
	t.Cleanup(d.cleanup)
	if err := d.prepare(); err != nil {
		t.Fatalf("libvirtd: %v", err)
	}
	if err := d.start(); err != nil {
		t.Fatalf("libvirtd: %v", err)
	}
	return d
}

func (d *Daemon) prepare() error {
	for _, sub := range []string{"config/libvirt", "run", "home", "data"} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o700); err != nil {
			return err
		}
	}
	conf := "# written by internal/testenv/libvirtd\nstdio_handler = \"file\"\n" + displayPorts()
	if err := os.WriteFile(filepath.Join(d.dir, "config/libvirt/qemu.conf"), []byte(conf), 0o600); err != nil {
		return err
	}
	if d.uid < 0 {
		return nil
	}
	return filepath.Walk(d.dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, d.uid, d.uid)
	})
}

func (d *Daemon) start() error {
	var cmd *exec.Cmd
	if d.system {
		var err error
		if cmd, err = d.systemCommand(); err != nil {
			return err
		}
	} else {
		cmd = exec.Command(d.bin, "--timeout", "0")
		cmd.Dir = d.dir
		cmd.Env = []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME=" + filepath.Join(d.dir, "home"),
			"XDG_CONFIG_HOME=" + filepath.Join(d.dir, "config"),
			"XDG_RUNTIME_DIR=" + filepath.Join(d.dir, "run"),
			"XDG_CACHE_HOME=" + d.cache,
			"XDG_DATA_HOME=" + filepath.Join(d.dir, "data"),
		}
	}
	logf, err := os.OpenFile(filepath.Join(d.dir, "libvirtd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	// The credentials are set by the Go runtime (the same as setpriv --reuid --regid --clear-groups) before
	// the parent-death signal, so the signal survives the uid change (setpriv would clear it).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if d.uid >= 0 && !d.system {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(d.uid), Gid: uint32(d.uid), Groups: []uint32{}}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", d.bin, err)
	}
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	d.mu.Lock()
	d.cmd, d.waited = cmd, waited
	d.mu.Unlock()

	deadline := time.Now().Add(readyTimeout)
	for {
		if dialOK(d.Socket()) {
			return nil
		}
		select {
		case <-waited:
			return fmt.Errorf("libvirtd exited during start-up: %s", d.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("socket %s not ready after %s: %s", d.Socket(), readyTimeout, d.logTail())
		}
	}
}

func (d *Daemon) logTail() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "libvirtd.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// Dir is the daemon's private directory (its XDG directories live below it; for a system daemon the
// directories bind-mounted into its namespace, its logs and holder.pid, virtlogd.pid and libvirtd.pid).
func (d *Daemon) Dir() string { return d.dir }

// Socket is the path of the daemon's unix socket (for a system daemon, its /run/libvirt/libvirt-sock seen
// from outside its mount namespace).
func (d *Daemon) Socket() string {
	if d.system {
		return filepath.Join(d.dir, "run/libvirt-sock")
	}
	return filepath.Join(d.dir, "run/libvirt/libvirt-sock")
}

// UID is the uid the QEMU processes of the daemon run as: the daemon's own uid for a session daemon, the
// libvirt-qemu uid for a system daemon (which itself runs as root).
func (d *Daemon) UID() int {
	if d.uid < 0 {
		return os.Geteuid()
	}
	return d.uid
}

// Log returns the end of the daemon's log, for failure messages.
func (d *Daemon) Log() string { return d.logTail() }

// stopDaemon sends SIGTERM to the daemon's process group and waits for it (SIGKILL after 10 s).
func (d *Daemon) stopDaemon() {
	d.mu.Lock()
	cmd, waited := d.cmd, d.waited
	d.cmd = nil
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waited
	}
}

// Restart stops the daemon and starts it again on the same directory and socket. QEMU processes keep
// running and the new daemon reattaches to them, as after a real libvirtd restart.
func (d *Daemon) Restart() {
	d.t.Helper()
	d.StopDaemon()
	d.StartDaemon()
}

// Stop stops the daemon and kills the QEMU processes it started (and a system daemon's virtlogd and
// namespace holder). Cleanup calls it too.
func (d *Daemon) Stop() {
	d.stopDaemon()
	d.killQEMUs()
	if d.system {
		d.stopSystem()
	}
}

func (d *Daemon) cleanup() {
	d.Stop()
	_ = os.RemoveAll(d.dir)
}

// killQEMUs kills the QEMU processes whose pid files lie in the daemon's runtime directory: QEMU is
// daemonized by libvirt (its own session), so it is not in the daemon's process group.
func (d *Daemon) killQEMUs() {
	_ = filepath.Walk(filepath.Join(d.dir, "run"), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || !strings.HasSuffix(p, ".pid") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			return nil
		}
		if !isQEMU(pid) {
			return nil
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 200 && !Gone(pid); i++ { // wait up to 2 s for it to go away
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	})
}

// Dial opens a raw go-libvirt connection to uri through the daemon, closed when the test ends.
func (d *Daemon) Dial(t testing.TB, uri golibvirt.ConnectURI) *golibvirt.Libvirt {
	t.Helper()
	l, err := d.DialErr(uri)
	if err != nil {
		t.Fatalf("libvirtd: connect %s: %v", uri, err)
	}
	t.Cleanup(func() { _ = l.Disconnect() })
	return l
}

// DialErr opens a raw go-libvirt connection to uri; the caller disconnects it.
func (d *Daemon) DialErr(uri golibvirt.ConnectURI) (*golibvirt.Libvirt, error) {
	l := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(d.Socket()), dialers.WithLocalTimeout(5*time.Second)))
	if err := l.ConnectToURI(uri); err != nil {
		return nil, err
	}
	return l, nil
}

// Ping checks that the daemon answers on its socket within ctx.
func (d *Daemon) Ping(ctx context.Context) error {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "unix", d.Socket())
	if err != nil {
		return err
	}
	return c.Close()
}

// Mkdir creates a directory below the daemon's directory for disk images of test domains. A session
// daemon (and its QEMU processes) owns it; for a system daemon it is root's, mode 0710 with the libvirt-qemu
// group, so QEMU can traverse it to the images libvirt gives it (dynamic ownership) and root creates them.
func (d *Daemon) Mkdir(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(d.dir, filepath.Base(name))
	if err := os.MkdirAll(p, 0o700); err != nil {
		t.Fatalf("libvirtd: mkdir: %v", err)
	}
	if d.system {
		if err := os.Chown(p, 0, d.gid); err != nil {
			t.Fatalf("libvirtd: chown %s: %v", p, err)
		}
		if err := os.Chmod(p, 0o710); err != nil {
			t.Fatalf("libvirtd: chmod %s: %v", p, err)
		}
		return p
	}
	d.Chown(t, p)
	return p
}

// Chown gives a file to the uid (and gid) QEMU runs as: the daemon's uid for a session daemon (a no-op
// when the test does not run as root), libvirt-qemu for a system daemon.
func (d *Daemon) Chown(t testing.TB, path string) {
	t.Helper()
	if d.uid < 0 {
		return
	}
	if err := os.Chown(path, d.uid, d.GID()); err != nil {
		t.Fatalf("libvirtd: chown %s: %v", path, err)
	}
}

// dialOK reports whether something accepts connections on the unix socket path.
func dialOK(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}
