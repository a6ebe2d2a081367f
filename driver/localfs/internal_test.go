package localfs

import (
	"bufio"
	"encoding/binary"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
)

func TestParseMountinfo(t *testing.T) {
	const text = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 7:3 / /var/lib/open\040vair/mnt/x rw,nosuid - xfs /dev/loop3 rw,attr2
31 22 0:45 / /tmp/t rw - tmpfs tmpfs rw,size=8192k
bad line
`
	got, err := parseMountinfo(bufio.NewScanner(strings.NewReader(text)))
	require.NoError(t, err)
	require.Equal(t, []mountEntry{
		{major: 254, minor: 0, mountPoint: "/", fsType: "ext4", source: "/dev/vda"},
		{major: 7, minor: 3, mountPoint: "/var/lib/open vair/mnt/x", fsType: "xfs", source: "/dev/loop3"},
		{major: 0, minor: 45, mountPoint: "/tmp/t", fsType: "tmpfs", source: "tmpfs"},
	}, got)
}

func TestProbeSignature(t *testing.T) {
	u := uuid.MustParse("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0")
	ext := make([]byte, probeSize)
	binary.LittleEndian.PutUint16(ext[1024+0x38:], 0xEF53)
	copy(ext[1024+0x68:], u[:])
	xfs := make([]byte, probeSize)
	copy(xfs, "XFSB")
	copy(xfs[32:], u[:])
	at := func(off int, s string) []byte {
		b := make([]byte, probeSize)
		copy(b[off:], s)
		return b
	}
	for name, c := range map[string]struct {
		in   []byte
		want signature
	}{
		"ext4":  {ext, signature{kind: "ext4", uuid: u.String()}},
		"xfs":   {xfs, signature{kind: "xfs", uuid: u.String()}},
		"blank": {make([]byte, probeSize), signature{}},
		"short": {[]byte("XF"), signature{}},
		"gpt":   {at(512, "EFI PART"), signature{kind: "gpt"}},
		"lvm":   {at(512+24, "LVM2 001"), signature{kind: "LVM2_member"}},
		"swap":  {at(4086, "SWAPSPACE2"), signature{kind: "swap"}},
		"iso":   {at(32769, "CD001"), signature{kind: "iso9660"}},
		"luks":  {at(0, "LUKS\xba\xbe"), signature{kind: "crypto_LUKS"}},
		"mbr":   {at(510, "\x55\xaa"), signature{kind: "dos partition table or boot sector"}},
	} {
		require.Equal(t, c.want, probeSignature(c.in), name)
	}
	require.True(t, signature{kind: "xfs"}.mountable())
	require.False(t, signature{kind: "swap"}.mountable())
}

func TestCheckDevicePath(t *testing.T) {
	require.NoError(t, checkDevicePath("/dev/vdb1"))
	for _, p := range []string{"vdb", "/dev/../etc/passwd", "/tmp/disk", "/dev/vdb/", "/dev/x\x00y", "/devices/x"} {
		require.Error(t, checkDevicePath(p), p)
	}
}

// TestRootDeviceRefused: the device holding / is refused, and Prepare never gets to format it.
func TestRootDeviceRefused(t *testing.T) {
	root, err := mountAt("/")
	require.NoError(t, err)
	require.NotNil(t, root)
	d, err := openBlockDevice(root.source)
	if err != nil {
		t.Skipf("root filesystem %s is not on a block device: %v", root.source, err)
	}
	_, err = checkNotInUse(d, "/nonexistent")
	require.ErrorIs(t, err, driver.ErrInUse)
	require.Contains(t, err.Error(), "system mount point /")

	// Reuse only: this path can never run mkfs, whatever the checks do.
	b, err := New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	_, err = b.Prepare(t.Context(), Pool(uuid.New(), Config{Device: root.source, ReuseFilesystem: true}, State{}))
	require.ErrorIs(t, err, driver.ErrInUse)
}

// FuzzProbeSignature: device content is untrusted; probing must never panic and only report known kinds
// with UUIDs for mountable filesystems.
func FuzzProbeSignature(f *testing.F) {
	f.Add([]byte("XFSB"))
	f.Add(make([]byte, 2048))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := probeSignature(b)
		if s.uuid != "" && !s.mountable() {
			t.Fatalf("uuid %q reported for %q", s.uuid, s.kind)
		}
	})
}

// FuzzParseMountinfo: the mount table parser must never panic.
func FuzzParseMountinfo(f *testing.F) {
	f.Add("22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n")
	f.Add("1 2 3:4 / /a\\0 rw - x y z\n")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseMountinfo(bufio.NewScanner(strings.NewReader(s)))
	})
}

// TestStaleUploads: the .part file of a crashed upload (unlocked, old) is removed by Prepare and by a new
// upload of the same image; a live upload's file (locked) and a just-created one are kept.
func TestStaleUploads(t *testing.T) {
	b, err := New(driver.Config{})
	require.NoError(t, err)
	dir := t.TempDir()
	pool := Pool(uuid.New(), Config{Path: dir}, State{})
	ctx := t.Context()
	old := time.Now().Add(-2 * staleAge)
	partOf := func(id uuid.UUID) string { return b.DiskSource(pool, driver.KindImage, id).Path + partSuffix }
	leftover := func(id uuid.UUID, age time.Time) string {
		p := partOf(id)
		require.NoError(t, os.WriteFile(p, []byte("half an upload"), 0o600))
		require.NoError(t, os.Chtimes(p, age, age))
		return p
	}

	crashed, fresh, live, retried := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	leftover(crashed, old)
	leftover(fresh, time.Now())
	lf, err := createPart(partOf(live), 0o600)
	require.NoError(t, err)
	defer lf.Close()
	require.NoError(t, os.Chtimes(partOf(live), old, old))

	_, err = b.Prepare(ctx, pool)
	require.NoError(t, err)
	require.NoFileExists(t, partOf(crashed), "Prepare removes a crashed upload")
	require.FileExists(t, partOf(fresh), "a just-created upload file is kept")
	require.FileExists(t, partOf(live), "a locked upload file is kept")

	_, err = b.WriteImage(ctx, pool, driver.ImageWrite{ID: live}, strings.NewReader("x"))
	require.ErrorIs(t, err, driver.ErrAlreadyExists, "an upload in progress")
	_, err = b.WriteImage(ctx, pool, driver.ImageWrite{ID: fresh}, strings.NewReader("x"))
	require.ErrorIs(t, err, driver.ErrAlreadyExists, "a just-created upload file")

	leftover(retried, old)
	info, err := b.WriteImage(ctx, pool, driver.ImageWrite{ID: retried}, strings.NewReader("new content"))
	require.NoError(t, err, "a new upload replaces a crashed one")
	require.Equal(t, int64(len("new content")), info.Size)
	require.NoFileExists(t, partOf(retried))
}

func TestParseWipefs(t *testing.T) {
	require.Empty(t, parseWipefs(""))
	require.Equal(t, []string{"gpt at offset 0x200", "PMBR at offset 0x1fe", "zfs_member"},
		parseWipefs("gpt  0x200\nPMBR 0x1fe\n\nzfs_member\n"))
}

// TestSystemDirRule: the exact rule, and the data directory's exemption, without touching the filesystem.
func TestSystemDirRule(t *testing.T) {
	for p, want := range map[string]string{
		"/": "/", "/etc": "/etc", "/etc/x/y": "/etc", "/usr/local/pool": "/usr", "/lib64": "/lib64",
		"/libx32/a": "/libx32", "/var": "/var", "/run": "/run", "/tmp": "/tmp", "/root/a": "/root",
		"/var/lib/openvair": "", "/run/openvair": "", "/tmp/x": "", "/srv/pool": "", "/home/u/pool": "",
		"/etcetera": "", "/usrdata/x": "", "/library": "",
	} {
		require.Equal(t, want, systemDir(p), p)
	}
	b := &Backend{dataDir: "/usr/lib/openvair-test-nonexistent"}
	require.NoError(t, b.checkSystem(b.dataDir+"/storage", b.dataDir+"/storage"), "inside the data directory")
	require.NoError(t, b.checkSystem(b.dataDir, b.dataDir), "the data directory itself")
	require.Error(t, b.checkSystem(b.dataDir+"-other", b.dataDir+"-other"))
	require.Error(t, b.checkSystem(b.dataDir+"/link", "/etc"), "a link out of the data directory")
}
