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
type exportConn struct {
	net.Conn

	rbuf bytes.Buffer // incoming bytes ready for go-nfs

	wmu  sync.Mutex
	wbuf []byte // outgoing bytes of an incomplete record
}

func newExportConn(c net.Conn) *exportConn { return &exportConn{Conn: c} }

// Read hands go-nfs the next records, answering EXPORT calls itself.
func (c *exportConn) Read(p []byte) (int, error) {
	for c.rbuf.Len() == 0 {
		rec, err := nfsrpc.ReadRecord(c.Conn)
		if err != nil {
			return 0, err
		}
		if h, _, err := nfsrpc.ParseCall(rec); err == nil && h.Prog == nfsrpc.MountProg && h.Proc == nfsrpc.MountProcExport {
			// exports: an empty optional-data list.
			if err := c.writeRecord(nfsrpc.AcceptedReply(h.XID, nfsrpc.AcceptSuccess, []byte{0, 0, 0, 0})); err != nil {
				return 0, err
			}
			continue
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
