package libvirt_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/drivertest"
	"github.com/openvair/openvair/driver/libvirt"
	"github.com/openvair/openvair/internal/testenv"
	"github.com/openvair/openvair/internal/testenv/libvirtd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"libvirt.org/go/libvirtxml"
)

// qemuEnv is a daemon running real QEMU (TCG) and a directory for the disk images of its domains.
type qemuEnv struct {
	d      *libvirtd.Daemon
	uri    golibvirt.ConnectURI
	images string
}

// startQEMU starts a session daemon (QEMU runs as the daemon's unprivileged user).
func startQEMU(t *testing.T) *qemuEnv { return startQEMUWith(t, libvirtd.Start, golibvirt.QEMUSession) }

// startQEMUSystem starts a system daemon as a real host runs it (QEMU as libvirt-qemu, virtlogd).
func startQEMUSystem(t *testing.T) *qemuEnv {
	return startQEMUWith(t, libvirtd.StartSystem, golibvirt.QEMUSystem)
}

func startQEMUWith(t *testing.T, start func(testing.TB) *libvirtd.Daemon, uri golibvirt.ConnectURI) *qemuEnv {
	t.Helper()
	testenv.LookPath(t, "qemu-system-x86_64")
	testenv.LookPath(t, "qemu-img")
	d := start(t)
	return &qemuEnv{d: d, uri: uri, images: d.Mkdir(t, "images")}
}

// qemuDaemons are the two ways to run real QEMU: every real-QEMU test runs on both.
var qemuDaemons = []struct {
	name  string
	start func(*testing.T) *qemuEnv
}{{"session", startQEMU}, {"system", startQEMUSystem}}

// onEachDaemon runs fn as a subtest per daemon kind.
func onEachDaemon(t *testing.T, fn func(t *testing.T, e *qemuEnv)) {
	for _, k := range qemuDaemons {
		t.Run(k.name, func(t *testing.T) { fn(t, k.start(t)) })
	}
}

// driver opens the driver on the env's daemon (TCG: the test hosts cannot run KVM guests).
func (e *qemuEnv) driver(t *testing.T) *libvirt.Driver { return e.open(t) }

func (e *qemuEnv) open(t testing.TB) *libvirt.Driver {
	return openDriver(t, e.d, e.uri, func(o *libvirt.Options) { o.DomainType = "qemu" })
}

// qcow2 creates a qcow2 fixture with qemu-img, owned by the daemon's uid.
func (e *qemuEnv) qcow2(t *testing.T, id uuid.UUID) string {
	t.Helper()
	p := filepath.Join(e.images, "volume-"+id.String())
	out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", p, "64M").CombinedOutput()
	require.NoError(t, err, "qemu-img: %s", out)
	e.d.Chown(t, p)
	return p
}

// iso writes a minimal ISO 9660 fixture (primary volume descriptor and terminator), owned by the daemon.
func (e *qemuEnv) iso(t *testing.T, id uuid.UUID) string {
	t.Helper()
	const sector = 2048
	img := make([]byte, 18*sector)
	pvd := img[16*sector:]
	pvd[0] = 1
	copy(pvd[1:], "CD001")
	pvd[6] = 1
	copy(pvd[40:], []byte(strings.Repeat(" ", 32)))
	copy(pvd[40:], "OPENVAIR_TEST")
	term := img[17*sector:]
	term[0] = 255
	copy(term[1:], "CD001")
	term[6] = 1
	p := filepath.Join(e.images, "image-"+id.String())
	require.NoError(t, os.WriteFile(p, img, 0o600))
	e.d.Chown(t, p)
	return p
}

// spec is a TCG domain with a qcow2 disk and VNC on loopback (no CPU mode: TCG has no host CPU).
func (e *qemuEnv) spec(t *testing.T, id uuid.UUID) driver.DomainSpec {
	return driver.DomainSpec{
		ID: id, Name: "vm", MemoryBytes: 64 << 20,
		CPU: driver.CPUSpec{Sockets: 1, Cores: 1, Threads: 1},
		Disks: []driver.DiskSpec{{
			Device: "disk", Bus: "virtio", Format: driver.FormatQCOW2,
			Source: driver.DiskSource{Type: "file", Path: e.qcow2(t, id)},
		}},
		Graphics: driver.GraphicsSpec{Type: "vnc", Listen: "127.0.0.1"},
	}
}

func TestConformanceQEMU(t *testing.T) {
	onEachDaemon(t, func(t *testing.T, e *qemuEnv) {
		h := drivertest.HypervisorHarness{
			Hypervisor: e.driver(t),
			Spec:       e.spec,
			RealQEMU:   true,
			Open:       func(t testing.TB) driver.Hypervisor { return e.open(t) },
		}
		rawHarness(t, e.d, e.uri, &h)
		drivertest.RunHypervisorSuite(t, h)
	})
}

