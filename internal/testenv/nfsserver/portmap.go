package nfsserver

import (
	"encoding/binary"
	"net"
	"sync"

	"github.com/openvair/openvair/internal/nfsrpc"
)

// portmapper is a minimal portmapper (program 100000 version 2, NULL and GETPORT over TCP) that maps
// MOUNT v3 and NFS v3 to one port.
type portmapper struct {
	port uint32
	conns
}

func (p *portmapper) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		if !p.add(c) {
			return
		}
		go p.handle(c)
	}
}

func (p *portmapper) handle(c net.Conn) {
	defer p.remove(c)
	for {
		rec, err := nfsrpc.ReadRecord(c)
		if err != nil {
			return
		}
		h, args, err := nfsrpc.ParseCall(rec)
		if err != nil {
			return
		}
		var reply []byte
		switch {
		case h.Prog != nfsrpc.PmapProg || h.Vers != nfsrpc.PmapVers:
			reply = nfsrpc.AcceptedReply(h.XID, nfsrpc.AcceptProgUnavail, nil)
		case h.Proc == nfsrpc.PmapProcNull:
			reply = nfsrpc.AcceptedReply(h.XID, nfsrpc.AcceptSuccess, nil)
		case h.Proc == nfsrpc.PmapProcGetPort:
			d := nfsrpc.NewDecoder(args)
			prog, vers, prot := d.Uint32(), d.Uint32(), d.Uint32()
			var port uint32
			if d.Err() == nil && prot == nfsrpc.IPProtoTCP &&
				((prog == nfsrpc.MountProg && vers == nfsrpc.MountVers) || (prog == nfsrpc.NFSProg && vers == nfsrpc.NFSVers)) {
				port = p.port
			}
			reply = nfsrpc.AcceptedReply(h.XID, nfsrpc.AcceptSuccess, binary.BigEndian.AppendUint32(nil, port))
		default:
			reply = nfsrpc.AcceptedReply(h.XID, nfsrpc.AcceptProcUnavail, nil)
		}
		if err := nfsrpc.WriteRecord(c, reply); err != nil {
			return
		}
	}
}

// conns tracks open connections so Stop can cut them.
type conns struct {
	mu     sync.Mutex
	set    map[net.Conn]struct{}
	closed bool
}

func (s *conns) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	if s.set == nil {
		s.set = map[net.Conn]struct{}{}
	}
	s.set[c] = struct{}{}
	return true
}

func (s *conns) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.set, c)
	s.mu.Unlock()
	c.Close()
}

func (s *conns) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.set {
		c.Close()
	}
	s.set = nil
}
