package refserver_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/testenv"
	"github.com/openvair/openvair/internal/testenv/nfsserver"
	"github.com/openvair/openvair/refserver"
)

// TestLocalFSFlow drives storages, volumes and images on a LocalFS directory storage through every
// endpoint, checking read-after-write, pagination and filters.
func TestLocalFSFlow(t *testing.T) { localFSFlow(t, envOptions{}) }

// TestLocalFSFlowPostgres runs the same flow with the server on PostgreSQL.
func TestLocalFSFlowPostgres(t *testing.T) { localFSFlow(t, envOptions{postgres: true}) }

func localFSFlow(t *testing.T, o envOptions) {
	e := start(t, o)
	dir := e.storageDir("pool")
	st := e.localStorage("local", dir)
	assert.Equal(t, "available", string(st.Status))
	assert.Positive(t, st.Capacity)

	// Location points at the new storage, and a read sees the write.
	r := e.do("POST", "/api/v1/storages", e.admin, map[string]any{"name": "second", "type": "localfs", "localfs": map[string]any{"path": e.storageDir("pool2")}})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	var second refserver.Storage
	require.NoError(t, jsonUnmarshal(r.Body, &second))
	assert.Equal(t, "/api/v1/storages/"+second.ID.String(), r.Header.Get("Location"))
	var got refserver.Storage
	e.call("GET", r.Header.Get("Location"), nil, 200, &got)
	assert.Equal(t, "second", got.Name)

	// PATCH then GET.
	e.call("PATCH", "/api/v1/storages/"+second.ID.String(), map[string]any{"description": "spare"}, 200, &got)
	assert.Equal(t, "spare", got.Description)
	e.call("GET", "/api/v1/storages/"+second.ID.String(), nil, 200, &got)
	assert.Equal(t, "spare", got.Description)

	// Storage list with filters and pages.
	var sp refserver.StoragePage
	e.call("GET", "/api/v1/storages?limit=1", nil, 200, &sp)
	require.Len(t, sp.Items, 1)
	require.NotEmpty(t, sp.NextCursor)
	var sp2 refserver.StoragePage
	e.call("GET", "/api/v1/storages?limit=1&cursor="+sp.NextCursor, nil, 200, &sp2)
	require.Len(t, sp2.Items, 1)
	assert.NotEqual(t, sp.Items[0].ID, sp2.Items[0].ID)
	e.call("GET", "/api/v1/storages?name=local&type=localfs&status=available", nil, 200, &sp)
	require.Len(t, sp.Items, 1)
	assert.Equal(t, st.ID, sp.Items[0].ID)
	e.call("DELETE", "/api/v1/storages/"+second.ID.String(), nil, 204, nil)
	e.do("GET", "/api/v1/storages/"+second.ID.String(), e.admin, nil).problemIs(t, 404, "not_found")

	// Volumes: create, list with filters and pages, edit, extend, delete.
	for i := range 5 {
		e.volume(st.ID, fmt.Sprintf("disk%d", i), 1<<30)
	}
	var vp refserver.VolumePage
	e.call("GET", "/api/v1/volumes?storage_id="+st.ID.String()+"&limit=2", nil, 200, &vp)
	require.Len(t, vp.Items, 2)
	seen := map[string]bool{}
	for cursor := ""; ; {
		var p refserver.VolumePage
		e.call("GET", "/api/v1/volumes?storage_id="+st.ID.String()+"&status=available&limit=2&cursor="+cursor, nil, 200, &p)
		for _, v := range p.Items {
			seen[v.Name] = true
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	assert.Len(t, seen, 5)
	e.call("GET", "/api/v1/volumes?name=disk3", nil, 200, &vp)
	require.Len(t, vp.Items, 1)
	disk := vp.Items[0]
	e.call("GET", "/api/v1/volumes?attached=true", nil, 200, &vp)
	assert.Empty(t, vp.Items)

	var v refserver.Volume
	e.call("PATCH", "/api/v1/volumes/"+disk.ID.String(), map[string]any{"name": "data", "shareable": true}, 200, &v)
	assert.Equal(t, "data", v.Name)
	assert.True(t, v.Shareable)
	e.call("POST", "/api/v1/volumes/"+disk.ID.String()+"/extend", map[string]any{"size": 2 << 30}, 200, &v)
	assert.EqualValues(t, 2<<30, v.Size)
	e.call("GET", "/api/v1/volumes/"+disk.ID.String(), nil, 200, &v)
	assert.EqualValues(t, 2<<30, v.Size)
	assert.Equal(t, "data", v.Name)
	_, err := os.Stat(filepath.Join(dir, "volume-"+disk.ID.String()))
	require.NoError(t, err, "the volume file is on the storage")

	// Images: raw body upload, multipart upload, get, list, edit, delete.
	content := iso()
	r = e.do("POST", "/api/v1/images?storage_id="+st.ID.String()+"&name=installer&description=first", e.admin, content)
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var img refserver.Image
	require.NoError(t, jsonUnmarshal(r.Body, &img))
	sum := sha256.Sum256(content)
	assert.Equal(t, hex.EncodeToString(sum[:]), img.SHA256)
	assert.Equal(t, "iso", string(img.Format))
	assert.EqualValues(t, len(content), img.Size)
	assert.Equal(t, "/api/v1/images/"+img.ID.String(), r.Header.Get("Location"))

	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	require.NoError(t, mw.WriteField("storage_id", st.ID.String()))
	require.NoError(t, mw.WriteField("description", "by form"))
	fw, err := mw.CreateFormFile("file", "netinst.iso")
	require.NoError(t, err)
	_, err = fw.Write(content)
	require.NoError(t, err)
	require.NoError(t, mw.Close())
	r = e.do("POST", "/api/v1/images", e.admin, &mp, "Content-Type", mw.FormDataContentType())
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var img2 refserver.Image
	require.NoError(t, jsonUnmarshal(r.Body, &img2))
	assert.Equal(t, "netinst.iso", img2.Name)
	assert.Equal(t, "by form", img2.Description)
	assert.Equal(t, img.SHA256, img2.SHA256)

	var ip refserver.ImagePage
	e.call("GET", "/api/v1/images?storage_id="+st.ID.String()+"&limit=1", nil, 200, &ip)
	require.Len(t, ip.Items, 1)
	assert.NotEmpty(t, ip.NextCursor)
	e.call("GET", "/api/v1/images?name=installer&status=available", nil, 200, &ip)
	require.Len(t, ip.Items, 1)
	e.call("PATCH", "/api/v1/images/"+img.ID.String(), map[string]any{"name": "installer-12"}, 200, &img)
	e.call("GET", "/api/v1/images/"+img.ID.String(), nil, 200, &img)
	assert.Equal(t, "installer-12", img.Name)

	// A storage that holds volumes and images cannot be deleted; the problem names them.
	p := e.do("DELETE", "/api/v1/storages/"+st.ID.String(), e.admin, nil).problemIs(t, 409, "in_use")
	assert.NotEmpty(t, p.Refs)

	e.call("DELETE", "/api/v1/images/"+img.ID.String(), nil, 204, nil)
	e.call("DELETE", "/api/v1/images/"+img2.ID.String(), nil, 204, nil)
	e.call("GET", "/api/v1/volumes?storage_id="+st.ID.String(), nil, 200, &vp)
	for _, v := range vp.Items {
		e.call("DELETE", "/api/v1/volumes/"+v.ID.String(), nil, 204, nil)
	}
	e.do("GET", "/api/v1/volumes/"+disk.ID.String(), e.admin, nil).problemIs(t, 404, "not_found")
	e.call("DELETE", "/api/v1/storages/"+st.ID.String(), nil, 204, nil)
	e.call("GET", "/api/v1/storages", nil, 200, &sp)
	assert.Empty(t, sp.Items)
}

// TestNFSFlow runs a storage, a volume and an image on an NFS export served by the in-process NFS server.
func TestNFSFlow(t *testing.T) {
	testenv.RequireRoot(t)
	exportDir := t.TempDir()
	srv := nfsserver.Start(t, exportDir)
	e := start(t, envOptions{})

	var st refserver.Storage
	e.call("POST", "/api/v1/storages", map[string]any{"name": "nas", "type": "nfs",
		"nfs": map[string]any{"server": srv.Addr(), "export": srv.Export()}}, 201, &st)
	assert.Equal(t, "nfs", string(st.Type))
	assert.Equal(t, "available", string(st.Status))
	assert.EqualValues(t, 3, st.Config["version"], "the backend fills in the default version")
	assert.Equal(t, "nfs:"+srv.Addr()+":"+srv.Export(), st.Location)
	var raw map[string]any
	e.call("GET", "/api/v1/storages/"+st.ID.String(), nil, 200, &raw)
	legacy, _ := raw["nfs"].(map[string]any)
	assert.Equal(t, srv.Addr(), legacy["server"], "responses keep the deprecated shorthand")

	v := e.volume(st.ID, "nfsdisk", 1<<30)
	var got refserver.Volume
	e.call("POST", "/api/v1/volumes/"+v.ID.String()+"/extend", map[string]any{"size": 3 << 30}, 200, &got)
	assert.EqualValues(t, 3<<30, got.Size)
	img := e.image(st.ID, "nfs-iso")
	assert.Equal(t, "iso", string(img.Format))
	files, err := filepath.Glob(filepath.Join(exportDir, "*", "image-"+img.ID.String()))
	require.NoError(t, err)
	require.Len(t, files, 1, "the image is on the export")
	f, err := os.Open(files[0])
	require.NoError(t, err)
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	require.NoError(t, err)
	assert.Equal(t, img.SHA256, hex.EncodeToString(h.Sum(nil)))

	e.do("DELETE", "/api/v1/storages/"+st.ID.String(), e.admin, nil).problemIs(t, 409, "in_use")
	e.call("DELETE", "/api/v1/images/"+img.ID.String(), nil, 204, nil)
	e.call("DELETE", "/api/v1/volumes/"+v.ID.String(), nil, 204, nil)

	// An unreachable NFS server gives 503 with the reason, and the rest of the API keeps answering.
	srv.Stop()
	r := e.do("POST", "/api/v1/volumes", e.admin, map[string]any{"name": "late", "storage_id": st.ID, "format": "raw", "size": 1 << 20})
	p := r.problemIs(t, 503, "unavailable")
	assert.NotEmpty(t, p.Detail)
	e.call("GET", "/api/v1/storages/"+st.ID.String(), nil, 200, nil)
	require.NoError(t, srv.Restart())
	e.call("DELETE", "/api/v1/storages/"+st.ID.String(), nil, 204, nil)
}
