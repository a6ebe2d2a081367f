package quotadir_test

import (
	"bytes"
	"context"
	"encoding/json"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/drivertest"
	"github.com/openvair/openvair/examples/outoftree/quotadir"
)

const (
	miB = int64(1) << 20
	giB = int64(1) << 30
	// suiteQuota leaves room for every object the conformance suite makes at once (thin volumes of a few GiB).
	suiteQuota = int64(1) << 40
	// benchQuota never stops the benchmarks, which create 1 GiB volumes for as long as they run.
	benchQuota = int64(1) << 60
)

// newPool returns the spec of a new storage as a user gives it: a directory that does not exist yet
// (Prepare creates it) and a quota. The configuration is raw, not checked.
func newPool(t testing.TB, quota int64) driver.PoolSpec {
	root := filepath.Join(t.TempDir(), "q")
	return driver.PoolSpec{ID: uuid.New(), Type: quotadir.Name,
		Config: json.RawMessage(`{"root": ` + strconv.Quote(root) + `, "quota": ` + strconv.FormatInt(quota, 10) + `}`)}
}

// rootOf is the directory a storage works in, from its (checked) configuration and state.
func rootOf(t testing.TB, pool driver.PoolSpec) string {
	t.Helper()
	var c quotadir.Config
	require.NoError(t, json.Unmarshal(pool.Config, &c))
	var st quotadir.State
	require.NoError(t, driver.DecodeState(pool.State, &st))
	if st.RealRoot != "" {
		return st.RealRoot
	}
	return c.Root
}

// harness connects the conformance suite to the backend; Stop renames the storage directory away and
// Restart renames it back.
func harness(t testing.TB, quota int64) drivertest.StorageHarness {
	be, err := driver.OpenStorage(quotadir.Name, driver.Config{})
	require.NoError(t, err, "the package registers its backend")
	t.Cleanup(func() { _ = be.Close() })
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	cfg := func(root, quota string) string {
		return `{"root": ` + strconv.Quote(root) + `, "quota": ` + quota + `}`
	}
	return drivertest.StorageHarness{
		Backend: be,
		Pool:    func(t testing.TB) driver.PoolSpec { return newPool(t, quota) },
		BadConfigs: map[string]string{
			`{"quota": 1}`:                             "config.root",
			`{"root": "/srv/q"}`:                       "config.quota",
			`{"root": 5, "quota": 1}`:                  "config.root",
			cfg("relative/q", "1"):                     "config.root",
			cfg("/srv/../q", "1"):                      "config.root",
			cfg("/srv/q/", "1"):                        "config.root",
			cfg("/", "1"):                              "config.root",
			cfg(filepath.Join(dir, "no", "q"), "1"):    "config.root",
			cfg(file, "1"):                             "config.root",
			cfg(filepath.Join(dir, "q"), "0"):          "config.quota",
			cfg(filepath.Join(dir, "q"), "-1"):         "config.quota",
			cfg(filepath.Join(dir, "q"), `"10G"`):      "config.quota",
			cfg(filepath.Join(dir, "q"), "1.5"):        "config.quota",
			cfg(filepath.Join(dir, "q"), "1e99"):       "config.quota",
			cfg(filepath.Join(dir, "q"), "1, \"x\":1"): "config.x",
		},
		Open: func(t testing.TB) driver.StorageBackend {
			b, err := driver.OpenStorage(quotadir.Name, driver.Config{})
			require.NoError(t, err)
			return b
		},
		Stop: func(t *testing.T, pool driver.PoolSpec) {
			root := rootOf(t, pool)
			require.NoError(t, os.Rename(root, root+".stopped"))
		},
		Restart: func(t *testing.T, pool driver.PoolSpec) {
			root := rootOf(t, pool)
			require.NoError(t, os.Rename(root+".stopped", root))
		},
	}
}

func TestConformance(t *testing.T) {
	drivertest.RunStorageSuite(t, harness(t, suiteQuota))
}

func BenchmarkQuotadir(b *testing.B) {
	drivertest.RunBenchmarks(b, harness(b, benchQuota))
}

// prepared returns a checked and prepared storage with the given quota, torn down at the end of the test.
func prepared(t *testing.T, b driver.StorageBackend, quota int64) driver.PoolSpec {
	t.Helper()
	ctx := t.Context()
	pool := newPool(t, quota)
	checked, err := b.CheckConfig(ctx, pool.Config)
	require.NoError(t, err)
	pool.Config, pool.State = checked.Config, checked.State
	st, err := b.Prepare(ctx, pool)
	require.NoError(t, err)
	pool = st.Apply(pool)
	t.Cleanup(func() { _ = b.Teardown(context.Background(), pool) })
	return pool
}

