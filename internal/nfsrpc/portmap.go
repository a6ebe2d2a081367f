package nfsrpc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"time"
)

// Program numbers and versions of the services an NFSv3 client needs.
const (
	PmapProg  = 100000
	PmapVers  = 2
	MountProg = 100005
	MountVers = 3
	NFSProg   = 100003
	NFSVers   = 3

	PmapProcNull    = 0
	PmapProcGetPort = 3
	MountProcExport = 5

	IPProtoTCP = 6
)

// EncodeGetPortCall encodes a portmapper v2 GETPORT call for prog/vers over TCP.
func EncodeGetPortCall(xid, prog, vers uint32) []byte {
	var e Encoder
	e.Uint32(xid)
	e.Uint32(0) // CALL
	e.Uint32(2) // RPC version
	e.Uint32(PmapProg)
	e.Uint32(PmapVers)
	e.Uint32(PmapProcGetPort)
	e.Uint32(0) // cred AUTH_NULL
	e.Uint32(0)
	e.Uint32(0) // verf AUTH_NULL
	e.Uint32(0)
	e.Uint32(prog)
	e.Uint32(vers)
	e.Uint32(IPProtoTCP)
	e.Uint32(0)
	return e.B
}

// DecodeReply checks an RPC reply message for xid and acceptance and returns its result body.
func DecodeReply(msg []byte, xid uint32) ([]byte, error) {
	d := NewDecoder(msg)
	gotXID := d.Uint32()
	mtype := d.Uint32()
	stat := d.Uint32()
	if err := d.Err(); err != nil {
		return nil, err
	}
	if gotXID != xid {
		return nil, fmt.Errorf("nfsrpc: reply xid %#x, expected %#x", gotXID, xid)
	}
	if mtype != 1 {
		return nil, fmt.Errorf("nfsrpc: message type %d is not a reply", mtype)
	}
	if stat != 0 {
		return nil, fmt.Errorf("nfsrpc: call denied (reject status %d)", d.Uint32())
	}
	d.Uint32() // verf flavor
	d.Opaque(400)
	accept := d.Uint32()
	if err := d.Err(); err != nil {
		return nil, err
	}
	if accept != AcceptSuccess {
		return nil, fmt.Errorf("nfsrpc: call not accepted (accept status %d)", accept)
	}
	return d.Rest(), nil
}

// GetPort asks the portmapper on host:111 for the TCP port of prog/vers. It honours ctx (dial and I/O) and
// reports 0 with an error when the program is not registered.
func GetPort(ctx context.Context, host string, prog, vers uint32) (int, error) {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(111)))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	xid := rand.Uint32()
	if err := WriteRecord(conn, EncodeGetPortCall(xid, prog, vers)); err != nil {
		return 0, ctxErr(ctx, err)
	}
	msg, err := ReadRecord(conn)
	if err != nil {
		return 0, ctxErr(ctx, err)
	}
	body, err := DecodeReply(msg, xid)
	if err != nil {
		return 0, err
	}
	d := NewDecoder(body)
	port := d.Uint32()
	if err := d.Err(); err != nil {
		return 0, err
	}
	if port == 0 || port > 65535 {
		return 0, fmt.Errorf("nfsrpc: program %d version %d not registered with the portmapper on %s", prog, vers, host)
	}
	return int(port), nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}
