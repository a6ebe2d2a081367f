package nfsserver

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync"

	"github.com/openvair/openvair/internal/nfsrpc"
)

// exportConn sits between go-nfs and a client connection. It answers MOUNT's EXPORT procedure (which go-nfs
// v0.0.4 lacks and libnfs/QEMU calls right after mounting) with an empty export list and passes every
// other record through. Outgoing records are written whole, so an injected reply never splits one of
// go-nfs's replies.
//
// It also corrects the "used" field of GETATTR replies: go-nfs reports used = size, and the real figure
// (st_blocks * 512 of the backing file) is what tells a sparse file from a full one.
type exportConn struct {
	net.Conn
	usedOf func(fh []byte) (uint64, bool)

	pmu     sync.Mutex
	getattr map[uint32][]byte // xid of a pending GETATTR -> file handle

	rbuf bytes.Buffer // incoming bytes ready for go-nfs

	wmu  sync.Mutex
	wbuf []byte // outgoing bytes of an incomplete record
}

func newExportConn(c net.Conn, usedOf func(fh []byte) (uint64, bool)) *exportConn {
	return &exportConn{Conn: c, usedOf: usedOf, getattr: map[uint32][]byte{}}
}

// Read hands go-nfs the next records, answering EXPORT calls itself.
func (c *exportConn) Read(p []byte) (int, error) {
	for c.rbuf.Len() == 0 {
		rec, err := nfsrpc.ReadRecord(c.Conn)
		if err != nil {
			return 0, err
		}
		if h, args, err := nfsrpc.ParseCall(rec); err == nil && h.Prog == nfsrpc.MountProg && h.Proc == nfsrpc.MountProcExport {
			// exports: an empty optional-data list.
			if err := c.writeRecord(nfsrpc.AcceptedReply(h.XID, nfsrpc.AcceptSuccess, []byte{0, 0, 0, 0})); err != nil {
				return 0, err
			}
			continue
		} else if err == nil && h.Prog == nfsrpc.NFSProg && h.Proc == nfsrpc.ProcGetAttr && c.usedOf != nil {
			if fh := nfsrpc.NewDecoder(args).Opaque(nfsrpc.MaxFH); fh != nil {
				c.pmu.Lock()
				c.getattr[h.XID] = fh
				c.pmu.Unlock()
			}
		}
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(rec))|0x80000000)
		c.rbuf.Write(hdr[:])
		c.rbuf.Write(rec)
	}
	return c.rbuf.Read(p)
}

func (c *exportConn) writeRecord(msg []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return nfsrpc.WriteRecord(c.Conn, msg)
}

// Write buffers go-nfs's output and sends it one complete fragment at a time.
func (c *exportConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = append(c.wbuf, p...)
	for len(c.wbuf) >= 4 {
		n := int(binary.BigEndian.Uint32(c.wbuf) & 0x7fffffff)
		if len(c.wbuf) < 4+n {
			break
		}
		c.fixUsed(c.wbuf[4 : 4+n])
		if _, err := c.Conn.Write(c.wbuf[:4+n]); err != nil {
			return 0, err
		}
		c.wbuf = c.wbuf[4+n:]
	}
	if len(c.wbuf) == 0 {
		c.wbuf = nil
	}
	return len(p), nil
}

// fixUsed patches fattr3.used in a successful GETATTR reply to a call recorded by Read.
func (c *exportConn) fixUsed(rec []byte) {
	if len(rec) < 4 {
		return
	}
	xid := binary.BigEndian.Uint32(rec)
	c.pmu.Lock()
	fh, ok := c.getattr[xid]
	delete(c.getattr, xid)
	c.pmu.Unlock()
	// xid, REPLY, MSG_ACCEPTED, verf flavor, verf length 0, SUCCESS, NFS3_OK, then fattr3 whose used field
	// is at offset 28.
	const usedAt = 7*4 + 28
	if !ok || len(rec) < usedAt+8 {
		return
	}
	for i, want := range []uint32{1, 0, 0, 0, 0, 0} {
		if binary.BigEndian.Uint32(rec[4+4*i:]) != want {
			return
		}
	}
	if used, ok := c.usedOf(fh); ok {
		binary.BigEndian.PutUint64(rec[usedAt:], used)
	}
}