// TestQuota: the virtual sizes of the volumes plus the sizes of the images never exceed the quota; what
// would is refused with ErrTooLarge and leaves nothing behind. Status reports the quota as capacity and
// what the files allocate as used.
func TestQuota(t *testing.T) {
	ctx := t.Context()
	b := quotadir.New(driver.Config{})
	pool := prepared(t, b, 100*miB)
	root := rootOf(t, pool)

	st, err := b.Status(ctx, pool)
	require.NoError(t, err)
	assert.Equal(t, 100*miB, st.Capacity)
	assert.Equal(t, 100*miB, st.Available, "an empty storage")

	vol := driver.VolumeSpec{ID: uuid.New(), Format: driver.FormatRaw, Size: 60 * miB}
	info, err := b.CreateVolume(ctx, pool, vol)
	require.NoError(t, err)
	assert.Equal(t, 60*miB, info.VirtualSize)
	assert.Less(t, info.Allocated, miB, "a sparse file")

	tooBig := driver.VolumeSpec{ID: uuid.New(), Format: driver.FormatRaw, Size: 40*miB + 1}
	_, err = b.CreateVolume(ctx, pool, tooBig)
	require.ErrorIs(t, err, driver.ErrTooLarge, "60 MiB + 40 MiB and a byte")
	assert.ErrorContains(t, err, "has 41943040 left")
	_, err = b.InspectVolume(ctx, pool, tooBig)
	require.ErrorIs(t, err, driver.ErrNotFound, "a refused volume leaves no file")
	_, err = b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: uuid.New(), Format: driver.FormatRaw, Size: 1 << 62})
	require.ErrorIs(t, err, driver.ErrTooLarge, "larger than the quota itself")

	vol.Size = 100*miB + 1
	_, err = b.ExtendVolume(ctx, pool, vol)
	require.ErrorIs(t, err, driver.ErrTooLarge)
	got, err := b.InspectVolume(ctx, pool, vol)
	require.NoError(t, err)
	assert.Equal(t, 60*miB, got.VirtualSize, "a refused extend changes nothing")
	vol.Size = 90 * miB
	_, err = b.ExtendVolume(ctx, pool, vol)
	require.NoError(t, err, "the volume's own size counts once")

	// 10 MiB left: an image of 10 MiB and a byte is refused, whatever its size limit; one of 8 MiB fits.
	img := driver.ImageWrite{ID: uuid.New(), MaxSize: 64 * miB}
	_, err = b.WriteImage(ctx, pool, img, bytes.NewReader(make([]byte, 10*miB+1)))
	require.ErrorIs(t, err, driver.ErrTooLarge)
	assert.ErrorContains(t, err, "quota")
	_, err = b.InspectImage(ctx, pool, img.ID)
	require.ErrorIs(t, err, driver.ErrNotFound)
	assertOnly(t, root, "volume-"+vol.ID.String())
	content := bytes.Repeat([]byte{1}, int(8*miB))
	imgInfo, err := b.WriteImage(ctx, pool, img, bytes.NewReader(content))
	require.NoError(t, err)
	assert.Equal(t, driver.ImageRaw, imgInfo.Format)

	st, err = b.Status(ctx, pool)
	require.NoError(t, err)
	assert.Equal(t, 100*miB, st.Capacity)
	assert.InDelta(t, 92*miB, st.Available, float64(miB), "the image allocates 8 MiB, the sparse volume nothing")
	_, err = b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: uuid.New(), Format: driver.FormatRaw, Size: 2*miB + 1})
	require.ErrorIs(t, err, driver.ErrTooLarge, "90 MiB + 8 MiB committed: 2 MiB left")

	// Deleting gives the bytes back.
	require.NoError(t, b.DeleteImage(ctx, pool, img.ID))
	require.NoError(t, b.DeleteVolume(ctx, pool, vol.ID))
	_, err = b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: uuid.New(), Format: driver.FormatRaw, Size: 100 * miB})
	require.NoError(t, err, "the whole quota is free again")
}

// TestQuotaConcurrently: concurrent creations never overcommit the quota together, whether they go
// through one backend or several (they share the directory's lock).
func TestQuotaConcurrently(t *testing.T) {
	ctx := t.Context()
	b := quotadir.New(driver.Config{})
	pool := prepared(t, b, 10*miB)
	const n = 16
	errs := make(chan error, n)
	for range n {
		go func() {
			other := quotadir.New(driver.Config{})
			_, err := other.CreateVolume(ctx, pool, driver.VolumeSpec{ID: uuid.New(), Format: driver.FormatRaw, Size: miB})
			errs <- err
		}()
	}
	created := 0
	for range n {
		if err := <-errs; err == nil {
			created++
		} else {
			require.ErrorIs(t, err, driver.ErrTooLarge)
		}
	}
	assert.Equal(t, 10, created, "exactly as many 1 MiB volumes as the 10 MiB quota takes")
}

