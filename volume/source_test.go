package volume_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/qcow2"
	"github.com/openvair/openvair/internal/testenv"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
)

// sourceEnv is a System on memory: with the real localfs backend on a temporary directory and one storage.
type sourceEnv struct {
	sys *openvair.System
	ctx context.Context
	st  *storage.Storage
	dir string // the storage directory
}

func newSourceEnv(t *testing.T) *sourceEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	b, err := localfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	sys, err := openvair.Open(ctx, openvair.Config{DSN: "memory:", HypervisorInstance: fake.NewHypervisor(),
		StorageBackends: map[storage.Type]driver.StorageBackend{"localfs": b}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sys.Close() })
	dir := filepath.Join(t.TempDir(), "pool")
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "pool", Type: localfs.Type, Config: localfs.Config{Path: dir}})
	require.NoError(t, err)
	return &sourceEnv{sys: sys, ctx: ctx, st: st, dir: dir}
}

// diskContent is 8 MiB of guest data: a few runs of bytes among zeros, so that copies can stay sparse.
func diskContent() []byte {
	b := make([]byte, 8<<20)
	copy(b[0:], bytes.Repeat([]byte("boot"), 128))
	copy(b[3<<20+17:], bytes.Repeat([]byte{0xab}, 70000))
	copy(b[len(b)-4096:], bytes.Repeat([]byte("tail"), 1024))
	return b
}

func (e *sourceEnv) path(kind driver.ObjectKind, id uuid.UUID) string {
	return filepath.Join(e.dir, string(kind)+"-"+id.String())
}

func (e *sourceEnv) upload(t *testing.T, name string, content []byte) *image.Image {
	t.Helper()
	img, err := e.sys.Images.Create(e.ctx, image.CreateRequest{Name: name, StorageID: e.st.ID}, bytes.NewReader(content))
	require.NoError(t, err)
	return img
}

