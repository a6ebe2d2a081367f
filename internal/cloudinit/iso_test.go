package cloudinit

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kdomanski/iso9660"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/testenv"
)

// testSeed returns the seed files of a full Config, with a user-data that spans several sectors.
func testSeed(t *testing.T) map[string][]byte {
	t.Helper()
	c := Config{
		UserData:          "#cloud-config\nwrite_files:\n  - path: /big\n    content: " + strings.Repeat("x", 3*sectorSize+17) + "\n",
		NetworkConfig:     "version: 2\nethernets:\n  eth0: {dhcp4: true}\n",
		SSHAuthorizedKeys: []string{keyEd25519},
		Hostname:          "web-1",
	}
	files, err := c.Seed("vm-1")
	require.NoError(t, err)
	return files
}

// writeISO writes files to an image and returns its bytes.
func writeISO(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, WriteISO(&b, files))
	return b.Bytes()
}

// writeISOFile writes files to an image file in a test directory and returns its path.
func writeISOFile(t *testing.T, files map[string][]byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "seed.iso")
	require.NoError(t, os.WriteFile(p, writeISO(t, files), 0o644))
	return p
}

// asStrings turns file contents into strings, for readable diffs.
func asStrings(files map[string][]byte) map[string]string {
	out := make(map[string]string, len(files))
	for k, v := range files {
		out[k] = string(v)
	}
	return out
}

func TestWriteISORoundTrip(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files map[string][]byte
	}{
		{name: "seed", files: testSeed(t)},
		{name: "empty file and dotted name", files: map[string][]byte{"user-data": {}, "meta-data": []byte("a: 1\n"), "vendor_data.yaml": []byte("x")}},
		{name: "no files", files: map[string][]byte{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			img := writeISO(t, tt.files)
			assert.Zero(t, len(img)%sectorSize)

			r, err := iso9660.OpenImage(bytes.NewReader(img))
			require.NoError(t, err)
			label, err := r.Label()
			require.NoError(t, err)
			assert.Equal(t, VolumeID, label)

			root, err := r.RootDir()
			require.NoError(t, err)
			children, err := root.GetChildren()
			require.NoError(t, err)
			got := map[string]string{}
			for _, f := range children {
				assert.False(t, f.IsDir())
				data, err := io.ReadAll(f.Reader())
				require.NoError(t, err)
				got[f.Name()] = string(data)
				assert.Equal(t, int64(len(data)), f.Size())
				assert.True(t, f.ModTime().Equal(time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)), "mod time %v", f.ModTime())
			}
			assert.Equal(t, asStrings(tt.files), got)
		})
	}
}

func TestWriteISODeterministic(t *testing.T) {
	files := testSeed(t)
	first := writeISO(t, files)
	time.Sleep(20 * time.Millisecond) // the library stamps the volume with the time, to the hundredth
	assert.Equal(t, first, writeISO(t, files))
	assert.Contains(t, string(first[16*sectorSize:17*sectorSize]), "1970010100000000")
}

func TestWriteISORefusesNames(t *testing.T) {
	for _, name := range []string{"", "User-Data", "dir/user-data", "a.b.c", "-x", "x y", "user-data;1", strings.Repeat("a", 29), "a.toolongext"} {
		err := WriteISO(io.Discard, map[string][]byte{name: nil})
		require.ErrorIs(t, err, errkind.Invalid, "name %q", name)
	}
	require.NoError(t, WriteISO(io.Discard, map[string][]byte{strings.Repeat("a", 28): nil, strings.Repeat("b", 19) + ".ignition": nil}))
}

