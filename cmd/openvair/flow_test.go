package main_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// isoFile writes a small ISO 9660 image (a volume descriptor at 32 KiB) and returns its path.
func isoFile(t *testing.T, name string) string {
	b := make([]byte, 64<<10)
	copy(b[32768:], "\x01CD001\x01")
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p
}

// TestFlowFake drives the whole life of storages, volumes, snapshots, an image and a VM through the CLI
// on the fake backends, checks the JSON output, and the human tables against golden files.
func TestFlowFake(t *testing.T) {
	s := startServer(t, serverOptions{})

	pool := jsonOf[storage.Storage](t, s, "storage", "create", "pool", "--type", "fake", "--config", "name=pool", "--description", "the pool")
	assert.Equal(t, "pool", pool.Name)
	assert.Equal(t, storage.Type("fake"), pool.Type)
	assert.Equal(t, storage.StatusAvailable, pool.Status)
	assert.EqualValues(t, 1<<40, pool.Capacity)
	second := jsonOf[storage.Storage](t, s, "storage", "create", "second", "--type", "fake", "--config-json", `{"name":"second"}`)

	diskA := jsonOf[volume.Volume](t, s, "volume", "create", "disk-a", "--storage", "pool", "--size", "1GiB")
	assert.Equal(t, pool.ID, diskA.StorageID, "the storage named by name")
	assert.EqualValues(t, 1<<30, diskA.Size)
	assert.Equal(t, volume.FormatQCOW2, diskA.Format, "qcow2 by default")
	diskB := jsonOf[volume.Volume](t, s, "volume", "create", "disk-b", "--storage", second.ID.String(), "--size", "512MiB", "--format", "raw")
	assert.Equal(t, volume.FormatRaw, diskB.Format)
	twin := jsonOf[volume.Volume](t, s, "volume", "create", "disk-a", "--storage", "second", "--size", "1MiB")

	r := s.fails(t, 2, "volume", "show", "disk-a")
	assert.Contains(t, r.Err, diskA.ID.String(), "an ambiguous name lists the candidates")
	assert.Contains(t, r.Err, twin.ID.String())
	got := jsonOf[volume.Volume](t, s, "volume", "extend", diskA.ID.String()[:13], "--size", "2GiB")
	assert.EqualValues(t, 2<<30, got.Size, "a unique id prefix names a volume")
	s.ok(t, "volume", "delete", twin.ID.String())

	// Snapshots, on a real LocalFS storage (the fake backend keeps none).
	local := jsonOf[storage.Storage](t, s, "storage", "create", "local", "--type", "localfs", "--config", "path="+filepath.Join(s.Dir, "local"))
	disk := jsonOf[volume.Volume](t, s, "volume", "create", "disk-s", "--storage", "local", "--size", "16MiB")
	snap := jsonOf[volume.Snapshot](t, s, "volume", "snapshot", "create", "disk-s", "before")
	assert.Equal(t, disk.ID, snap.VolumeID)
	snaps := jsonOf[[]volume.Snapshot](t, s, "volume", "snapshot", "list", "disk-s")
	require.Len(t, snaps, 1)
	assert.Equal(t, "before", snaps[0].Name)
	assert.Contains(t, s.ok(t, "volume", "snapshot", "list", "disk-s"), "before")
	reverted := jsonOf[volume.Volume](t, s, "volume", "snapshot", "revert", snap.ID.String())
	assert.Equal(t, disk.ID, reverted.ID)
	s.fails(t, 4, "volume", "delete", "disk-s") // it has a snapshot
	s.ok(t, "volume", "snapshot", "delete", snap.ID.String())
	s.ok(t, "volume", "delete", "disk-s")
	s.ok(t, "storage", "delete", local.ID.String())

	iso := isoFile(t, "boot.iso")
	up := s.run(t, nil, nil, "image", "upload", iso, "--storage", "pool", "--progress=plain", "-o", "json")
	require.Equal(t, 0, up.Code, "%s", up.Err)
	var img image.Image
	require.NoError(t, json.Unmarshal([]byte(up.Out), &img), up.Out)
	assert.Equal(t, "boot.iso", img.Name, "named after the file")
	assert.Equal(t, image.FormatISO, img.Format)
	assert.EqualValues(t, 64<<10, img.Size)
	assert.Regexp(t, `upload boot\.iso: 64 KiB / 64 KiB \(100%\), [0-9.]+ [KMG]?i?B/s, done in `, up.Err, "plain progress lines on stderr")

	web := jsonOf[vm.VM](t, s, "vm", "create", "web", "--cpus", "2", "--memory", "1GiB", "--disk", "volume=disk-b",
		"--disk", "new:storage=pool,size=2GiB", "--cdrom", "boot.iso", "--nic", "network=default", "--boot", "cdrom,hd")
	assert.Equal(t, 2, web.CPU.VCPUs())
	assert.EqualValues(t, 1<<30, web.MemoryBytes)
	require.Len(t, web.Disks, 2)
	assert.Equal(t, diskB.ID, web.Disks[0].VolumeID)
	assert.Equal(t, []vm.CDROM{{ImageID: img.ID}}, web.CDROMs)
	require.Len(t, web.Interfaces, 1)
	assert.Equal(t, "default", web.Interfaces[0].Source)
	root := jsonOf[volume.Volume](t, s, "volume", "show", "web-disk1")
	assert.EqualValues(t, 2<<30, root.Size, "the new disk, named after the VM")

	var tr transcript
	for _, args := range [][]string{
		{"storage", "list"}, {"storage", "show", "pool"}, {"storage", "types"}, {"volume", "list"}, {"volume", "list", "--storage", "second"},
		{"volume", "show", "disk-b"}, {"image", "list"}, {"image", "show", "boot.iso"},
		{"vm", "list"}, {"vm", "show", "web"}, {"network", "list"}, {"host", "show"},
	} {
		tr.add(s, t, args...)
	}
	golden(t, "tables", tr.b.String())

	// Edits of the stopped VM, the volumes, the image and the storage.
	edited := jsonOf[vm.VM](t, s, "vm", "edit", "web", "--cpus", "4", "--memory", "2GiB", "--description", "front")
	assert.Equal(t, 4, edited.CPU.VCPUs())
	assert.EqualValues(t, 2<<30, edited.MemoryBytes)
	assert.Equal(t, "front", edited.Description)
	s.fails(t, 2, "vm", "edit", "web")
	attached := jsonOf[vm.VM](t, s, "vm", "attach", "web", "disk-a", "--bus", "sata")
	require.Len(t, attached.Disks, 3)
	assert.Equal(t, "sata", attached.Disks[2].Bus)
	detached := jsonOf[vm.VM](t, s, "vm", "detach", "web", "disk-a")
	require.Len(t, detached.Disks, 2)
	ev := jsonOf[volume.Volume](t, s, "volume", "edit", "disk-a", "--name", "disk-c", "--shareable")
	assert.Equal(t, "disk-c", ev.Name)
	assert.True(t, ev.Shareable)
	s.ok(t, "volume", "edit", "disk-c", "--name", "disk-a", "--shareable=false")
	ei := jsonOf[image.Image](t, s, "image", "edit", "boot.iso", "--description", "boot me")
	assert.Equal(t, "boot me", ei.Description)
	es := jsonOf[storage.Storage](t, s, "storage", "edit", "second", "--description", "spare")
	assert.Equal(t, "spare", es.Description)

	running := jsonOf[vm.VM](t, s, "vm", "start", "web")
	assert.Equal(t, vm.PowerRunning, running.PowerState)
	s.fails(t, 4, "vm", "delete", "web") // a running VM: wrong state
	s.ok(t, "vm", "reboot", "web")
	s.ok(t, "vm", "reset", "web")
	s.fails(t, 4, "volume", "delete", "disk-b")
	stopped := jsonOf[vm.VM](t, s, "vm", "stop", "web", "--force")
	assert.Equal(t, vm.PowerShutOff, stopped.PowerState)

	y := s.ok(t, "vm", "show", "web", "-o", "yaml")
	var m map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(y), &m))
	assert.Equal(t, "web", m["name"])
	assert.Equal(t, "shut_off", m["power_state"])
	assert.True(t, strings.HasPrefix(y, "id: "), "keys in the API's order:\n%s", y)

	s.ok(t, "vm", "delete", "web", "--volumes")
	s.fails(t, 3, "vm", "show", "web")
	s.fails(t, 3, "volume", "show", root.ID.String())
	s.fails(t, 3, "volume", "show", "disk-b", "-o", "json") // deleted with the VM: no other VM used it
	s.fails(t, 4, "storage", "delete", "pool")              // disk-a and the image are still there
	s.ok(t, "volume", "delete", "disk-a")
	s.ok(t, "image", "delete", "boot.iso")
	out := s.ok(t, "storage", "delete", "pool")
	assert.Equal(t, "Deleted storage pool\n", out)
	left := jsonOf[[]storage.Storage](t, s, "storage", "list")
	require.Len(t, left, 1)
	assert.Equal(t, "second", left[0].Name)
}

