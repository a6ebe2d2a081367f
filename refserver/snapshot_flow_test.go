package refserver_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/refserver"
)

// Volumes from an image (copied and converted, linked), snapshots (take, list, revert, delete) and the
// rules that keep them consistent, through the API.
func TestVolumeSourcesAndSnapshots(t *testing.T) {
	e := start(t, envOptions{})
	st := e.localStorage("pool", e.storageDir("pool"))
	raw := bytes.Repeat([]byte{0}, 4<<20)
	copy(raw[4096:], "disk content")
	var img refserver.Image
	e.call("POST", "/api/v1/images?storage_id="+st.ID.String()+"&name=disk.raw", raw, 201, &img)
	require.Equal(t, "raw", string(img.Format))

	var q refserver.Volume
	e.call("POST", "/api/v1/volumes", map[string]any{"name": "q", "format": "qcow2", "source": map[string]any{"image_id": img.ID}}, 201, &q)
	assert.Equal(t, "qcow2", string(q.Format))
	assert.EqualValues(t, len(raw), q.Size)
	assert.Equal(t, st.ID, q.StorageID, "the source's storage by default")

	var linked refserver.Volume
	e.call("POST", "/api/v1/volumes", map[string]any{"name": "linked", "source": map[string]any{"image_id": img.ID, "mode": "linked"}}, 201, &linked)
	require.NotNil(t, linked.Backing)
	assert.Equal(t, "image", linked.Backing.Kind)
	p := e.do("DELETE", "/api/v1/images/"+img.ID.String(), e.admin, nil).problemIs(t, 409, "in_use")
	require.Len(t, p.Refs, 1)
	assert.Equal(t, "linked", p.Refs[0].Name)
	var gotImg refserver.Image
	e.call("GET", "/api/v1/images/"+img.ID.String(), nil, 200, &gotImg)
	require.Len(t, gotImg.Linked, 1)

	iso := e.image(st.ID, "cd.iso")
	p = e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "x", "source": map[string]any{"image_id": iso.ID}}).problemIs(t, 422, "invalid")
	assert.Equal(t, "body.source.image_id", p.Errors[0].Location)

	var snap refserver.Snapshot
	e.call("POST", "/api/v1/volumes/"+q.ID.String()+"/snapshots", map[string]any{"name": "first"}, 201, &snap)
	assert.Equal(t, "available", string(snap.Status))
	var list struct{ Items []refserver.Snapshot }
	e.call("GET", "/api/v1/volumes/"+q.ID.String()+"/snapshots", nil, 200, &list)
	require.Len(t, list.Items, 1)
	var reverted refserver.Volume
	e.call("POST", "/api/v1/snapshots/"+snap.ID.String()+"/revert", nil, 200, &reverted)
	assert.Equal(t, "available", string(reverted.Status))
	e.do("DELETE", "/api/v1/volumes/"+q.ID.String(), e.admin, nil).problemIs(t, 409, "in_use")
	e.call("DELETE", "/api/v1/volumes/"+q.ID.String()+"?delete_snapshots=true", nil, 204, nil)
	e.do("GET", "/api/v1/snapshots/"+snap.ID.String(), e.admin, nil).problemIs(t, 404, "not_found")

	e.call("DELETE", "/api/v1/volumes/"+linked.ID.String(), nil, 204, nil)
	e.call("DELETE", "/api/v1/images/"+img.ID.String(), nil, 204, nil)
}

// A copy from an image runs as an operation on a River worker (Prefer: respond-async): it reports the bytes
// copied and ends with the volume; a bad source is refused with 422 before anything is queued.
func TestAsyncVolumeFromImage(t *testing.T) {
	e := start(t, envOptions{})
	st := e.localStorage("pool", e.storageDir("pool"))
	raw := bytes.Repeat([]byte("data"), 1<<20)
	var img refserver.Image
	e.call("POST", "/api/v1/images?storage_id="+st.ID.String()+"&name=disk.raw", raw, 201, &img)

	r := e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "async-copy", "format": "qcow2",
		"source": map[string]any{"image_id": img.ID}}, "Prefer", "respond-async")
	require.Equal(t, 202, r.Status, "%s", r.Body)
	var done refserver.Operation
	e.call("GET", r.Header.Get("Location")+"/wait?timeout=60", nil, 200, &done)
	require.Equal(t, "succeeded", string(done.Status), "%+v", done.Error)
	assert.EqualValues(t, len(raw), done.Progress.BytesDone, "the bytes copied")
	var vol refserver.Volume
	e.call("GET", "/api/v1/volumes/"+done.Result.ID.String(), nil, 200, &vol)
	assert.Equal(t, "available", string(vol.Status))
	assert.EqualValues(t, len(raw), vol.Size)

	e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "bad", "source": map[string]any{"image_id": st.ID}},
		"Prefer", "respond-async").problemIs(t, 422, "invalid")
}
