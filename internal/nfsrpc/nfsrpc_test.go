package nfsrpc

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmware/go-nfs-client/nfs/rpc"
	"github.com/vmware/go-nfs-client/nfs/xdr"
)

// fakeCaller records the marshalled arguments of a call and returns a canned result body.
type fakeCaller struct {
	args  []byte
	reply []byte
	err   error
}

func (f *fakeCaller) Call(call any) (io.ReadSeeker, error) {
	var w bytes.Buffer
	if err := xdr.Write(&w, call); err != nil {
		return nil, err
	}
	f.args = w.Bytes()
	if f.err != nil {
		return nil, f.err
	}
	return bytes.NewReader(f.reply), nil
}

func enc(f func(e *Encoder)) []byte {
	var e Encoder
	f(&e)
	return e.B
}

// hdr is the expected encoding of header(AuthNull, proc).
func hdr(e *Encoder, proc uint32) {
	for _, v := range []uint32{2, NFSProg, NFSVers, proc, 0, 0, 0, 0} {
		e.Uint32(v)
	}
}

func fattr(e *Encoder, typ uint32, size, used uint64) {
	e.Uint32(typ)
	e.Uint32(0o644)
	e.Uint32(1)
	e.Uint32(1000)
	e.Uint32(1001)
	e.Uint64(size)
	e.Uint64(used)
	e.Uint64(0)  // rdev
	e.Uint64(7)  // fsid
	e.Uint64(42) // fileid
	e.Uint64(0)  // atime
	e.Uint32(1700000000)
	e.Uint32(5) // mtime
	e.Uint64(0) // ctime
}

var fh = []byte{1, 2, 3, 4, 5} // odd length: exercises padding

func TestArgumentEncoding(t *testing.T) {
	tests := []struct {
		name string
		call func(c Caller) error
		want []byte
	}{
		{"GETATTR", func(c Caller) error { _, err := GetAttr(c, rpc.AuthNull, fh); return err },
			enc(func(e *Encoder) { hdr(e, ProcGetAttr); e.Opaque(fh) })},
		{"SETATTR size", func(c Caller) error { return SetSize(c, rpc.AuthNull, fh, 1<<40) },
			enc(func(e *Encoder) {
				hdr(e, ProcSetAttr)
				e.Opaque(fh)
				e.Uint32(0) // mode
				e.Uint32(0) // uid
				e.Uint32(0) // gid
				e.Uint32(1) // size follows
				e.Uint64(1 << 40)
				e.Uint32(0) // atime DONT_CHANGE
				e.Uint32(0) // mtime DONT_CHANGE
				e.Uint32(0) // no guard
			})},
		{"RENAME", func(c Caller) error { return Rename(c, rpc.AuthNull, fh, "a.part", []byte{9}, "a") },
			enc(func(e *Encoder) {
				hdr(e, ProcRename)
				e.Opaque(fh)
				e.Opaque([]byte("a.part"))
				e.Opaque([]byte{9})
				e.Opaque([]byte("a"))
			})},
		{"FSSTAT", func(c Caller) error { _, err := GetFSStat(c, rpc.AuthNull, fh); return err },
			enc(func(e *Encoder) { hdr(e, ProcFSStat); e.Opaque(fh) })},
		{"WRITE", func(c Caller) error { _, err := Write(c, rpc.AuthNull, fh, 4096, []byte("abc"), Unstable); return err },
			enc(func(e *Encoder) {
				hdr(e, ProcWrite)
				e.Opaque(fh)
				e.Uint64(4096)
				e.Uint32(3)
				e.Uint32(Unstable)
				e.Opaque([]byte("abc"))
			})},
		{"READ", func(c Caller) error { _, _, err := Read(c, rpc.AuthNull, fh, 8, 16); return err },
			enc(func(e *Encoder) { hdr(e, ProcRead); e.Opaque(fh); e.Uint64(8); e.Uint32(16) })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeCaller{err: errors.New("stop")}
			require.Error(t, tt.call(c))
			// rpc.Client.Call prefixes xid and message type to exactly these bytes.
			require.Equal(t, tt.want, c.args)
		})
	}
}

