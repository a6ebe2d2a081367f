package libvirtd_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/openvair/openvair/internal/testenv"
	"github.com/openvair/openvair/internal/testenv/ganesha"
	"github.com/openvair/openvair/internal/testenv/libvirtd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	code := m.Run()
	libvirtd.CleanupCache()
	os.Exit(code)
}

// needQEMU skips (or fails in CI) without QEMU and qemu-img.
func needQEMU(t *testing.T) {
	t.Helper()
	testenv.LookPath(t, "qemu-system-x86_64")
	testenv.LookPath(t, "qemu-img")
}

// dial connects to uri through d and disconnects when the test ends.
func dial(t *testing.T, d *libvirtd.Daemon, uri golibvirt.ConnectURI) *golibvirt.Libvirt {
	t.Helper()
	l, err := d.DialErr(uri)
	require.NoError(t, err, "connect %s: %s", uri, d.Log())
	t.Cleanup(func() { _ = l.Disconnect() })
	return l
}

// startDomain defines and starts a tiny TCG domain with an empty qcow2 disk in a directory made by d.Mkdir
// and returns the disk's path. The disk is root's: under a system daemon libvirt gives it to QEMU itself.
func startDomain(t *testing.T, d *libvirtd.Daemon, l *golibvirt.Libvirt, name string) (golibvirt.Domain, string) {
	t.Helper()
	disk := filepath.Join(d.Mkdir(t, "images-"+name), name+".qcow2")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", disk, "16M").CombinedOutput()
	require.NoError(t, err, "qemu-img: %s", out)
	if !d.System() {
		d.Chown(t, disk)
	}
	xml := fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='none'/>
  </devices>
</domain>`, name, disk)
	dom, err := l.DomainDefineXML(xml)
	require.NoError(t, err)
	require.NoError(t, l.DomainCreate(dom), "start %s: %s\n%s", name, d.QEMULog(name), d.Log())
	requireRunning(t, l, dom)
	return dom, disk
}

func requireRunning(t *testing.T, l *golibvirt.Libvirt, dom golibvirt.Domain) {
	t.Helper()
	state, _, err := l.DomainGetState(dom, 0)
	require.NoError(t, err)
	require.Equal(t, int32(golibvirt.DomainRunning), state, "domain %s state", dom.Name)
}

// procIDs returns the real uid and gid of a process from /proc/PID/status.
func procIDs(t *testing.T, pid int) (uid, gid int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	field := func(name string) int {
		m := regexp.MustCompile(`(?m)^` + name + `:\s+(\d+)`).FindSubmatch(b)
		require.NotNil(t, m, "%s in /proc/%d/status", name, pid)
		n, err := strconv.Atoi(string(m[1]))
		require.NoError(t, err)
		return n
	}
	return field("Uid"), field("Gid")
}

// hostUUID is the host UUID a daemon reports in its capabilities.
func hostUUID(t *testing.T, l *golibvirt.Libvirt) string {
	t.Helper()
	caps, err := l.ConnectGetCapabilities()
	require.NoError(t, err)
	m := regexp.MustCompile(`(?s)<host>.*?<uuid>([^<]+)</uuid>`).FindStringSubmatch(caps)
	require.NotNil(t, m, "no host uuid in capabilities")
	return m[1]
}

func domainNames(t *testing.T, l *golibvirt.Libvirt) []string {
	t.Helper()
	doms, _, err := l.ConnectListAllDomains(1, 0)
	require.NoError(t, err)
	var names []string
	for _, dom := range doms {
		names = append(names, dom.Name)
	}
	return names
}

// running reports whether pid is a live process (a zombie waiting for PID 1 to reap it does not count).
func running(pid int) bool { return !libvirtd.Gone(pid) }

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err, "pid file %s", path)
	return pid
}

func TestSystemDomainRunsAsLibvirtQEMU(t *testing.T) {
	needQEMU(t)
	start := time.Now()
	d := libvirtd.StartSystem(t)
	t.Logf("system libvirtd ready in %s", time.Since(start))
	require.True(t, d.System())
	assert.Equal(t, "libvirt-qemu", d.QEMUUser())
	assert.NotZero(t, d.UID())
	assert.NotZero(t, d.GID())
	assert.Less(t, len(d.Socket()), 108)

	l := dial(t, d, golibvirt.QEMUSystem)
	uri, err := l.ConnectGetUri()
	require.NoError(t, err)
	assert.Equal(t, "qemu:///system", uri)
	caps, err := l.ConnectGetCapabilities()
	require.NoError(t, err)
	assert.Contains(t, caps, "<domain type='qemu'", "TCG offered")
	assert.NotContains(t, caps, "<domain type='kvm'", "KVM is hidden in the namespace, as for a session daemon")

	start = time.Now()
	dom, disk := startDomain(t, d, l, "tiny")
	t.Logf("domain running in %s", time.Since(start))

	pid, err := d.QEMUPID("tiny")
	require.NoError(t, err)
	uid, gid := procIDs(t, pid)
	assert.Equal(t, d.UID(), uid, "QEMU's uid")
	assert.Equal(t, d.GID(), gid, "QEMU's gid")
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(disk, &st))
	assert.Equal(t, uint32(d.UID()), st.Uid, "dynamic ownership gives the disk to QEMU's user")

	log := d.QEMULog("tiny")
	assert.Contains(t, log, "qemu-system-x86_64", "the QEMU log (written through virtlogd) has the command line")

	// The daemon's state lives in its namespace, not on the host.
	_, err = os.Stat("/run/libvirt/qemu/tiny.pid")
	assert.True(t, errors.Is(err, os.ErrNotExist), "pid file visible on the host: %v", err)
	assert.FileExists(t, filepath.Join(d.Dir(), "run/qemu/tiny.pid"))

	require.NoError(t, l.DomainDestroy(dom))
	_, err = d.QEMUPID("tiny")
	assert.Error(t, err, "no QEMU after destroy")
}

func TestSystemRestartKeepsDomains(t *testing.T) {
	needQEMU(t)
	d := libvirtd.StartSystem(t)
	l, err := d.DialErr(golibvirt.QEMUSystem)
	require.NoError(t, err)
	startDomain(t, d, l, "survivor")
	pid, err := d.QEMUPID("survivor")
	require.NoError(t, err)
	require.NoError(t, l.Disconnect())

	d.StopDaemon()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	assert.Error(t, d.Ping(ctx), "libvirtd still answers after StopDaemon")
	assert.True(t, running(pid), "QEMU died with libvirtd")

	start := time.Now()
	d.StartDaemon()
	t.Logf("libvirtd restarted in %s", time.Since(start))
	l = dial(t, d, golibvirt.QEMUSystem)
	dom, err := l.DomainLookupByName("survivor")
	require.NoError(t, err, d.Log())
	requireRunning(t, l, dom)
	pid2, err := d.QEMUPID("survivor")
	require.NoError(t, err)
	assert.Equal(t, pid, pid2, "the same QEMU process")

	// Restart is StopDaemon + StartDaemon: the domain is still there after it, too.
	d.Restart()
	l = dial(t, d, golibvirt.QEMUSystem)
	dom, err = l.DomainLookupByName("survivor")
	require.NoError(t, err, d.Log())
	requireRunning(t, l, dom)

	// Stop ends everything, QEMU included; StartDaemon brings a daemon back on the same directories, which
	// still knows the persistent domain, now shut off.
	d.Stop()
	assert.False(t, running(pid), "QEMU survived Stop")
	d.StartDaemon()
	l = dial(t, d, golibvirt.QEMUSystem)
	dom, err = l.DomainLookupByName("survivor")
	require.NoError(t, err, d.Log())
	// libvirtd finds the QEMU gone in its reconnect thread, so the domain may look running for a moment.
	assert.Eventually(t, func() bool {
		state, _, err := l.DomainGetState(dom, 0)
		return err == nil && state == int32(golibvirt.DomainShutoff)
	}, 20*time.Second, 50*time.Millisecond, "domain not shut off after Stop")
}

func TestSystemTwoDaemonsDoNotCollide(t *testing.T) {
	needQEMU(t)
	a := libvirtd.StartSystem(t)
	start := time.Now()
	b := libvirtd.StartSystem(t)
	t.Logf("second system libvirtd (warm capability cache) ready in %s", time.Since(start))
	require.NotEqual(t, a.Socket(), b.Socket())

	la := dial(t, a, golibvirt.QEMUSystem)
	lb := dial(t, b, golibvirt.QEMUSystem)
	assert.NotEqual(t, hostUUID(t, la), hostUUID(t, lb), "distinct host_uuid")

	// The same domain name on both: pid files, monitor sockets and logs must not collide.
	startDomain(t, a, la, "twin")
	startDomain(t, b, lb, "twin")
	_, err := lb.DomainDefineXML(`<domain type='qemu'><name>only-b</name><memory unit='MiB'>64</memory>` +
		`<os><type arch='x86_64'>hvm</type></os></domain>`)
	require.NoError(t, err)

	assert.ElementsMatch(t, []string{"twin"}, domainNames(t, la))
	assert.ElementsMatch(t, []string{"twin", "only-b"}, domainNames(t, lb))
	pa, err := a.QEMUPID("twin")
	require.NoError(t, err)
	pb, err := b.QEMUPID("twin")
	require.NoError(t, err)
	assert.NotEqual(t, pa, pb)
	assert.NotEqual(t, a.QEMULog("twin"), "")
	assert.NotEqual(t, b.QEMULog("twin"), "")
}

func TestSystemInNetworkNamespace(t *testing.T) {
	if !ganesha.InNamespace(t) {
		return // the test ran in the namespace
	}
	needQEMU(t)
	d := libvirtd.StartSystem(t)
	l := dial(t, d, golibvirt.QEMUSystem)
	startDomain(t, d, l, "netns")
	pid, err := d.QEMUPID("netns")
	require.NoError(t, err)

	self, err := os.Readlink("/proc/self/ns/net")
	require.NoError(t, err)
	// The parent is the test process that re-executed this one in the namespace.
	outer, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", os.Getppid()))
	require.NoError(t, err)
	qemu, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	require.NoError(t, err)
	assert.Equal(t, self, qemu, "QEMU shares the test's network namespace")
	assert.NotEqual(t, outer, qemu, "the test runs in a private network namespace")
}

func TestSystemCleanupLeavesNothing(t *testing.T) {
	needQEMU(t)
	var dir string
	pids := map[string]int{}
	t.Run("daemon", func(t *testing.T) {
		d := libvirtd.StartSystem(t)
		dir = d.Dir()
		l := dial(t, d, golibvirt.QEMUSystem)
		startDomain(t, d, l, "leftover")
		var err error
		pids["qemu"], err = d.QEMUPID("leftover")
		require.NoError(t, err)
		for _, name := range []string{"holder", "virtlogd", "libvirtd"} {
			pids[name] = readPID(t, filepath.Join(dir, name+".pid"))
		}
		for name, pid := range pids {
			require.True(t, running(pid), "%s (pid %d) runs", name, pid)
		}
	})
	require.Len(t, pids, 4)
	for name, pid := range pids {
		if name == "qemu" {
			// QEMU is daemonized, so PID 1 reaps it; until then it may linger as a zombie.
			assert.False(t, running(pid), "QEMU (pid %d) still runs", pid)
			assert.Eventually(t, func() bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) },
				10*time.Second, 50*time.Millisecond, "QEMU (pid %d) not reaped", pid)
			continue
		}
		assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "%s (pid %d) still exists", name, pid)
	}
	_, err := os.Stat(dir)
	assert.True(t, errors.Is(err, os.ErrNotExist), "private dir %s left behind: %v", dir, err)

	// Nothing was ever mounted in the test's own mount namespace.
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	for _, p := range []string{"/etc/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt",
		"/run/libvirt", "/dev/kvm"} {
		assert.NotContains(t, string(mounts), " "+p+" ", "mount over %s leaked into the test's namespace", p)
	}
}

func TestSessionQEMUPIDAndLog(t *testing.T) {
	needQEMU(t)
	d := libvirtd.Start(t)
	assert.False(t, d.System())
	assert.Equal(t, d.UID(), d.GID())
	if os.Geteuid() == 0 {
		assert.Equal(t, libvirtd.UnprivilegedUID, d.UID())
		assert.Equal(t, "nobody", d.QEMUUser())
	}
	l := dial(t, d, golibvirt.QEMUSession)
	startDomain(t, d, l, "session-vm")
	pid, err := d.QEMUPID("session-vm")
	require.NoError(t, err)
	uid, _ := procIDs(t, pid)
	assert.Equal(t, d.UID(), uid)
	assert.Contains(t, d.QEMULog("session-vm"), "qemu-system-x86_64")

	d.StopDaemon()
	assert.True(t, running(pid), "QEMU survives StopDaemon")
	d.StartDaemon()
	l = dial(t, d, golibvirt.QEMUSession)
	dom, err := l.DomainLookupByName("session-vm")
	require.NoError(t, err)
	requireRunning(t, l, dom)
}
