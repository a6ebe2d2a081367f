package localfs_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/localfs"
)

// BenchmarkLinkVolume measures making a linked clone of a 10 GiB qcow2 volume holding 256 MiB of data (a
// qcow2 overlay with a relative backing file), against a full copy of the same volume into a new qcow2
// volume (FillVolume, converted in Go, zero clusters skipped): the linked clone costs the same whatever the
// data. Each clone is deleted untimed.
func BenchmarkLinkVolume(b *testing.B) {
	ctx := context.Background()
	sb, err := newBenchBackend(b)
	require.NoError(b, err)
	backend := sb.(*localfs.Backend)
	pool := dirPool(filepath.Join(b.TempDir(), "storage"))
	_, err = backend.Prepare(ctx, pool)
	require.NoError(b, err)
	data := bytes.Repeat([]byte{0xa5}, 256<<20)
	base := uuid.New()
	_, err = backend.FillVolume(ctx, pool, driver.VolumeSpec{ID: base, Format: driver.FormatQCOW2, Size: 10 << 30},
		bytes.NewReader(data), int64(len(data)), nil)
	require.NoError(b, err)
	ref := driver.ObjectRef{Kind: driver.KindVolume, ID: base, Format: driver.FormatQCOW2}

	b.Run("Linked", func(b *testing.B) {
		for b.Loop() {
			id := uuid.New()
			_, err := backend.LinkVolume(ctx, pool, ref, driver.VolumeSpec{ID: id, Format: driver.FormatQCOW2, Size: 10 << 30})
			require.NoError(b, err)
			b.StopTimer()
			require.NoError(b, backend.DeleteVolume(ctx, pool, id))
			b.StartTimer()
		}
	})
	b.Run("FullCopy", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			id := uuid.New()
			// The raw guest view of the base is its data followed by zeros: fill from the data itself.
			_, err := backend.FillVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: driver.FormatQCOW2, Size: 10 << 30},
				bytes.NewReader(data), int64(len(data)), nil)
			require.NoError(b, err)
			b.StopTimer()
			require.NoError(b, backend.DeleteVolume(ctx, pool, id))
			b.StartTimer()
		}
	})
}
