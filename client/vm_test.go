package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// serialHV is the fake hypervisor with serial consoles: each one opened is a pipe whose guest end the test
// gets.
type serialHV struct {
	*fake.Hypervisor
	guests chan net.Conn
}

var _ driver.SerialConsoler = (*serialHV)(nil)

func (h *serialHV) OpenSerial(ctx context.Context, _ uuid.UUID) (io.ReadWriteCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	guest, console := net.Pipe()
	h.guests <- guest
	return console, nil
}

// SerialConsole opens a running VM's serial console through a ticket and a WebSocket: what the guest writes
// arrives, what the client writes is typed into the guest, and the end of the console is io.EOF. A stopped
// VM has none (ErrWrongState).
func TestSerialConsole(t *testing.T) {
	hv := &serialHV{Hypervisor: fake.NewHypervisor(), guests: make(chan net.Conn, 4)}
	e := newEnv(t, nil, hv)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	v := stoppedVM(t, e)

	_, err := e.c.SerialConsole(ctx, v.ID)
	require.ErrorIs(t, err, openvair.ErrWrongState, "a stopped VM")
	_, err = e.c.SerialConsole(ctx, uuid.New())
	require.ErrorIs(t, err, openvair.ErrNotFound)

	_, err = e.c.StartVM(ctx, v.ID)
	require.NoError(t, err)
	con, err := e.c.VMs().SerialConsole(ctx, v.ID)
	require.NoError(t, err)
	defer con.Close()
	guest := <-hv.guests
	require.NoError(t, guest.SetDeadline(time.Now().Add(20*time.Second)))

	go func() { _, _ = guest.Write([]byte("login: ")) }()
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(con, buf, len("login: "))
	require.NoError(t, err)
	assert.Equal(t, "login: ", string(buf[:n]))

	_, err = con.Write([]byte("root\n"))
	require.NoError(t, err)
	n, err = io.ReadAtLeast(guest, buf, len("root\n"))
	require.NoError(t, err)
	assert.Equal(t, "root\n", string(buf[:n]))

	require.NoError(t, guest.Close()) // the console ends (the VM stopped)
	_, err = io.ReadAll(con)
	require.NoError(t, err, "io.EOF at the end")

	// A second console; the client closing it leaves the VM running.
	con2, err := e.c.SerialConsole(ctx, v.ID)
	require.NoError(t, err)
	guest2 := <-hv.guests
	require.NoError(t, guest2.SetReadDeadline(time.Now().Add(10*time.Second)))
	require.NoError(t, con2.Close())
	_, err = io.ReadAll(guest2)
	require.NoError(t, err, "the guest's end sees the console end")
	got, err := e.c.GetVM(ctx, v.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.PowerRunning, got.PowerState)
}

// The host, its networks and the storage types are the SDK's.
func TestHostNetworksAndTypes(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := t.Context()
	host, err := e.c.Host(ctx)
	require.NoError(t, err)
	want, err := e.sys.VMs.Host(ctx)
	require.NoError(t, err)
	assert.Equal(t, want, *host)

	nets, err := e.c.Networks(ctx)
	require.NoError(t, err)
	wantNets, err := e.sys.VMs.Networks(ctx)
	require.NoError(t, err)
	assert.Equal(t, wantNets, nets)

	types, err := e.c.StorageTypes(ctx)
	require.NoError(t, err)
	i := slices.IndexFunc(types, func(st client.StorageType) bool { return st.Type == "localfs" })
	require.GreaterOrEqual(t, i, 0, "localfs is served")
	assert.Equal(t, []volume.Format{volume.FormatQCOW2, volume.FormatRaw}, types[i].VolumeFormats)
	assert.True(t, types[i].Extend)
	assert.Equal(t, "object", types[i].ConfigSchema["type"])
}