// linuxName is Linux's isofs_name_translate (fs/isofs/dir.c), what the kernel shows for a plain ISO 9660
// file identifier with the default map=normal mount option: lower case, a trailing ".;1" or ";1" dropped,
// other ';' turned into '.'.
func linuxName(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c == 0 {
			break
		}
		if c >= 'A' && c <= 'Z' {
			c |= 0x20
		}
		if c == '.' && i == len(id)-3 && id[i+1] == ';' && id[i+2] == '1' {
			break
		}
		if c == ';' && i == len(id)-2 && id[i+1] == '1' {
			break
		}
		if c == ';' || c == '/' {
			c = '.'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// TestWriteISORawNames reads the image's directory records directly: the identifiers are the ISO 9660
// names the library records ("user-data;1"), there are no Rock Ridge (system use) or Joliet (supplementary
// volume descriptor) names that a reader would prefer, and Linux's translation of the identifiers gives the
// names back. This is what TestWriteISOMount checks on a kernel with iso9660 support.
func TestWriteISORawNames(t *testing.T) {
	files := testSeed(t)
	files["vendor_data.yaml"] = []byte("x")
	img := writeISO(t, files)

	pvd := img[16*sectorSize : 17*sectorSize]
	require.Equal(t, byte(1), pvd[0], "primary volume descriptor")
	assert.Equal(t, "cidata", strings.TrimRight(string(pvd[40:72]), " "))
	assert.Equal(t, byte(255), img[17*sectorSize], "the terminator follows: no Joliet descriptor")

	loc := int(binary.LittleEndian.Uint32(pvd[156+2:])) * sectorSize
	size := int(binary.LittleEndian.Uint32(pvd[156+10:]))
	dir := img[loc : loc+size]
	var raw, shown []string
	for off := 0; off < len(dir) && dir[off] != 0; off += int(dir[off]) {
		rec := dir[off : off+int(dir[off])]
		idLen := int(rec[32])
		id := string(rec[33 : 33+idLen])
		sysUse := len(rec) - 33 - idLen - (idLen+1)%2
		assert.Zero(t, sysUse, "no system use area (Rock Ridge) in %q", id)
		if id == "\x00" || id == "\x01" {
			continue
		}
		raw = append(raw, id)
		shown = append(shown, linuxName(id))
	}
	assert.Equal(t, []string{"meta-data;1", "network-config;1", "user-data;1", "vendor_data.yaml;1"}, raw)
	assert.Equal(t, []string{"meta-data", "network-config", "user-data", "vendor_data.yaml"}, shown)
}

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestWriteISOWriteError(t *testing.T) {
	assert.ErrorIs(t, WriteISO(failingWriter{}, testSeed(t)), os.ErrClosed)
}

// TestWriteISOXorriso checks the names and contents another ISO 9660 implementation (libisofs, through
// xorriso) reads from the image.
func TestWriteISOXorriso(t *testing.T) {
	xorriso := testenv.LookPath(t, "xorriso")
	files := testSeed(t)
	iso := writeISOFile(t, files)

	out, err := exec.Command(xorriso, "-indev", iso, "-find", "/", "-type", "f").CombinedOutput()
	require.NoError(t, err, "%s", out)
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "'/") {
			names = append(names, strings.Trim(line, "'"))
		}
	}
	assert.Equal(t, []string{"/meta-data", "/network-config", "/user-data"}, names)
	assert.Contains(t, string(out), "Volume id    : 'cidata'")

	dir := filepath.Join(t.TempDir(), "x")
	out, err = exec.Command(xorriso, "-osirrox", "on", "-indev", iso, "-extract", "/", dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, asStrings(files), readDir(t, dir))
}

// TestWriteISOBlkid checks that blkid, which cloud-init uses to find the seed, sees an iso9660 filesystem
// labelled cidata.
func TestWriteISOBlkid(t *testing.T) {
	blkid := testenv.LookPath(t, "blkid")
	out, err := exec.Command(blkid, "-p", "-o", "export", writeISOFile(t, testSeed(t))).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "\nLABEL=cidata\n")
	assert.Contains(t, string(out), "\nTYPE=iso9660\n")
}

// TestWriteISOMount mounts the image read-only with Linux's isofs, as cloud-init does, and checks the
// names and contents Linux shows. It needs root and a kernel with iso9660 support.
func TestWriteISOMount(t *testing.T) {
	testenv.RequireRoot(t)
	losetup, mount, umount := testenv.LookPath(t, "losetup"), testenv.LookPath(t, "mount"), testenv.LookPath(t, "umount")
	files := testSeed(t)
	iso := writeISOFile(t, files)

	out, err := exec.Command(losetup, "--find", "--show", "--read-only", iso).CombinedOutput()
	if err != nil {
		testenv.Unavailable(t, "no loop device: %v: %s", err, out)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(losetup, "-d", loop).CombinedOutput(); err != nil {
			t.Errorf("detaching %s: %v: %s", loop, err, out)
		}
	})

	dir := t.TempDir()
	out, err = exec.Command(mount, "-t", "iso9660", "-o", "ro", loop, dir).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "unknown filesystem type") {
			t.Skipf("the kernel has no iso9660 support: %s", out)
		}
		require.NoError(t, err, "%s", out)
	}
	t.Cleanup(func() { // runs before the detach above
		if out, err := exec.Command(umount, dir).CombinedOutput(); err != nil {
			t.Errorf("unmounting %s: %v: %s", dir, err, out)
		}
	})
	assert.Equal(t, asStrings(files), readDir(t, dir))
}

// readDir returns the regular files of dir by name.
func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	got := map[string]string{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		got[e.Name()] = string(data)
	}
	return got
}
