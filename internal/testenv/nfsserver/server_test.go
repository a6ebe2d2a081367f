package nfsserver

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	gonfs "github.com/vmware/go-nfs-client/nfs"
	"github.com/vmware/go-nfs-client/nfs/rpc"

	"github.com/openvair/openvair/internal/nfsrpc"
)

func mount(t *testing.T, s *Server) (*gonfs.Target, rpc.Auth) {
	t.Helper()
	m, err := gonfs.DialMount(s.Addr())
	require.NoError(t, err)
	defer m.Close()
	auth := rpc.NewAuthUnix("test", 0, 0).Auth()
	target, err := m.Mount(s.Export(), auth)
	require.NoError(t, err)
	t.Cleanup(func() { target.Close() })
	return target, auth
}

func TestServeMountAndProcedures(t *testing.T) {
	dir := t.TempDir()
	s := Start(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	port, err := nfsrpc.GetPort(ctx, s.Addr(), nfsrpc.NFSProg, nfsrpc.NFSVers)
	require.NoError(t, err)
	require.Equal(t, s.Port(), port)
	_, err = nfsrpc.GetPort(ctx, s.Addr(), 100021, 4) // NLM is not served
	require.Error(t, err)

	target, auth := mount(t, s)
	fh, err := target.Create("a", 0o644)
	require.NoError(t, err)
	require.NoError(t, nfsrpc.SetSize(target, auth, fh, 1<<20))
	st, err := os.Stat(filepath.Join(dir, "a"))
	require.NoError(t, err)
	require.EqualValues(t, 1<<20, st.Size())

	attr, err := nfsrpc.GetAttr(target, auth, fh)
	require.NoError(t, err)
	require.EqualValues(t, 1<<20, attr.Size)
	require.EqualValues(t, nfsrpc.TypeRegular, attr.Type)

	_, root, err := target.Lookup("/")
	require.NoError(t, err)
	require.NoError(t, nfsrpc.Rename(target, auth, root, "a", root, "b"))
	require.FileExists(t, filepath.Join(dir, "b"))
	require.NoFileExists(t, filepath.Join(dir, "a"))

	fs, err := nfsrpc.GetFSStat(target, auth, root)
	require.NoError(t, err)
	require.NotZero(t, fs.TotalBytes)
	require.Less(t, fs.TotalBytes, uint64(1)<<60, "FSSTAT must report the backing directory, not 1<<62")

	_, fh2, err := target.Lookup("b")
	require.NoError(t, err)
	w, err := nfsrpc.Write(target, auth, fh2, 4096, []byte("hello"), nfsrpc.Unstable)
	require.NoError(t, err)
	require.EqualValues(t, 5, w.Count)
	_, err = nfsrpc.Commit(target, auth, fh2)
	require.NoError(t, err)
	data, _, err := nfsrpc.Read(target, auth, fh2, 4096, 5)
	require.NoError(t, err)
	require.Equal(t, "hello", string(data))

	_, err = nfsrpc.GetAttr(target, auth, []byte("no such handle"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestMountExport checks that MOUNT's EXPORT procedure (which libnfs calls) gets an empty list.
func TestMountExport(t *testing.T) {
	s := Start(t, t.TempDir())
	conn, err := net.Dial("tcp", net.JoinHostPort(s.Addr(), strconv.Itoa(s.Port())))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	var e nfsrpc.Encoder
	for _, v := range []uint32{42, 0, 2, nfsrpc.MountProg, nfsrpc.MountVers, nfsrpc.MountProcExport, 0, 0, 0, 0} {
		e.Uint32(v)
	}
	require.NoError(t, nfsrpc.WriteRecord(conn, e.B))
	rec, err := nfsrpc.ReadRecord(conn)
	require.NoError(t, err)
	body, err := nfsrpc.DecodeReply(rec, 42)
	require.NoError(t, err)
	require.Equal(t, []byte{0, 0, 0, 0}, body)

	// The same connection still serves go-nfs: MOUNT NULL.
	e = nfsrpc.Encoder{}
	for _, v := range []uint32{43, 0, 2, nfsrpc.MountProg, nfsrpc.MountVers, 0, 0, 0, 0, 0} {
		e.Uint32(v)
	}
	require.NoError(t, nfsrpc.WriteRecord(conn, e.B))
	rec, err = nfsrpc.ReadRecord(conn)
	require.NoError(t, err)
	_, err = nfsrpc.DecodeReply(rec, 43)
	require.NoError(t, err)
}

func TestStopRestart(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644))
	s := Start(t, dir)
	target, _ := mount(t, s)
	_, _, err := target.Lookup("f")
	require.NoError(t, err)

	s.Stop()
	_, _, err = target.Lookup("f")
	require.Error(t, err, "a stopped server cuts open connections")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = nfsrpc.GetPort(ctx, s.Addr(), nfsrpc.NFSProg, nfsrpc.NFSVers)
	require.Error(t, err)

	require.NoError(t, s.Restart())
	target2, _ := mount(t, s)
	_, _, err = target2.Lookup("f")
	require.NoError(t, err)
}