func TestDecodeReplies(t *testing.T) {
	t.Run("GETATTR", func(t *testing.T) {
		c := &fakeCaller{reply: enc(func(e *Encoder) { e.Uint32(0); fattr(e, TypeRegular, 1<<30, 4096) })}
		a, err := GetAttr(c, rpc.AuthNull, fh)
		require.NoError(t, err)
		require.Equal(t, Attr{Type: TypeRegular, Mode: 0o644, UID: 1000, GID: 1001, Size: 1 << 30, Used: 4096, FileID: 42,
			Mtime: a.Mtime}, a)
		require.EqualValues(t, 1700000000, a.Mtime.Unix())
	})
	t.Run("FSSTAT", func(t *testing.T) {
		c := &fakeCaller{reply: enc(func(e *Encoder) {
			e.Uint32(0)
			e.Bool(true)
			fattr(e, TypeDirectory, 4096, 4096)
			for _, v := range []uint64{100, 60, 50, 10, 6, 5} {
				e.Uint64(v)
			}
			e.Uint32(0)
		})}
		s, err := GetFSStat(c, rpc.AuthNull, fh)
		require.NoError(t, err)
		require.Equal(t, FSStat{100, 60, 50, 10, 6, 5}, s)
	})
	t.Run("WRITE", func(t *testing.T) {
		c := &fakeCaller{reply: enc(func(e *Encoder) {
			e.Uint32(0)
			e.Bool(true) // pre_op_attr
			e.Uint64(0)
			e.Uint64(0)
			e.Uint64(0)
			e.Bool(false) // post_op_attr
			e.Uint32(2)
			e.Uint32(FileSync)
			e.Uint64(0xdeadbeef)
		})}
		r, err := Write(c, rpc.AuthNull, fh, 0, []byte("abc"), Unstable)
		require.NoError(t, err)
		require.Equal(t, WriteResult{Count: 2, Committed: FileSync, Verf: 0xdeadbeef}, r)
	})
	t.Run("READ", func(t *testing.T) {
		c := &fakeCaller{reply: enc(func(e *Encoder) {
			e.Uint32(0)
			e.Bool(false)
			e.Uint32(3)
			e.Bool(true)
			e.Opaque([]byte("xyz"))
		})}
		data, eof, err := Read(c, rpc.AuthNull, fh, 0, 16)
		require.NoError(t, err)
		require.True(t, eof)
		require.Equal(t, []byte("xyz"), data)
	})
	t.Run("READ more than asked", func(t *testing.T) {
		c := &fakeCaller{reply: enc(func(e *Encoder) { e.Uint32(0); e.Bool(false); e.Uint32(8); e.Bool(false); e.Opaque(make([]byte, 8)) })}
		_, _, err := Read(c, rpc.AuthNull, fh, 0, 4)
		require.Error(t, err)
	})
	t.Run("status", func(t *testing.T) {
		for status, target := range map[uint32]error{ErrNoEnt: os.ErrNotExist, ErrStale: os.ErrNotExist, ErrExist: os.ErrExist, ErrAcces: os.ErrPermission} {
			c := &fakeCaller{reply: enc(func(e *Encoder) { e.Uint32(status) })}
			err := Rename(c, rpc.AuthNull, fh, "a", fh, "b")
			require.ErrorIs(t, err, target)
			var se *StatusError
			require.ErrorAs(t, err, &se)
			require.Equal(t, status, se.Status)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		full := enc(func(e *Encoder) { e.Uint32(0); fattr(e, TypeRegular, 1, 1) })
		for n := 0; n < len(full); n += 3 {
			_, err := GetAttr(&fakeCaller{reply: full[:n]}, rpc.AuthNull, fh)
			require.ErrorIs(t, err, ErrShortReply, "reply cut at %d bytes", n)
		}
	})
}

func TestRecordAndMessages(t *testing.T) {
	var buf bytes.Buffer
	call := EncodeGetPortCall(7, MountProg, MountVers)
	require.NoError(t, WriteRecord(&buf, call))
	require.Equal(t, []byte{0x80, 0, 0, byte(len(call))}, buf.Bytes()[:4])
	rec, err := ReadRecord(&buf)
	require.NoError(t, err)
	h, args, err := ParseCall(rec)
	require.NoError(t, err)
	require.Equal(t, CallHeader{XID: 7, Prog: PmapProg, Vers: PmapVers, Proc: PmapProcGetPort}, h)
	require.Equal(t, enc(func(e *Encoder) { e.Uint32(MountProg); e.Uint32(MountVers); e.Uint32(IPProtoTCP); e.Uint32(0) }), args)

	// Two fragments make one record.
	buf.Reset()
	buf.Write([]byte{0, 0, 0, 2, 'a', 'b', 0x80, 0, 0, 1, 'c'})
	rec, err = ReadRecord(&buf)
	require.NoError(t, err)
	require.Equal(t, []byte("abc"), rec)

	reply := AcceptedReply(9, AcceptSuccess, []byte{0, 0, 3, 0xe8})
	body, err := DecodeReply(reply, 9)
	require.NoError(t, err)
	require.Equal(t, []byte{0, 0, 3, 0xe8}, body)
	_, err = DecodeReply(reply, 10)
	require.Error(t, err, "xid mismatch")
	_, err = DecodeReply(AcceptedReply(9, AcceptProgUnavail, nil), 9)
	require.Error(t, err)
	_, err = DecodeReply(reply[:10], 9)
	require.ErrorIs(t, err, ErrShortReply)
}