// A console log is the end of what the guest wrote; a VM without one is ErrNotFound.
func TestConsoleLog(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := t.Context()
	v := stoppedVM(t, e)
	_, err := e.c.ConsoleLog(ctx, v.ID, 0)
	require.ErrorIs(t, err, openvair.ErrNotFound)
	e.hv.AppendConsole(v.ID, []byte("Linux version 6.1\nlogin: "))
	all, err := e.c.ConsoleLog(ctx, v.ID, 0)
	require.NoError(t, err)
	assert.Equal(t, "Linux version 6.1\nlogin: ", string(all))
	tail, err := e.c.ConsoleLog(ctx, v.ID, 7)
	require.NoError(t, err)
	assert.Equal(t, "login: ", string(tail))
}

// *Error matches the SDK's kinds by name, and nothing else.
func TestErrorIs(t *testing.T) {
	for _, tc := range []struct {
		kind string
		is   error
		not  error
	}{
		{"not_found", openvair.ErrNotFound, openvair.ErrInUse},
		{"in_use", openvair.ErrInUse, openvair.ErrConflict},
		{"invalid", openvair.ErrInvalid, openvair.ErrNotFound},
		{"precondition_failed", openvair.ErrPreconditionFailed, openvair.ErrConflict},
		{"gone", openvair.ErrGone, openvair.ErrNotFound},
		{"cancelled", openvair.ErrWrongState, openvair.ErrInvalid},
		{"unauthenticated", nil, openvair.ErrInvalid},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			err := error(&client.Error{Status: http.StatusConflict, Kind: tc.kind, Detail: "x"})
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			assert.False(t, errors.Is(err, tc.not))
			wrapped := errkind.Wrap(errkind.Unavailable, err, "test", "", "wrapped")
			if tc.is != nil {
				assert.ErrorIs(t, wrapped, tc.is, "through wrapping")
			}
		})
	}
}

// The List calls follow every page and filter as asked; an import from a loopback address is refused
// before anything runs.
func TestLists(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := t.Context()
	var pools []uuid.UUID
	for i := range 2 {
		st, err := e.c.CreateStorage(ctx, storage.CreateRequest{Name: fmt.Sprintf("pool%d", i), Type: "localfs",
			Config: map[string]string{"path": fmt.Sprintf("%s/pool%d", e.base, i)}})
		require.NoError(t, err)
		pools = append(pools, st.ID)
		for j := range 3 {
			_, err := e.c.CreateVolume(ctx, volume.CreateRequest{Name: fmt.Sprintf("v%d", j), StorageID: st.ID,
				Format: volume.FormatRaw, Size: 1 << 20})
			require.NoError(t, err)
		}
	}
	for _, tc := range []struct {
		storage uuid.UUID
		n       int
	}{{pools[0], 3}, {pools[1], 3}, {uuid.Nil, 6}} {
		vols, err := e.c.ListVolumes(ctx, tc.storage)
		require.NoError(t, err)
		assert.Len(t, vols, tc.n)
		for _, v := range vols {
			if tc.storage != uuid.Nil {
				assert.Equal(t, tc.storage, v.StorageID)
			}
		}
	}
	content := bytes.Repeat([]byte{1}, 1<<16)
	img, err := e.c.Images().Create(ctx, image.CreateRequest{Name: "unknown-length", StorageID: pools[0]}, bytes.NewReader(content))
	require.NoError(t, err, "streamed without a length")
	assert.EqualValues(t, len(content), img.Size)
	imgs, err := e.c.ListImages(ctx)
	require.NoError(t, err)
	require.Len(t, imgs, 1)
	name := "renamed"
	edited, err := e.c.EditImage(ctx, img.ID, image.EditRequest{Name: &name})
	require.NoError(t, err)
	assert.Equal(t, name, edited.Name)
	vms, err := e.c.ListVMs(ctx)
	require.NoError(t, err)
	assert.Empty(t, vms)
	sts, err := e.c.ListStorages(ctx)
	require.NoError(t, err)
	assert.Len(t, sts, 2)

	_, err = e.c.ImportImageAsync(ctx, image.ImportRequest{StorageID: pools[0], URL: "http://127.0.0.1/disk.img"})
	require.ErrorIs(t, err, openvair.ErrInvalid, "a loopback address")
	var ce *client.Error
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "body.url", ce.Errors[0].Location)
}