// --async prints the operation and returns; operation wait/show follow it.
func TestAsyncAndOperations(t *testing.T) {
	s := startServer(t, serverOptions{})
	s.ok(t, "storage", "create", "pool", "--type", "fake", "--config", "name=pool")
	op := jsonOf[client.Operation](t, s, "volume", "create", "later", "--storage", "pool", "--size", "1MiB", "--async")
	assert.Equal(t, "volume.create", op.Kind)
	done := jsonOf[client.Operation](t, s, "operation", "wait", op.ID.String())
	assert.Equal(t, operation.StatusSucceeded, done.Status)
	require.NotNil(t, done.Result)
	v := jsonOf[volume.Volume](t, s, "volume", "show", "later")
	assert.Equal(t, done.Result.ID, v.ID)
	shown := jsonOf[client.Operation](t, s, "operation", "show", op.ID.String())
	assert.Equal(t, op.ID, shown.ID)
	list := jsonOf[[]client.Operation](t, s, "operation", "list", "--kind", "volume.create")
	require.NotEmpty(t, list)
	assert.Equal(t, op.ID, list[0].ID)
	table := s.ok(t, "operation", "list", "--target", v.ID.String())
	assert.Contains(t, table, "volume.create")
	assert.Contains(t, table, "succeeded")
	sop := jsonOf[client.Operation](t, s, "storage", "create", "async-pool", "--type", "fake", "--config", "name=x", "--async")
	assert.Equal(t, "storage.create", sop.Kind)
	s.ok(t, "operation", "wait", sop.ID.String())
	ended := jsonOf[client.Operation](t, s, "operation", "cancel", sop.ID.String())
	assert.Equal(t, operation.StatusSucceeded, ended.Status, "an ended operation is returned as it is")
	s.fails(t, 3, "operation", "show", uuid.NewString())
	s.fails(t, 2, "operation", "show", "not-an-id")
}