// guestData reads a volume's guest data: the file of a raw volume, the clusters of a qcow2 one (following
// its backing file in the storage directory).
func guestData(t *testing.T, path string, format volume.Format) []byte {
	t.Helper()
	if format == volume.FormatRaw {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		return b
	}
	var opened []*os.File
	defer func() {
		for _, f := range opened {
			f.Close()
		}
	}()
	open := func(p string) *os.File {
		f, err := os.Open(p)
		require.NoError(t, err)
		opened = append(opened, f)
		return f
	}
	r, err := qcow2.NewReaderWithBacking(open(path), func(name string) (io.ReaderAt, error) {
		return open(filepath.Join(filepath.Dir(path), name)), nil
	})
	require.NoError(t, err)
	out := make([]byte, r.Size())
	_, err = r.ReadAt(out, 0)
	require.NoError(t, err)
	return out
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

// Volumes copied from a raw image, in both formats, hold the image's bytes, are sparse, and are
// independent of it; a qcow2 volume copied to raw and back keeps them too.
func TestVolumeFromImageCopy(t *testing.T) {
	e := newSourceEnv(t)
	content := diskContent()
	img := e.upload(t, "disk.raw", content)
	require.Equal(t, image.FormatRaw, img.Format)
	before := fileSum(t, e.path(driver.KindImage, img.ID))

	for _, format := range []volume.Format{volume.FormatQCOW2, volume.FormatRaw} {
		t.Run(string(format), func(t *testing.T) {
			vol, err := e.sys.Volumes.Create(e.ctx, volume.CreateRequest{Name: "from-image-" + string(format), Format: format,
				Source: &volume.Source{ImageID: img.ID}})
			require.NoError(t, err)
			assert.Equal(t, volume.StatusAvailable, vol.Status)
			assert.Equal(t, e.st.ID, vol.StorageID, "the source's storage by default")
			assert.EqualValues(t, len(content), vol.Size)
			assert.Nil(t, vol.Backing, "a copy has no backing file")
			assert.Less(t, vol.Allocated, int64(len(content))/2, "zeros are not written")
			got := guestData(t, e.path(driver.KindVolume, vol.ID), format)
			require.True(t, bytes.Equal(content, got), "the volume holds the image's bytes")
		})
	}

	// Defaults: format and size from the image; a larger size is allowed, a smaller one is not.
	big, err := e.sys.Volumes.Create(e.ctx, volume.CreateRequest{Name: "bigger", Size: 64 << 20, Source: &volume.Source{ImageID: img.ID}})
	require.NoError(t, err)
	assert.Equal(t, volume.FormatRaw, big.Format)
	assert.EqualValues(t, 64<<20, big.Size)
	got := guestData(t, e.path(driver.KindVolume, big.ID), big.Format)
	assert.True(t, bytes.Equal(content, got[:len(content)]))
	assert.True(t, bytes.Equal(make([]byte, len(got)-len(content)), got[len(content):]), "the rest reads as zeros")
	_, err = e.sys.Volumes.Create(e.ctx, volume.CreateRequest{Name: "smaller", Size: 1 << 20, Source: &volume.Source{ImageID: img.ID}})
	requireField(t, err, "size")

	// A copy of a copy, converted: qcow2 -> raw.
	q, err := e.sys.Volumes.Create(e.ctx, volume.CreateRequest{Name: "q", Format: volume.FormatQCOW2, Source: &volume.Source{ImageID: img.ID}})
	require.NoError(t, err)
	r, err := e.sys.Volumes.Create(e.ctx, volume.CreateRequest{Name: "r", Format: volume.FormatRaw, Source: &volume.Source{VolumeID: q.ID}})
	require.NoError(t, err)
	assert.True(t, bytes.Equal(content, guestData(t, e.path(driver.KindVolume, r.ID), volume.FormatRaw)))

	// Writing to a copy leaves its source unchanged.
	f, err := os.OpenFile(e.path(driver.KindVolume, r.ID), os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("written by the guest"), 0)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	assert.True(t, bytes.Equal(content, guestData(t, e.path(driver.KindVolume, q.ID), volume.FormatQCOW2)), "the source volume is unchanged")
	assert.Equal(t, before, fileSum(t, e.path(driver.KindImage, img.ID)), "the image is unchanged")

	// Copies do not hold their source: deleting it works.
	require.NoError(t, e.sys.Volumes.Delete(e.ctx, q.ID))
}

// A linked volume is a qcow2 overlay on its source: made at once, its backing file named relatively; the
// source cannot be deleted while it is used (409 naming the linked volume) and is unchanged by writes to
// the overlay.
func TestLinkedVolume(t *testing.T) {
	e := newSourceEnv(t)
	content := diskContent()
	img := e.upload(t, "base.raw", content)
	imgFile := e.path(driver.KindImage, img.ID)
	before := fileSum(t, imgFile)

	linked, err := e.sys.Volumes.Create(e.ctx, volume.CreateRequest{Name: "linked", Source: &volume.Source{ImageID: img.ID, Mode: volume.ModeLinked}})
	require.NoError(t, err)
	assert.Equal(t, volume.FormatQCOW2, linked.Format, "a linked volume is qcow2")
	require.NotNil(t, linked.Backing)
	assert.Equal(t, volume.Backing{Kind: driver.KindImage, ID: img.ID}, *linked.Backing)
	assert.Less(t, linked.Allocated, int64(1<<20), "nothing is copied")
	assert.True(t, bytes.Equal(content, guestData(t, e.path(driver.KindVolume, linked.ID), volume.FormatQCOW2)))

	got, err := e.sys.Images.Get(e.ctx, img.ID)
	require.NoError(t, err)
	require.Len(t, got.Linked, 1)
	assert.Equal(t, "linked", got.Linked[0].VolumeName)
	err = e.sys.Images.Delete(e.ctx, img.ID)
	require.ErrorIs(t, err, errkind.InUse)
	var ke *errkind.Error
	require.ErrorAs(t, err, &ke)
	require.Len(t, ke.Refs, 1)
	assert.Equal(t, errkind.Ref{Kind: "volume", ID: linked.ID.String(), Name: "linked"}, ke.Refs[0])

	// A chain: a linked volume over the linked volume; its base cannot be deleted either.
	second, err := e.sys.Volumes.Create(e.ctx, volume.CreateRequest{Name: "second", Source: &volume.Source{VolumeID: linked.ID, Mode: volume.ModeLinked}})
	require.NoError(t, err)
	assert.True(t, bytes.Equal(content, guestData(t, e.path(driver.KindVolume, second.ID), volume.FormatQCOW2)))
	require.ErrorIs(t, e.sys.Volumes.Delete(e.ctx, linked.ID), errkind.InUse)
	// A full copy of a linked volume reads through its chain and needs none of it afterwards.
	flat, err := e.sys.Volumes.Create(e.ctx, volume.CreateRequest{Name: "flat", Format: volume.FormatRaw, Source: &volume.Source{VolumeID: second.ID}})
	require.NoError(t, err)
	assert.Nil(t, flat.Backing)
	assert.True(t, bytes.Equal(content, guestData(t, e.path(driver.KindVolume, flat.ID), volume.FormatRaw)))

	if qemuIO, err := exec.LookPath("qemu-io"); err == nil {
		out, err := exec.CommandContext(e.ctx, qemuIO, "-f", "qcow2", "-c", "write -P 0x5a 0 64k", e.path(driver.KindVolume, linked.ID)).CombinedOutput()
		require.NoError(t, err, "%s", out)
		data := guestData(t, e.path(driver.KindVolume, linked.ID), volume.FormatQCOW2)
		assert.Equal(t, bytes.Repeat([]byte{0x5a}, 64<<10), data[:64<<10], "the overlay took the write")
		info, err := exec.CommandContext(e.ctx, "qemu-img", "info", "--backing-chain", e.path(driver.KindVolume, second.ID)).CombinedOutput()
		require.NoError(t, err, "%s", info)
		assert.Contains(t, string(info), "backing file: volume-"+linked.ID.String(), "a relative backing file")
		assert.Contains(t, string(info), "backing file: image-"+img.ID.String())
	} else if testenv.RequireAll() {
		t.Fatal("qemu-io not installed (apt-get install qemu-utils)")
	}
	assert.Equal(t, before, fileSum(t, imgFile), "writes to the overlay leave the base unchanged")

	// Unlinked from the top down, the base can go.
	require.NoError(t, e.sys.Volumes.Delete(e.ctx, second.ID))
	require.NoError(t, e.sys.Volumes.Delete(e.ctx, linked.ID))
	require.NoError(t, e.sys.Images.Delete(e.ctx, img.ID))
}

// Bad sources are refused before anything is recorded, naming the field; modes the backend lacks are
// ErrUnsupported.
func TestVolumeSourceRefused(t *testing.T) {
	e := newSourceEnv(t)
	iso := make([]byte, 64<<10)
	copy(iso[0x8001:], "CD001")
	isoImg := e.upload(t, "install.iso", iso)
	require.Equal(t, image.FormatISO, isoImg.Format)
	raw := e.upload(t, "disk.raw", diskContent())

	cases := []struct {
		name  string
		req   volume.CreateRequest
		field string
		kind  error
	}{
		{"iso", volume.CreateRequest{Name: "a", Source: &volume.Source{ImageID: isoImg.ID}}, "source.image_id", errkind.Invalid},
		{"missing image", volume.CreateRequest{Name: "a", Source: &volume.Source{ImageID: uuid.New()}}, "source.image_id", errkind.Invalid},
		{"missing volume", volume.CreateRequest{Name: "a", Source: &volume.Source{VolumeID: uuid.New()}}, "source.volume_id", errkind.Invalid},
		{"two sources", volume.CreateRequest{Name: "a", Source: &volume.Source{ImageID: raw.ID, VolumeID: uuid.New()}}, "source", errkind.Invalid},
		{"no source id", volume.CreateRequest{Name: "a", Source: &volume.Source{}}, "source", errkind.Invalid},
		{"bad mode", volume.CreateRequest{Name: "a", Source: &volume.Source{ImageID: raw.ID, Mode: "fast"}}, "source.mode", errkind.Invalid},
		{"linked raw", volume.CreateRequest{Name: "a", Format: volume.FormatRaw, Source: &volume.Source{ImageID: raw.ID, Mode: volume.ModeLinked}}, "format", errkind.Invalid},
		{"instant on localfs", volume.CreateRequest{Name: "a", Source: &volume.Source{ImageID: raw.ID, Mode: volume.ModeInstant}}, "", errkind.Unsupported},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.sys.Volumes.Create(e.ctx, c.req)
			require.ErrorIs(t, err, c.kind)
			if c.field != "" {
				requireField(t, err, c.field)
			}
		})
	}
	page, err := e.sys.Volumes.List(e.ctx, volume.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, page.Items, "refused requests record nothing")
}

