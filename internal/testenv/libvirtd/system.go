package libvirtd

// System-mode daemons (qemu:///system, run as root), as a real host runs them but without touching the host's
// libvirt: every daemon lives in its own mount namespace, held open by a "holder" process.
//
//	holder:   unshare --mount --propagation private -- /bin/sh -c '<bind mounts>; exec sleep infinity'
//	virtlogd: nsenter --mount=/proc/<holder>/ns/mnt -- virtlogd -f /etc/libvirt/virtlogd.conf -p D/virtlogd.pid
//	libvirtd: nsenter --mount=/proc/<holder>/ns/mnt -- libvirtd -f /etc/libvirt/libvirtd.conf -p D/libvirtd.pid
//
// The holder bind-mounts the daemon's private directory D over the system paths:
//
//	D/etc -> /etc/libvirt          (libvirtd.conf, qemu.conf, virtlogd.conf, persistent domain XML)
//	D/lib -> /var/lib/libvirt      (QEMU monitor sockets, domain state)
//	D/log -> /var/log/libvirt      (D/log/qemu/<domain>.log, written by virtlogd)
//	cache -> /var/cache/libvirt    (QEMU capability cache, shared by the system daemons of one test process)
//	D/run -> /run/libvirt          (D/run/libvirt-sock is the daemon's socket; D/run/qemu/<domain>.pid)
//
// Each process has its own process group and a parent-death signal; QEMU is daemonized by libvirt (its own
// session) and runs in the holder's mount namespace, so it survives StopDaemon and StartDaemon reattaches to
// it. Only mount namespaces are new: the daemons and QEMU share the network namespace of the test process
// (for instance the one ganesha.InNamespace made). D also holds holder.pid, virtlogd.pid, libvirtd.pid and
// the daemons' logs.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openvair/openvair/internal/testenv"
)

// QEMUSystemUser is the user (and group) QEMU runs as under a system daemon, as on Debian.
const QEMUSystemUser = "libvirt-qemu"

// systemPath is the PATH of the system daemons and the commands the harness runs.
const systemPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// cmdTimeout bounds every short command the harness runs (useradd, groupadd).
const cmdTimeout = 30 * time.Second

// proc is a long-running helper process of a system daemon (the holder or virtlogd).
type proc struct {
	cmd    *exec.Cmd
	waited chan struct{}
}

// stop kills the process group of p and waits for the process.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.waited:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.waited
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.waited:
		return true
	default:
		return false
	}
}

var (
	sysCacheOnce sync.Once
	sysCacheDir  string
	sysCacheErr  error
)

// sharedSystemCache returns the /var/cache/libvirt shared by the system daemons of this process. Sharing is
// safe: libvirt validates every cache entry (binary ctimes, kernel, microcode) and probes again when an
// entry does not load.
func sharedSystemCache() (string, error) {
	sysCacheOnce.Do(func() {
		sysCacheDir, sysCacheErr = os.MkdirTemp("/tmp", "ovlsc")
		if sysCacheErr == nil {
			sysCacheErr = os.Chmod(sysCacheDir, 0o755)
		}
	})
	return sysCacheDir, sysCacheErr
}

// StartSystem starts a throwaway system-mode libvirtd (URI qemu:///system, run as root) that never touches a
// host daemon: it runs in its own mount namespace with private directories bind-mounted over /etc/libvirt,
// /var/lib/libvirt, /var/log/libvirt (with qemu/), /var/cache/libvirt and /run/libvirt, so several can run at once
// (distinct host_uuid each). QEMU runs as the libvirt-qemu user with dynamic ownership; virtlogd runs first.
// Needs root; calls testenv.Unavailable when libvirtd/virtlogd/unshare are missing or not root.
//
// The libvirt-qemu user and group and the kvm group are created on the host when missing (as Debian's
// libvirt-daemon-system does), and the empty mount points /var/lib/libvirt, /var/log/libvirt,
// /var/cache/libvirt and /run/libvirt are created when missing. The daemon, virtlogd, the namespace and
// every QEMU of the daemon go away when the test ends.
func StartSystem(t testing.TB) *Daemon {
	t.Helper()
	testenv.RequireRoot(t)
	bin := Binary()
	if bin == "" {
		testenv.Unavailable(t, "libvirtd not installed (apt-get install libvirt-daemon libvirt-daemon-driver-qemu)")
	}
	logd := sbinLookPath(t, "virtlogd")
	unshare := sbinLookPath(t, "unshare")
	nsenter := sbinLookPath(t, "nsenter")
	sbinLookPath(t, "mount")
	uid, gid, err := ensureQEMUUser(t)
	if err != nil {
		t.Fatalf("libvirtd: %v", err)
	}
	cache, err := sharedSystemCache()
	if err != nil {
		t.Fatalf("libvirtd: cache dir: %v", err)
	}
	// Unix socket paths must stay under 108 bytes: keep the directory short and in /tmp.
	dir, err := os.MkdirTemp("/tmp", "ovls")
	if err != nil {
		t.Fatalf("libvirtd: temp dir: %v", err)
	}
	d := &Daemon{t: t, bin: bin, dir: dir, cache: cache, uid: uid, gid: gid, system: true,
		logdBin: logd, unshare: unshare, nsenter: nsenter}
	// The daemons live until Stop, or at the latest until the test binary's deadline.
	if deadline, ok := testDeadline(t); ok {
		d.ctx, d.cancel = context.WithDeadline(context.Background(), deadline)
	} else {
		d.ctx, d.cancel = context.WithCancel(context.Background())
	}
	t.Cleanup(d.cleanup)
	if err := d.prepareSystem(); err != nil {
		t.Fatalf("libvirtd: %v", err)
	}
	if err := d.startHolder(); err != nil {
		t.Fatalf("libvirtd: %v", err)
	}
	if err := d.startVirtlogd(); err != nil {
		t.Fatalf("libvirtd: %v", err)
	}
	if err := d.start(); err != nil {
		t.Fatalf("libvirtd: %v", err)
	}
	return d
}

