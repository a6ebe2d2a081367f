package image_test

import (
	"bytes"
	"context"
	"errors"
	"github.com/openvair/openvair/internal/fsm/fsmtest"
	"io"
	"testing"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/vm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTransitionTable(t *testing.T) {
	legal := map[image.Status][]image.Status{
		image.StatusUploading: {image.StatusAvailable, image.StatusError},
		image.StatusAvailable: {image.StatusAvailable, image.StatusDeleting, image.StatusError},
		image.StatusDeleting:  {image.StatusError},
		image.StatusError:     {image.StatusAvailable, image.StatusError, image.StatusDeleting},
	}
	fsmtest.Check(t, legal, image.Status.CanTransition, func(from, to image.Status) (image.Status, error) {
		e := &image.Image{Status: from}
		err := e.SetStatus(to, "reason")
		if err == nil {
			assert.Equal(t, to == image.StatusError, e.StatusReason == "reason", "a reason only with error")
		}
		return e.Status, err
	})
}

func TestUploadDetectsContent(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	cases := []struct {
		name    string
		content []byte
		want    image.Format
	}{
		{"ubuntu.iso.qcow2", append([]byte("QFI\xfb"), make([]byte, 1020)...), image.FormatQCOW2},
		{"disk.raw.iso", sdktest.ISO(), image.FormatISO},
		{"named-like-an-iso.iso", bytes.Repeat([]byte{7}, 5000), image.FormatRaw},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, err := e.Sys.Images.Create(e.Ctx, image.CreateRequest{Name: c.name, StorageID: st.ID}, bytes.NewReader(c.content))
			require.NoError(t, err)
			assert.Equal(t, c.want, img.Format, "the format comes from the bytes, not the name")
			assert.EqualValues(t, len(c.content), img.Size)
			assert.Len(t, img.SHA256, 64)
			assert.Equal(t, image.StatusAvailable, img.Status)
		})
	}
}

func TestUploadRefusals(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	e.Sys.Images.MaxSize = 1000

	_, err := e.Sys.Images.Create(e.Ctx, image.CreateRequest{Name: "big", StorageID: st.ID}, bytes.NewReader(make([]byte, 1001)))
	assert.ErrorIs(t, err, errkind.TooLarge)
	_, err = e.Sys.Images.Create(e.Ctx, image.CreateRequest{Name: "exact", StorageID: st.ID}, bytes.NewReader(make([]byte, 1000)))
	assert.NoError(t, err, "exactly the limit is fine")

	_, err = e.Sys.Images.Create(e.Ctx, image.CreateRequest{Name: "../../etc/passwd", StorageID: st.ID}, bytes.NewReader(nil))
	assert.ErrorIs(t, err, errkind.Invalid)
	_, err = e.Sys.Images.Create(e.Ctx, image.CreateRequest{Name: "x", StorageID: uuid.New()}, bytes.NewReader(nil))
	assert.ErrorIs(t, err, errkind.NotFound)
	_, err = e.Sys.Images.Create(e.Ctx, image.CreateRequest{Name: "exact", StorageID: st.ID}, bytes.NewReader(nil))
	assert.ErrorIs(t, err, errkind.AlreadyExists)

	broken := errors.New("client went away")
	_, err = e.Sys.Images.Create(e.Ctx, image.CreateRequest{Name: "partial", StorageID: st.ID}, io.MultiReader(bytes.NewReader(make([]byte, 10)), iotestErr(broken)))
	assert.ErrorIs(t, err, broken)

	ctx, cancel := context.WithCancel(e.Ctx)
	cancel()
	_, err = e.Sys.Images.Create(ctx, image.CreateRequest{Name: "cancelled", StorageID: st.ID}, bytes.NewReader(make([]byte, 10)))
	assert.ErrorIs(t, err, context.Canceled)

	page, err := e.Sys.Images.List(e.Ctx, image.ListOptions{})
	require.NoError(t, err)
	require.Len(t, page.Items, 1, "only the good upload remains")
	assert.Equal(t, "exact", page.Items[0].Name)
	assert.Equal(t, 1, e.FS.Objects(st.ID), "and only its file")
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func iotestErr(err error) io.Reader { return errReader{err} }

func TestDeleteEditRefresh(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	img := e.Image(t, st.ID, "installer")
	req := sdktest.VMRequest("vm1")
	req.CDROMs = []vm.CDROM{{ImageID: img.ID}}
	m, err := e.Sys.VMs.Create(e.Ctx, req)
	require.NoError(t, err)

	err = e.Sys.Images.Delete(e.Ctx, img.ID)
	require.ErrorIs(t, err, errkind.InUse)
	var oe *errkind.Error
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, []errkind.Ref{{Kind: "vm", ID: m.ID.String(), Name: "vm1"}}, oe.Refs)

	name := "installer-v2"
	got, err := e.Sys.Images.Edit(e.Ctx, img.ID, image.EditRequest{Name: &name})
	require.NoError(t, err)
	assert.Equal(t, name, got.Name)
	require.Len(t, got.Attachments, 1)

	require.NoError(t, e.Sys.VMs.Delete(e.Ctx, m.ID, vm.DeleteOptions{}))
	e.FS.FailNext("DeleteImage", fake.ErrInjected, 1)
	require.ErrorIs(t, e.Sys.Images.Delete(e.Ctx, img.ID), fake.ErrInjected)
	got, err = e.Sys.Images.Get(e.Ctx, img.ID)
	require.NoError(t, err)
	assert.Equal(t, image.StatusError, got.Status)

	got, err = e.Sys.Images.Refresh(e.Ctx, img.ID)
	require.NoError(t, err)
	assert.Equal(t, image.StatusAvailable, got.Status, "present again after refresh")
	e.FS.RemoveObject(st.ID, img.ID)
	got, err = e.Sys.Images.Refresh(e.Ctx, img.ID)
	require.NoError(t, err)
	assert.Equal(t, image.StatusError, got.Status)
	assert.Contains(t, got.StatusReason, "missing")

	require.NoError(t, e.Sys.Images.Delete(e.Ctx, img.ID))
	_, err = e.Sys.Images.Get(e.Ctx, img.ID)
	assert.ErrorIs(t, err, errkind.NotFound)
}