func requireField(t *testing.T, err error, field string) {
	t.Helper()
	var ve *errkind.ValidationError
	require.ErrorAs(t, err, &ve, "%v", err)
	var fields []string
	for _, f := range ve.Fields {
		fields = append(fields, f.Field)
	}
	assert.Contains(t, fields, field)
}

// A copy in the source's format on the source's storage is the backend's clone (a reflink where the
// filesystem shares blocks); it is independent of its source all the same.
func TestVolumeCopySameFormat(t *testing.T) {
	e := newSourceEnv(t)
	content := diskContent()
	img := e.upload(t, "disk.raw", content)
	src, err := e.sys.Volumes.Create(e.ctx, volume.CreateRequest{Name: "src", Source: &volume.Source{ImageID: img.ID}})
	require.NoError(t, err)
	dst, err := e.sys.Volumes.Create(e.ctx, volume.CreateRequest{Name: "dst", Source: &volume.Source{VolumeID: src.ID}})
	require.NoError(t, err)
	assert.Equal(t, src.Format, dst.Format)
	assert.Nil(t, dst.Backing)
	writeAt(t, e.path(driver.KindVolume, dst.ID), 0, []byte("changed in the copy"))
	assert.True(t, bytes.Equal(content, guestData(t, e.path(driver.KindVolume, src.ID), volume.FormatRaw)), "the source is unchanged")
	require.NoError(t, e.sys.Volumes.Delete(e.ctx, src.ID), "a copy does not hold its source")
}