// testDeadline is the deadline of the test binary (a *testing.B has none).
func testDeadline(t testing.TB) (time.Time, bool) {
	if dl, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		return dl.Deadline()
	}
	return time.Time{}, false
}

// sbinLookPath finds a binary in PATH or the sbin directories (root's PATH may lack them).
func sbinLookPath(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	testenv.Unavailable(t, "%s not installed", name)
	return ""
}

// ensureQEMUUser creates the kvm group and the libvirt-qemu user and group when they are missing (libvirtd
// exits at start-up without them) and returns the uid and gid QEMU runs as. Concurrent test binaries
// serialize on a lock file; useradd's own lock on /etc/passwd can still be busy (another tool), so it retries.
func ensureQEMUUser(t testing.TB) (uid, gid int, err error) {
	t.Helper()
	if uid, gid, ok := lookupQEMUUser(); ok {
		return uid, gid, nil
	}
	groupadd := sbinLookPath(t, "groupadd")
	useradd := sbinLookPath(t, "useradd")
	lock, err := os.OpenFile("/tmp/openvair-testenv-libvirt-qemu-user.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return 0, 0, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return 0, 0, fmt.Errorf("lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it anyway

	if _, err := user.LookupGroup("kvm"); err != nil {
		// groupadd exits 9 when the group exists (someone else made it meanwhile).
		if err := retryCmd(groupadd, []int{9}, "--system", "kvm"); err != nil {
			return 0, 0, err
		}
	}
	if _, err := user.Lookup(QEMUSystemUser); err != nil {
		args := []string{"--system", "--no-create-home", "--home-dir", "/var/lib/libvirt",
			"--shell", "/usr/sbin/nologin", "--groups", "kvm"}
		if _, err := user.LookupGroup(QEMUSystemUser); err == nil {
			args = append(args, "--gid", QEMUSystemUser)
		} else {
			args = append(args, "--user-group")
		}
		// useradd exits 9 when the user exists.
		if err := retryCmd(useradd, []int{9}, append(args, QEMUSystemUser)...); err != nil {
			return 0, 0, err
		}
	}
	uid, gid, ok := lookupQEMUUser()
	if !ok {
		return 0, 0, fmt.Errorf("user or group %s still missing after useradd", QEMUSystemUser)
	}
	return uid, gid, nil
}

func lookupQEMUUser() (uid, gid int, ok bool) {
	u, err := user.Lookup(QEMUSystemUser)
	if err != nil {
		return 0, 0, false
	}
	g, err := user.LookupGroup(QEMUSystemUser)
	if err != nil {
		return 0, 0, false
	}
	if _, err := user.LookupGroup("kvm"); err != nil {
		return 0, 0, false
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(g.Gid)
	return uid, gid, err1 == nil && err2 == nil
}

// retryCmd runs bin with args, treating the exit codes in ok as success, and retries for a while when it
// fails otherwise (a busy /etc/passwd or /etc/group lock).
func retryCmd(bin string, ok []int, args ...string) error {
	var last error
	for attempt := 0; attempt < 20; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = []string{systemPath}
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil {
			return nil
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			for _, code := range ok {
				if exit.ExitCode() == code {
					return nil
				}
			}
		}
		last = fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		time.Sleep(time.Duration(50+25*attempt) * time.Millisecond)
	}
	return last
}

// prepareSystem lays out the private directories and configuration files of a system daemon.
func (d *Daemon) prepareSystem() error {
	// QEMU (libvirt-qemu) must traverse D to reach disk images in directories made by Mkdir.
	if err := os.Chmod(d.dir, 0o711); err != nil {
		return err
	}
	for _, sub := range []string{"etc", "lib", "log/qemu", "run"} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o755); err != nil {
			return err
		}
	}
	hostUUID, err := randomUUID()
	if err != nil {
		return err
	}
	files := map[string]string{
		"libvirtd.conf": fmt.Sprintf(`# written by internal/testenv/libvirtd
host_uuid = %q
listen_tls = 0
listen_tcp = 0
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:%s"
`, hostUUID, filepath.Join(d.dir, "libvirtd.log")),
		"qemu.conf": `# written by internal/testenv/libvirtd
user = "libvirt-qemu"
group = "libvirt-qemu"
dynamic_ownership = 1
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "logd"
` + displayPorts(),
		"virtlogd.conf": fmt.Sprintf(`# written by internal/testenv/libvirtd
log_outputs = "3:file:%s"
`, filepath.Join(d.dir, "virtlogd.log")),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(d.dir, "etc", name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func randomUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// startProc starts a long-running helper in its own process group with a parent-death signal; cancelling
// the daemon's context kills its group.
func (d *Daemon) startProc(logName, bin string, args ...string) (*proc, error) {
	cmd := exec.CommandContext(d.ctx, bin, args...)
	cmd.Dir = "/"
	cmd.Env = []string{systemPath}
	logf, err := os.OpenFile(filepath.Join(d.dir, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{cmd: cmd, waited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.waited) }()
	return p, nil
}

// startHolder starts the process that owns the daemon's mount namespace and makes the bind mounts in it.
func (d *Daemon) startHolder() error {
	parentNS, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return err
	}
	for _, s := range []string{d.dir, d.cache, parentNS} {
		if strings.ContainsAny(s, "'\n") {
			return fmt.Errorf("unexpected character in %q", s)
		}
	}
	// KVM is hidden in the namespace (an empty root-only file over /dev/kvm), so the daemon offers TCG only,
	// like the session daemon, whatever /dev/kvm's mode on the host. With /dev/kvm root-only (no udev here)
	// libvirt would otherwise probe QEMU with KVM, find /dev/kvm unusable for libvirt-qemu, throw the
	// capabilities away and probe again on every call (~4 s each).
	hideKVM := ""
	if _, err := os.Stat("/dev/kvm"); err == nil {
		if err := os.WriteFile(filepath.Join(d.dir, "nokvm"), nil, 0o600); err != nil {
			return err
		}
		hideKVM = fmt.Sprintf("mount --bind '%s/nokvm' /dev/kvm\n", d.dir)
	}
	// Only paths generated by the harness go into the script. The first line refuses to mount anything
	// unless unshare really gave the shell a new mount namespace.
	script := fmt.Sprintf(`set -e
[ "$(readlink /proc/self/ns/mnt)" != '%[3]s' ] || { echo 'no new mount namespace' >&2; exit 1; }
mkdir -p /etc/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /run/libvirt
mount --bind '%[1]s/etc' /etc/libvirt
mount --bind '%[1]s/lib' /var/lib/libvirt
mount --bind '%[1]s/log' /var/log/libvirt
mount --bind '%[2]s' /var/cache/libvirt
mount --bind '%[1]s/run' /run/libvirt
%[4]secho $$ > '%[1]s/holder.pid.tmp'
mv '%[1]s/holder.pid.tmp' '%[1]s/holder.pid'
exec sleep infinity
`, d.dir, d.cache, parentNS, hideKVM)
	_ = os.Remove(filepath.Join(d.dir, "holder.pid"))
	p, err := d.startProc("holder.log", d.unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.holder = p
	d.mu.Unlock()
	return d.waitFor("namespace holder", p, func() bool {
		b, err := os.ReadFile(filepath.Join(d.dir, "holder.pid"))
		return err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(p.cmd.Process.Pid)
	}, "holder.log")
}

// nsArgs prefixes a command so that it runs in the holder's mount namespace.
func (d *Daemon) nsArgs(bin string, args ...string) []string {
	return append([]string{fmt.Sprintf("--mount=/proc/%d/ns/mnt", d.holder.cmd.Process.Pid), "--", bin}, args...)
}

// startVirtlogd starts virtlogd in the foreground (so it stays in its process group) in the namespace.
func (d *Daemon) startVirtlogd() error {
	p, err := d.startProc("virtlogd.out", d.nsenter, d.nsArgs(d.logdBin,
		"-f", "/etc/libvirt/virtlogd.conf", "-p", filepath.Join(d.dir, "virtlogd.pid"))...)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.logd = p
	d.mu.Unlock()
	sock := filepath.Join(d.dir, "run/virtlogd-sock")
	return d.waitFor("virtlogd", p, func() bool { return dialOK(sock) }, "virtlogd.out")
}

// systemCommand is the libvirtd command of a system daemon. After Stop it first brings the namespace
// holder and virtlogd back (the private directories are still there).
func (d *Daemon) systemCommand() (*exec.Cmd, error) {
	if d.holder == nil {
		if deadline, ok := testDeadline(d.t); ok {
			d.ctx, d.cancel = context.WithDeadline(context.Background(), deadline)
		} else {
			d.ctx, d.cancel = context.WithCancel(context.Background())
		}
		if err := d.startHolder(); err != nil {
			return nil, err
		}
		if err := d.startVirtlogd(); err != nil {
			return nil, err
		}
	}
	cmd := exec.CommandContext(d.ctx, d.nsenter, d.nsArgs(d.bin,
		"-f", "/etc/libvirt/libvirtd.conf", "-p", filepath.Join(d.dir, "libvirtd.pid"))...)
	cmd.Dir = "/"
	cmd.Env = []string{systemPath}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd, nil
}

// waitFor polls ready until it holds, p exits or readyTimeout passes.
func (d *Daemon) waitFor(what string, p *proc, ready func() bool, logName string) error {
	deadline := time.Now().Add(readyTimeout)
	for !ready() {
		if p.exited() {
			b, _ := os.ReadFile(filepath.Join(d.dir, logName))
			return fmt.Errorf("%s exited during start-up: %s", what, strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s", what, readyTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// stopSystem ends virtlogd and the namespace holder of a system daemon (libvirtd and QEMU must be gone).
func (d *Daemon) stopSystem() {
	d.mu.Lock()
	logd, holder := d.logd, d.holder
	d.logd, d.holder = nil, nil
	d.mu.Unlock()
	logd.stop(syscall.SIGTERM, 5*time.Second)
	holder.stop(syscall.SIGKILL, 5*time.Second)
	if d.cancel != nil {
		d.cancel()
	}
}

// System reports whether the daemon is a system-mode daemon started by StartSystem.
func (d *Daemon) System() bool { return d.system }

// GID is the gid the QEMU processes of the daemon run as: the libvirt-qemu group for a system daemon, the
// same as UID for a session daemon.
func (d *Daemon) GID() int {
	if d.system {
		return d.gid
	}
	return d.UID()
}

// QEMUUser is the user QEMU runs as: "libvirt-qemu" for a system daemon; for a session daemon the name of
// the daemon's user, or its uid as a string when it has no name.
func (d *Daemon) QEMUUser() string {
	if d.system {
		return QEMUSystemUser
	}
	uid := strconv.Itoa(d.UID())
	if u, err := user.LookupId(uid); err == nil {
		return u.Username
	}
	return uid
}

// StopDaemon stops libvirtd only (SIGTERM to its process group, SIGKILL after 10 s). QEMU processes (and a
// system daemon's virtlogd and namespace) keep running.
func (d *Daemon) StopDaemon() { d.stopDaemon() }

// StartDaemon starts libvirtd again on the same directories (a system daemon in the same mount namespace,
// so it reattaches to the QEMU processes that kept running). It fails the test on error.
func (d *Daemon) StartDaemon() {
	d.t.Helper()
	if err := d.start(); err != nil {
		d.t.Fatalf("libvirtd start: %v", err)
	}
}

// qemuPIDFile is where libvirt keeps the pid of a domain's QEMU.
func (d *Daemon) qemuPIDFile(domainName string) string {
	name := filepath.Base(domainName) + ".pid"
	if d.system {
		return filepath.Join(d.dir, "run/qemu", name)
	}
	return filepath.Join(d.dir, "run/libvirt/qemu/run", name)
}

// QEMUPID returns the pid of the running QEMU of a domain, from the daemon's pid file for it.
func (d *Daemon) QEMUPID(domainName string) (int, error) {
	p := d.qemuPIDFile(domainName)
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file %s: bad content %q", p, b)
	}
	if !isQEMU(pid) {
		return 0, fmt.Errorf("pid %d (from %s) is not a running QEMU", pid, p)
	}
	return pid, nil
}

// QEMULog returns the content of the domain's QEMU log file ("" when there is none), for failure messages.
func (d *Daemon) QEMULog(domainName string) string {
	name := filepath.Base(domainName) + ".log"
	p := filepath.Join(d.cache, "libvirt/qemu/log", name)
	if d.system {
		p = filepath.Join(d.dir, "log/qemu", name)
	}
	b, _ := os.ReadFile(p)
	return string(b)
}

// isQEMU reports whether pid is a live (not zombie) process whose command line mentions qemu.
func isQEMU(pid int) bool {
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.Contains(string(cmdline), "qemu") && !Gone(pid)
}

// Gone reports whether pid no longer runs: it does not exist or is a zombie waiting for its parent (QEMU is
// reparented to PID 1, which may reap it only seconds later).
func Gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesized command name, which may itself contain ") ".
	s := string(b)
	i := strings.LastIndex(s, ") ")
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}