// assertOnly checks that dir holds exactly the given names.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	assert.ElementsMatch(t, names, got)
}

// TestConfig: the location key resolves symbolic links, the normalized configuration is {root, quota}, and
// the state records the resolved root, in which the backend works.
func TestConfig(t *testing.T) {
	ctx := t.Context()
	b := quotadir.New(driver.Config{})
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	require.NoError(t, os.Symlink(real, link))

	viaReal, err := b.CheckConfig(ctx, json.RawMessage(`{"root": `+strconv.Quote(filepath.Join(real, "q"))+`, "quota": 1073741824}`))
	require.NoError(t, err, "a new name in an existing directory")
	viaLink, err := b.CheckConfig(ctx, driver.MustJSON(quotadir.Config{Root: filepath.Join(link, "q"), Quota: giB}))
	require.NoError(t, err)
	assert.Equal(t, "quotadir:"+filepath.Join(real, "q"), viaReal.Location)
	assert.Equal(t, viaReal.Location, viaLink.Location, "two names of one directory are one storage")
	assert.JSONEq(t, `{"root": `+strconv.Quote(filepath.Join(link, "q"))+`, "quota": 1073741824}`, string(viaLink.Config))
	assert.JSONEq(t, `{"real_root": `+strconv.Quote(filepath.Join(real, "q"))+`}`, string(viaLink.State))

	// Prepare creates the resolved directory; retargeting the link afterwards does not move the storage.
	pool := driver.PoolSpec{ID: uuid.New(), Type: quotadir.Name, Config: viaLink.Config, State: viaLink.State}
	st, err := b.Prepare(ctx, pool)
	require.NoError(t, err)
	pool = st.Apply(pool)
	assert.JSONEq(t, `{"real_root": `+strconv.Quote(filepath.Join(real, "q"))+`, "created_dir": true}`, string(pool.State))
	require.NoError(t, os.Remove(link))
	require.NoError(t, os.Symlink(t.TempDir(), link))
	id := uuid.New()
	_, err = b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: driver.FormatRaw, Size: miB})
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(real, "q", "volume-"+id.String()), b.DiskSource(pool, driver.KindVolume, id).Path)
	assert.FileExists(t, filepath.Join(real, "q", "volume-"+id.String()))

	// Teardown removes the directory it created only once it is empty.
	require.NoError(t, b.Teardown(ctx, pool))
	assert.DirExists(t, filepath.Join(real, "q"))
	require.NoError(t, b.DeleteVolume(ctx, pool, id))
	require.NoError(t, b.Teardown(ctx, pool))
	assert.NoDirExists(t, filepath.Join(real, "q"))

	// A directory that existed is never removed.
	checked, err := b.CheckConfig(ctx, driver.MustJSON(quotadir.Config{Root: real, Quota: giB}))
	require.NoError(t, err)
	pool = driver.PoolSpec{ID: uuid.New(), Type: quotadir.Name, Config: checked.Config, State: checked.State}
	st, err = b.Prepare(ctx, pool)
	require.NoError(t, err)
	require.NoError(t, b.Teardown(ctx, st.Apply(pool)))
	assert.DirExists(t, real)

	// Every bad field at once.
	_, err = b.CheckConfig(ctx, json.RawMessage(`{"root": "x", "quota": 0}`))
	var ve *driver.ValidationError
	require.ErrorAs(t, err, &ve)
	var fields []string
	for _, f := range ve.Fields {
		fields = append(fields, f.Field)
	}
	assert.ElementsMatch(t, []string{"config.root", "config.quota"}, fields)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = b.CheckConfig(cancelled, viaReal.Config)
	require.ErrorIs(t, err, context.Canceled)
}

// TestSchema: the schema describes exactly the fields of Config, both required, nothing else allowed.
func TestSchema(t *testing.T) {
	var schema struct {
		Type                 string                    `json:"type"`
		Properties           map[string]map[string]any `json:"properties"`
		Required             []string                  `json:"required"`
		AdditionalProperties *bool                     `json:"additionalProperties"`
	}
	require.NoError(t, json.Unmarshal(quotadir.New(driver.Config{}).ConfigSchema(), &schema))
	assert.Equal(t, "object", schema.Type)
	var fields map[string]any
	require.NoError(t, json.Unmarshal(driver.MustJSON(quotadir.Config{}), &fields))
	require.Len(t, schema.Properties, len(fields))
	for name := range fields {
		require.Contains(t, schema.Properties, name)
		assert.NotEmpty(t, schema.Properties[name]["description"], name)
	}
	assert.Equal(t, "string", schema.Properties["root"]["type"])
	assert.Equal(t, "integer", schema.Properties["quota"]["type"])
	assert.ElementsMatch(t, []string{"root", "quota"}, schema.Required)
	require.NotNil(t, schema.AdditionalProperties)
	assert.False(t, *schema.AdditionalProperties)
}

