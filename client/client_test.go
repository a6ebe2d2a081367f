package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/refserver"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
)

// env is an SDK on memory: with the real localfs backend and the fake hypervisor, served by the reference
// server in-process, and a client of it.
type env struct {
	c     *client.Client
	sys   *openvair.System
	hv    *fake.Hypervisor
	url   string // the server's base URL
	token string // an admin token
	base  string // a directory for storages
}

// server starts an env whose handler wrap, when not nil, wraps (to inject failures in front of it). It
// returns a client of it and a directory for a storage.
func server(t *testing.T, wrap func(http.Handler) http.Handler) (*client.Client, string) {
	t.Helper()
	e := newEnv(t, wrap, nil)
	return e.c, filepath.Join(e.base, "pool")
}

// newEnv starts an env; hv, when not nil, is its hypervisor (default: a fake.Hypervisor).
func newEnv(t testing.TB, wrap func(http.Handler) http.Handler, hv driver.Hypervisor) *env {
	t.Helper()
	e, stop, err := start(t.TempDir(), wrap, hv)
	require.NoError(t, err)
	t.Cleanup(stop)
	return e
}

// startServer is server without a *testing.T (for examples): everything lives under base; stop ends it.
func startServer(base string, wrap func(http.Handler) http.Handler) (*client.Client, string, func(), error) {
	e, stop, err := start(base, wrap, nil)
	if err != nil {
		return nil, "", nil, err
	}
	return e.c, filepath.Join(base, "pool"), stop, nil
}

// start starts an env under base.
func start(base string, wrap func(http.Handler) http.Handler, hv driver.Hypervisor) (*env, func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := localfs.New(driver.Config{DataDir: filepath.Join(base, "data")})
	if err != nil {
		return nil, nil, err
	}
	e := &env{base: base}
	if hv == nil {
		e.hv = fake.NewHypervisor()
		hv = e.hv
	}
	sys, err := openvair.Open(ctx, openvair.Config{DSN: "memory:", HypervisorInstance: hv,
		StorageBackends: map[storage.Type]driver.StorageBackend{"localfs": b}})
	if err != nil {
		return nil, nil, err
	}
	e.sys = sys
	token, err := refserver.GenerateToken()
	if err != nil {
		return nil, nil, err
	}
	tokens, err := refserver.NewTokens(refserver.Token{Name: "admin", Role: refserver.RoleAdmin, SHA256: refserver.HashToken(token)})
	if err != nil {
		return nil, nil, err
	}
	h, err := refserver.New(sys, refserver.Config{Tokens: tokens, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, nil, err
	}
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	stop := func() { srv.Close(); _ = sys.Close() }
	e.url, e.token = srv.URL, token
	e.c, err = client.New(client.Config{URL: srv.URL, Token: token, Backoff: 10 * time.Millisecond})
	if err != nil {
		stop()
		return nil, nil, err
	}
	return e, stop, nil
}

// The client drives storages, images, volumes from sources, snapshots and operations against a real
// server and returns the SDK's types; its errors match the SDK's kinds.
func TestClientFlow(t *testing.T) {
	c, dir := server(t, nil)
	ctx := t.Context()
	st, err := c.CreateStorage(ctx, storage.CreateRequest{Name: "pool", Type: localfs.Type, Config: localfs.Config{Path: dir}})
	require.NoError(t, err)
	assert.Equal(t, storage.StatusAvailable, st.Status)
	all, err := c.ListStorages(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1)

	content := bytes.Repeat([]byte("disk"), 1<<20)
	var sent int64
	img, err := c.UploadImage(ctx, image.CreateRequest{Name: "disk.raw", StorageID: st.ID}, bytes.NewReader(content), int64(len(content)),
		func(n int64) { sent = n })
	require.NoError(t, err)
	assert.Equal(t, image.FormatRaw, img.Format)
	assert.EqualValues(t, len(content), sent, "the progress callback saw every byte")

	copied, err := c.CreateVolume(ctx, volume.CreateRequest{Name: "copy", Format: volume.FormatQCOW2, Source: &volume.Source{ImageID: img.ID}})
	require.NoError(t, err)
	assert.Equal(t, volume.StatusAvailable, copied.Status)
	linked, err := c.CreateVolume(ctx, volume.CreateRequest{Name: "linked", Source: &volume.Source{VolumeID: copied.ID, Mode: volume.ModeLinked}})
	require.NoError(t, err)
	require.NotNil(t, linked.Backing)

	err = c.DeleteVolume(ctx, copied.ID, false)
	require.ErrorIs(t, err, openvair.ErrInUse, "the SDK's kind, remotely")
	var ce *client.Error
	require.ErrorAs(t, err, &ce)
	require.Len(t, ce.Refs, 1)
	assert.Equal(t, "linked", ce.Refs[0].Name)
	assert.NotEmpty(t, ce.RequestID)

	_, err = c.GetVolume(ctx, uuid.New())
	assert.ErrorIs(t, err, openvair.ErrNotFound)
	_, err = c.CreateStorage(ctx, storage.CreateRequest{Name: "bad", Type: localfs.Type, Config: localfs.Config{Path: "relative"}})
	require.ErrorIs(t, err, openvair.ErrInvalid)
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "body.config.path", ce.Errors[0].Location)

	snap, err := c.CreateSnapshot(ctx, linked.ID, volume.SnapshotRequest{Name: "s1"})
	require.NoError(t, err)
	reverted, err := c.RevertSnapshot(ctx, snap.ID)
	require.NoError(t, err)
	assert.Equal(t, volume.StatusAvailable, reverted.Status)

	op, err := c.CreateVolumeAsync(ctx, volume.CreateRequest{Name: "later", Source: &volume.Source{ImageID: img.ID}})
	require.NoError(t, err)
	done, err := c.WaitOperation(ctx, op.ID, 30)
	require.NoError(t, err)
	assert.Equal(t, "succeeded", string(done.Status))
	require.NotNil(t, done.Result)
	later, err := c.GetVolume(ctx, done.Result.ID)
	require.NoError(t, err)
	assert.Equal(t, "later", later.Name)

	require.NoError(t, c.DeleteVolume(ctx, linked.ID, true))
	require.NoError(t, c.DeleteVolume(ctx, copied.ID, false))
}

// decode decodes JSON into a new T.
func decode[T any](b []byte) (*T, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return &v, nil
}