// TestQEMUDisksAndVNC boots a VM with a qcow2 volume and an ISO cdrom: both disks are in the live XML and
// the VNC port answers with the RFB greeting.
func TestQEMUDisksAndVNC(t *testing.T) { onEachDaemon(t, testQEMUDisksAndVNC) }

func testQEMUDisksAndVNC(t *testing.T, e *qemuEnv) {
	drv := e.driver(t)
	ctx := ctxT(t, 2*time.Minute)
	id := uuid.New()
	spec := e.spec(t, id)
	iso := e.iso(t, id)
	spec.Disks = append(spec.Disks, driver.DiskSpec{Device: "cdrom", Source: driver.DiskSource{Type: "file", Path: iso}})
	spec.Boot = []string{"cdrom", "hd"}
	require.NoError(t, drv.Define(ctx, spec))
	t.Cleanup(func() { _ = drv.Destroy(context.Background(), id); _ = drv.Undefine(context.Background(), id) })
	require.NoError(t, drv.Start(ctx, id))
	st, err := drv.State(ctx, id)
	require.NoError(t, err)
	require.Equal(t, driver.PowerRunning, st.Power)

	raw := e.d.Dial(t, e.uri)
	dom, err := raw.DomainLookupByUUID(golibvirt.UUID(id))
	require.NoError(t, err)
	live, err := raw.DomainGetXMLDesc(dom, 0)
	require.NoError(t, err)
	var ld libvirtxml.Domain
	require.NoError(t, ld.Unmarshal(live))
	require.Len(t, ld.Devices.Disks, 2)
	got := map[string]string{}
	for _, dk := range ld.Devices.Disks {
		got[dk.Device] = dk.Source.File.File + " " + dk.Target.Bus + " " + dk.Driver.Type
	}
	assert.Equal(t, spec.Disks[0].Source.Path+" virtio qcow2", got["disk"])
	assert.Equal(t, iso+" sata raw", got["cdrom"])
	assert.Equal(t, "qemu", ld.Type, "TCG domain")

	c, err := drv.Console(ctx, id)
	require.NoError(t, err)
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), 10*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	greeting := make([]byte, 12)
	_, err = io.ReadFull(bufio.NewReader(conn), greeting)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(greeting), "RFB "), "VNC greeting %q", greeting)
}

// TestQEMURestartReconnect restarts libvirtd: the event channel closes, the driver reconnects, the
// persistent definition is still there, WatchStates can be resubscribed and reports a real QEMU boot.
// (No VM runs across the restart: libvirt reattaches to running QEMU in the background and that is
// libvirt's business, not the driver's.)
func TestQEMURestartReconnect(t *testing.T) { onEachDaemon(t, testQEMURestartReconnect) }

func testQEMURestartReconnect(t *testing.T, e *qemuEnv) {
	drv := e.driver(t)
	ctx := ctxT(t, 2*time.Minute)
	id := uuid.New()
	require.NoError(t, drv.Define(ctx, e.spec(t, id)))
	t.Cleanup(func() { _ = drv.Destroy(context.Background(), id); _ = drv.Undefine(context.Background(), id) })

	ch, err := drv.WatchStates(ctx)
	require.NoError(t, err)
	e.d.Restart()
	requireClosed(t, ch)

	ch = resubscribe(t, drv, ctx)
	st, err := drv.State(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, driver.PowerShutOff, st.Power, "the persistent definition survives the restart")
	require.NoError(t, drv.Start(ctx, id))
	awaitEvent(t, ch, id, driver.PowerRunning)
	require.NoError(t, drv.Destroy(ctx, id))
	awaitEvent(t, ch, id, driver.PowerShutOff)
}

// requireClosed waits for ch to be closed, skipping events.
func requireClosed(t *testing.T, ch <-chan driver.StateEvent) {
	t.Helper()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timer.C:
			require.Fail(t, "event channel not closed after the connection was lost")
		}
	}
}

// resubscribe retries WatchStates until the driver has reconnected.
func resubscribe(t *testing.T, drv *libvirt.Driver, ctx context.Context) <-chan driver.StateEvent {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ch, err := drv.WatchStates(ctx)
		if err == nil {
			return ch
		}
		require.ErrorIs(t, err, driver.ErrUnavailable)
		require.True(t, time.Now().Before(deadline), "driver did not reconnect: %v", err)
		time.Sleep(50 * time.Millisecond)
	}
}

func awaitEvent(t *testing.T, ch <-chan driver.StateEvent, id uuid.UUID, want driver.PowerState) driver.StateEvent {
	t.Helper()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			require.True(t, ok, "event channel closed while waiting for %s", want)
			if ev.ID == id && ev.State == want {
				return ev
			}
		case <-timer.C:
			require.Failf(t, "no event", "no %s event for %s", want, id)
		}
	}
}