// TestSweepUploads: the partial file of a crashed upload goes, that of a running upload (locked) stays.
func TestSweepUploads(t *testing.T) {
	ctx := t.Context()
	b := quotadir.New(driver.Config{})
	pool := prepared(t, b, giB)
	root := rootOf(t, pool)
	stale := filepath.Join(root, "image-"+uuid.NewString()+".part")
	require.NoError(t, os.WriteFile(stale, []byte("left by a crash"), 0o600))
	running := filepath.Join(root, "image-"+uuid.NewString()+".part")
	f, err := os.Create(running)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, unix.Flock(int(f.Fd()), unix.LOCK_EX))
	other := filepath.Join(root, "notes.part")
	require.NoError(t, os.WriteFile(other, nil, 0o600))

	sweeper, ok := driver.StorageBackend(b).(driver.UploadSweeper)
	require.True(t, ok, "the backend sweeps uploads")
	require.NoError(t, sweeper.SweepUploads(ctx, pool))
	assert.NoFileExists(t, stale)
	assert.FileExists(t, running)
	assert.FileExists(t, other, "not an upload file")

	// A stale upload file of an id blocks a new upload of that id only while it is fresh.
	id := uuid.New()
	part := filepath.Join(root, "image-"+id.String()+".part")
	require.NoError(t, os.WriteFile(part, nil, 0o600))
	_, err = b.WriteImage(ctx, pool, driver.ImageWrite{ID: id}, strings.NewReader("x"))
	require.ErrorIs(t, err, driver.ErrAlreadyExists, "an upload may be starting")
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(part, old, old))
	_, err = b.WriteImage(ctx, pool, driver.ImageWrite{ID: id}, strings.NewReader("x"))
	require.NoError(t, err, "the leftover of a crash is replaced")
	assert.NoFileExists(t, part)
}

// TestQCOW2Images: qcow2 images are recognized by their header; version 2 and 3 headers without a backing
// or data file are accepted, anything else with the magic is refused.
func TestQCOW2Images(t *testing.T) {
	ctx := t.Context()
	b := quotadir.New(driver.Config{})
	pool := prepared(t, b, giB)
	header := func(version uint32, backing, incompat uint64) []byte {
		h := make([]byte, 4096)
		copy(h, "QFI\xfb")
		be := func(b []byte, v uint64, n int) {
			for i := range n {
				b[n-1-i] = byte(v >> (8 * i))
			}
		}
		be(h[4:], uint64(version), 4)
		be(h[8:], backing, 8)
		be(h[72:], incompat, 8)
		return h
	}
	for name, c := range map[string]struct {
		content []byte
		ok      bool
	}{
		"v2":             {header(2, 0, 0), true},
		"v3":             {header(3, 0, 0), true},
		"v3 dirty":       {header(3, 0, 1), true},
		"v2 backing":     {header(2, 512, 0), false},
		"v3 data file":   {header(3, 0, 4), false},
		"v4":             {header(4, 0, 0), false},
		"truncated":      {[]byte("QFI\xfb\x00\x00\x00\x03"), false},
		"magic not at 0": {append([]byte{0}, header(3, 512, 0)...), true}, // raw
	} {
		t.Run(name, func(t *testing.T) {
			id := uuid.New()
			info, err := b.WriteImage(ctx, pool, driver.ImageWrite{ID: id}, bytes.NewReader(c.content))
			if !c.ok {
				require.ErrorIs(t, err, driver.ErrInvalid)
				_, err = b.InspectImage(ctx, pool, id)
				require.ErrorIs(t, err, driver.ErrNotFound)
				return
			}
			require.NoError(t, err)
			got, err := b.InspectImage(ctx, pool, id)
			require.NoError(t, err)
			assert.Equal(t, info.Format, got.Format)
			require.NoError(t, b.DeleteImage(ctx, pool, id))
		})
	}
}

// TestPublicAPIOnly: the backend is built on the public driver contract only, as a driver outside the
// openvair module would be: no internal package, no other driver.
func TestPublicAPIOnly(t *testing.T) {
	allowed := map[string]bool{
		"github.com/openvair/openvair/driver": true,
		"github.com/google/uuid":              true,
		"golang.org/x/sys/unix":               true,
	}
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		require.NoError(t, err)
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			require.NoError(t, err)
			std := !strings.Contains(strings.Split(path, "/")[0], ".")
			assert.True(t, std || allowed[path], "%s imports %s", name, path)
		}
	}
	assert.Contains(t, driver.StorageBackends(), quotadir.Name, "registered when imported")
}

func BenchmarkClone(b *testing.B) {
	drivertest.BenchmarkClone(b, harness(b, benchQuota), driver.FormatRaw, giB, 256*miB)
}