// event watch prints the change log from an id, as lines or JSON lines, and ends at --timeout with 0.
func TestEventWatch(t *testing.T) {
	s := startServer(t, serverOptions{})
	s.ok(t, "storage", "create", "pool", "--type", "fake", "--config", "name=pool")
	s.ok(t, "volume", "create", "v1", "--storage", "pool", "--size", "1MiB")
	out := s.ok(t, "event", "watch", "--since", "0", "--resource", "volume", "-o", "json", "--timeout", "2s")
	sc := bufio.NewScanner(strings.NewReader(out))
	var types []string
	for sc.Scan() {
		var e openvair.Event
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e), sc.Text())
		assert.Equal(t, "volume", e.Resource)
		types = append(types, e.Type)
	}
	assert.Contains(t, types, "volume.created")
	human := s.ok(t, "event", "watch", "--since", "0", "--type", "storage.created", "--timeout", "2s")
	lines := strings.Split(strings.TrimSpace(human), "\n")
	require.Len(t, lines, 1, human)
	assert.Regexp(t, `^\d+ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC storage\.created [0-9a-f-]{36} v\d+ name=pool`, lines[0])
}

// Failures map to the documented exit codes, with one line on stderr naming the request id.
func TestExitCodes(t *testing.T) {
	s := startServer(t, serverOptions{})
	s.ok(t, "storage", "create", "pool", "--type", "fake", "--config", "name=pool")
	r := s.fails(t, 3, "volume", "show", uuid.NewString())
	assert.Regexp(t, `^Error: openvair: 404 not_found: .*\(request id [^)]+\)\n$`, r.Err)
	s.fails(t, 3, "vm", "show", "nope")
	s.fails(t, 4, "storage", "create", "pool", "--type", "fake", "--config", "name=other")
	s.fails(t, 7, "volume", "create", "bad", "--storage", "pool", "--size", "1GiB", "--format", "vmdk")
	s.fails(t, 7, "storage", "create", "bad/name", "--type", "fake")
	s.fails(t, 2, "volume", "create")
	s.fails(t, 2, "volume", "create", "x", "--size", "lots", "--storage", "pool")
	s.fails(t, 2, "storage", "list", "--no-such-flag")
	s.fails(t, 2, "no-such-command")
	s.fails(t, 2, "storage", "list", "-o", "xml")
	r = s.run(t, nil, []string{"OPENVAIR_TOKEN=wrong"}, "storage", "list")
	assert.Equal(t, 6, r.Code, r.Err)
	r = s.run(t, nil, []string{"OPENVAIR_URL=http://127.0.0.1:1"}, "storage", "list", "--timeout", "3s")
	assert.Equal(t, 5, r.Code, r.Err)
	assert.Equal(t, 1, strings.Count(r.Err, "\n"), "one line: %s", r.Err)
	help := s.ok(t, "--help")
	assert.Contains(t, help, "Exit codes:")
	assert.Contains(t, help, "3  not found")
}

// image import has the server download an image, at once or as an operation.
func TestImageImport(t *testing.T) {
	s := startServer(t, serverOptions{})
	s.ok(t, "storage", "create", "pool", "--type", "fake", "--config", "name=pool")
	files := httptest.NewServer(http.FileServer(http.Dir(filepath.Dir(isoFile(t, "boot.iso")))))
	t.Cleanup(files.Close)
	img := jsonOf[image.Image](t, s, "image", "import", files.URL+"/boot.iso", "--storage", "pool")
	assert.Equal(t, "boot.iso", img.Name, "named after the URL")
	assert.Equal(t, image.FormatISO, img.Format)
	op := jsonOf[client.Operation](t, s, "image", "import", files.URL+"/boot.iso", "--storage", "pool", "--name", "again", "--async")
	done := jsonOf[client.Operation](t, s, "operation", "wait", op.ID.String())
	assert.Equal(t, operation.StatusSucceeded, done.Status)
	assert.Equal(t, "again", jsonOf[image.Image](t, s, "image", "show", "again").Name)
	s.fails(t, 7, "image", "import", files.URL+"/boot.iso", "--storage", "pool", "--name", "bad", "--sha256", "00")
	s.fails(t, 3, "image", "upload", "/no/such/file", "--storage", "pool")
}
