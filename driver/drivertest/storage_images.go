package drivertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
)

func stTestImages(t *testing.T, h StorageHarness, pool driver.PoolSpec) {
	b := h.Backend

	t.Run("Write", func(t *testing.T) {
		for _, c := range []struct {
			name    string
			content []byte
			format  driver.ImageFormat
		}{
			{"iso", stISO(t, 3*stMiB), driver.ImageISO},
			{"raw", stPattern(5*stMiB+123, 1), driver.ImageRaw},
			{"qcow2", stQCOW2(t, 256*stMiB, nil), driver.ImageQCOW2},
			{"empty", nil, driver.ImageRaw},
		} {
			t.Run(c.name, func(t *testing.T) {
				ctx := stCtx(t)
				id := stNewID()
				info, err := b.WriteImage(ctx, pool, driver.ImageWrite{ID: id, MaxSize: 64 * stMiB}, bytes.NewReader(c.content))
				require.NoError(t, err)
				t.Cleanup(func() { _ = b.DeleteImage(context.Background(), pool, id) })
				sum := sha256.Sum256(c.content)
				require.Equal(t, hex.EncodeToString(sum[:]), info.SHA256)
				require.Equal(t, int64(len(c.content)), info.Size)
				require.Equal(t, c.format, info.Format)

				got, err := b.InspectImage(ctx, pool, id)
				require.NoError(t, err)
				require.Equal(t, int64(len(c.content)), got.Size)
				require.Equal(t, c.format, got.Format)
				stCheckImageFile(t, b.DiskSource(pool, driver.KindImage, id), c.content)

				_, err = b.WriteImage(ctx, pool, driver.ImageWrite{ID: id}, bytes.NewReader([]byte("other")))
				require.ErrorIs(t, err, driver.ErrAlreadyExists, "writing an existing image")
				got, err = b.InspectImage(ctx, pool, id)
				require.NoError(t, err)
				require.Equal(t, int64(len(c.content)), got.Size, "a refused write leaves the image as it was")

				require.NoError(t, b.DeleteImage(ctx, pool, id))
				_, err = b.InspectImage(ctx, pool, id)
				require.ErrorIs(t, err, driver.ErrNotFound, "inspect after delete")
				require.NoError(t, b.DeleteImage(ctx, pool, id), "deleting a missing image succeeds")
				stCheckNoFile(t, b.DiskSource(pool, driver.KindImage, id))
			})
		}
	})

	t.Run("WriteConcurrently", func(t *testing.T) {
		ctx := stCtx(t)
		id := stNewID()
		content := stPattern(2*stMiB, 9)
		errs := stConcurrently(4, func() error {
			_, err := b.WriteImage(ctx, pool, driver.ImageWrite{ID: id}, bytes.NewReader(content))
			return err
		})
		t.Cleanup(func() { _ = b.DeleteImage(context.Background(), pool, id) })
		stCheckOneWinner(t, errs)
		got, err := b.InspectImage(ctx, pool, id)
		require.NoError(t, err)
		require.Equal(t, int64(len(content)), got.Size)
		stCheckImageFile(t, b.DiskSource(pool, driver.KindImage, id), content)
	})

	t.Run("InspectMissing", func(t *testing.T) {
		_, err := b.InspectImage(stCtx(t), pool, stNewID())
		require.ErrorIs(t, err, driver.ErrNotFound)
	})

	// Every failed upload must leave nothing behind.
	failures := []struct {
		name string
		// run performs the upload and checks its error.
		run  func(t *testing.T, img driver.ImageWrite) error
		kind error
	}{
		{
			name: "QCOW2BackingFile",
			run: func(t *testing.T, img driver.ImageWrite) error {
				content := stQCOW2(t, 64*stMiB, &stQCOW2Opts{backing: "/etc/shadow"})
				_, err := b.WriteImage(stCtx(t), pool, img, bytes.NewReader(content))
				return err
			},
			kind: driver.ErrInvalid,
		},
		{
			name: "QCOW2DataFile",
			run: func(t *testing.T, img driver.ImageWrite) error {
				content := stQCOW2(t, 64*stMiB, &stQCOW2Opts{dataFileBit: true})
				_, err := b.WriteImage(stCtx(t), pool, img, bytes.NewReader(content))
				return err
			},
			kind: driver.ErrInvalid,
		},
		{
			name: "OverMaxSize",
			run: func(t *testing.T, img driver.ImageWrite) error {
				img.MaxSize = 4 * stMiB
				_, err := b.WriteImage(stCtx(t), pool, img, io.LimitReader(&stPatternReader{seed: 3}, 4*stMiB+1))
				return err
			},
			kind: driver.ErrTooLarge,
		},
		{
			name: "CancelledMidway",
			run: func(t *testing.T, img driver.ImageWrite) error {
				ctx, cancel := context.WithCancel(stCtx(t))
				defer cancel()
				// An endless reader that cancels the upload after 8 MiB.
				r := &stPatternReader{seed: 4, after: 8 * stMiB, hook: cancel}
				_, err := b.WriteImage(ctx, pool, img, r)
				require.Less(t, r.n, 8*stMiB+64*stMiB, "the upload must stop soon after the cancel")
				return err
			},
			kind: context.Canceled,
		},
		{
			name: "ReaderError",
			run: func(t *testing.T, img driver.ImageWrite) error {
				r := io.MultiReader(io.LimitReader(&stPatternReader{seed: 5}, 3*stMiB), stErrReader{})
				_, err := b.WriteImage(stCtx(t), pool, img, r)
				return err
			},
			kind: nil,
		},
		{
			name: "CancelledBeforeStart",
			run: func(t *testing.T, img driver.ImageWrite) error {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				_, err := b.WriteImage(ctx, pool, img, bytes.NewReader([]byte("data")))
				return err
			},
			kind: context.Canceled,
		},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			img := driver.ImageWrite{ID: stNewID()}
			err := f.run(t, img)
			require.Error(t, err)
			if f.kind != nil {
				require.ErrorIs(t, err, f.kind)
			}
			_, err = b.InspectImage(stCtx(t), pool, img.ID)
			require.ErrorIs(t, err, driver.ErrNotFound, "a failed upload leaves no image")
			stCheckNoFile(t, b.DiskSource(pool, driver.KindImage, img.ID))
			// The id is free again: a later upload with it succeeds.
			_, err = b.WriteImage(stCtx(t), pool, img, bytes.NewReader([]byte("retry")))
			require.NoError(t, err, "upload again after a failure")
			require.NoError(t, b.DeleteImage(stCtx(t), pool, img.ID))
		})
	}
}

// stErrReader fails every read, like a client connection that drops.
type stErrReader struct{}

var errStDropped = errors.New("drivertest: connection dropped")

func (stErrReader) Read([]byte) (int, error) { return 0, errStDropped }
