package nfsrpc

import (
	"encoding/binary"
	"fmt"
	"io"
)

// MaxRecord bounds the size of one RPC record read by ReadRecord.
const MaxRecord = 64 << 20

// ReadRecord reads one ONC RPC record (all its fragments) from a stream transport.
func ReadRecord(r io.Reader) ([]byte, error) {
	var out []byte
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, err
		}
		h := binary.BigEndian.Uint32(hdr[:])
		n := int(h & 0x7fffffff)
		if len(out)+n > MaxRecord {
			return nil, fmt.Errorf("nfsrpc: record of more than %d bytes", MaxRecord)
		}
		start := len(out)
		out = append(out, make([]byte, n)...)
		if _, err := io.ReadFull(r, out[start:]); err != nil {
			return nil, err
		}
		if h&0x80000000 != 0 {
			return out, nil
		}
	}
}

// WriteRecord writes msg as one last-fragment record.
func WriteRecord(w io.Writer, msg []byte) error {
	buf := make([]byte, 4+len(msg))
	binary.BigEndian.PutUint32(buf, uint32(len(msg))|0x80000000)
	copy(buf[4:], msg)
	_, err := w.Write(buf)
	return err
}

// CallHeader is the fixed part of an RPC call message (RFC 5531).
type CallHeader struct {
	XID  uint32
	Prog uint32
	Vers uint32
	Proc uint32
}

// ParseCall decodes the header of an RPC call message and returns it with the procedure arguments.
func ParseCall(msg []byte) (CallHeader, []byte, error) {
	d := NewDecoder(msg)
	var h CallHeader
	h.XID = d.Uint32()
	mtype := d.Uint32()
	rpcvers := d.Uint32()
	h.Prog = d.Uint32()
	h.Vers = d.Uint32()
	h.Proc = d.Uint32()
	d.Uint32() // cred flavor
	d.Opaque(400)
	d.Uint32() // verf flavor
	d.Opaque(400)
	if err := d.Err(); err != nil {
		return h, nil, err
	}
	if mtype != 0 || rpcvers != 2 {
		return h, nil, fmt.Errorf("nfsrpc: not an RPCv2 call (type %d, version %d)", mtype, rpcvers)
	}
	return h, d.Rest(), nil
}

// Accept status values of an accepted reply.
const (
	AcceptSuccess     = 0
	AcceptProgUnavail = 1
	AcceptProcUnavail = 3
)

// AcceptedReply encodes an accepted reply with an AUTH_NULL verifier, status stat and body.
func AcceptedReply(xid, stat uint32, body []byte) []byte {
	e := Encoder{B: make([]byte, 0, 24+len(body))}
	e.Uint32(xid)
	e.Uint32(1) // REPLY
	e.Uint32(0) // MSG_ACCEPTED
	e.Uint32(0) // verf AUTH_NULL
	e.Uint32(0) // verf length
	e.Uint32(stat)
	e.B = append(e.B, body...)
	return e.B
}
