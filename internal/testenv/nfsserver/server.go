// Package nfsserver runs an in-process NFSv3 server for tests: github.com/willscott/go-nfs over a directory
// (osfs with billy.Change, real FSSTAT figures, MOUNT EXPORT answered), plus a tiny portmapper on
// 127.0.0.N:111, because clients (go-nfs-client, libnfs in QEMU) always ask port 111. Each server takes its
// own 127.0.0.N. Binding port 111 needs root.
//
// It serves the NFS driver's own tests only. go-nfs ignores the caller's uid and gid (every client may do
// everything) and the MOUNT path (every mount gets the export root), so QEMU, which mounts
// /<export>/<storage dir> and then looks the file up, cannot find its disks on it, and a test on it would
// hide the permission problems a real server has. Everything QEMU opens is tested on nfs-ganesha
// (internal/testenv/ganesha), which enforces both.
package nfsserver

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	nfs "github.com/willscott/go-nfs"
	"github.com/willscott/go-nfs/helpers"

	"github.com/openvair/openvair/internal/testenv"
)

// Server is a running (or stopped) in-process NFS server.
type Server struct {
	dir     string
	ip      string
	nfsPort int
	handler nfs.Handler

	mu      sync.Mutex
	running bool
	pmL     net.Listener
	nfsL    net.Listener
	pm      *portmapper
	nfsCons *conns
	wg      sync.WaitGroup
}

var quietOnce sync.Once

// Start serves dir over NFSv3 on a free 127.0.0.N and stops the server when the test ends. It needs root
// (testenv.RequireRoot is called).
func Start(t testing.TB, dir string) *Server {
	t.Helper()
	testenv.RequireRoot(t)
	quietOnce.Do(func() { nfs.Log.SetLevel(nfs.FatalLevel) })

	bfs := osfs.New(dir)
	h := helpers.NewCachingHandler(statHandler{helpers.NewNullAuthHandler(changeFS{bfs, dir}), dir}, 4096)
	s := &Server{dir: dir, handler: h}

	pmL, ip, err := listenFree111()
	if err != nil {
		t.Fatalf("nfsserver: %v", err)
	}
	nfsL, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		pmL.Close()
		t.Fatalf("nfsserver: listen: %v", err)
	}
	s.ip = ip
	s.nfsPort = nfsL.Addr().(*net.TCPAddr).Port
	s.serve(pmL, nfsL)
	t.Cleanup(s.Stop)
	return s
}

// listenFree111 binds port 111 on the first free 127.0.0.N (N in 2..254, starting at a random N).
func listenFree111() (net.Listener, string, error) {
	start := rand.IntN(253)
	var last error
	for i := range 253 {
		ip := "127.0.0." + strconv.Itoa(2+(start+i)%253)
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "111"))
		if err == nil {
			return l, ip, nil
		}
		last = err
	}
	return nil, "", fmt.Errorf("no free 127.0.0.N:111: %w", last)
}

func (s *Server) serve(pmL, nfsL net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pmL, s.nfsL = pmL, nfsL
	s.pm = &portmapper{port: uint32(s.nfsPort)}
	s.nfsCons = &conns{}
	s.running = true
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.pm.serve(pmL) }()
	cs := s.nfsCons
	go func() {
		defer s.wg.Done()
		_ = nfs.Serve(&trackingListener{Listener: nfsL, conns: cs, usedOf: s.usedOf}, s.handler)
	}()
}

// Addr is the host to put in driver.NFSSpec.Server.
func (s *Server) Addr() string { return s.ip }

// Export is the export path to put in driver.NFSSpec.Export.
func (s *Server) Export() string { return "/" }

// Dir is the directory the server exports.
func (s *Server) Dir() string { return s.dir }

// Port is the TCP port of the MOUNT and NFS services.
func (s *Server) Port() int { return s.nfsPort }

// Stop closes the listeners and cuts every open connection; clients see the server as gone. Calling it
// on a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		return
	}
	s.running = false
	s.pmL.Close()
	s.nfsL.Close()
	s.pm.closeAll()
	s.nfsCons.closeAll()
	s.mu.Unlock()
	s.wg.Wait()
}

// Restart starts a stopped server again on the same address and ports, with the same file handles.
func (s *Server) Restart() error {
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	if running {
		return errors.New("nfsserver: already running")
	}
	// A client socket may still hold the port for a moment; retry for a while.
	var pmL, nfsL net.Listener
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		pmL, err = net.Listen("tcp", net.JoinHostPort(s.ip, "111"))
		if err == nil {
			nfsL, err = net.Listen("tcp", net.JoinHostPort(s.ip, strconv.Itoa(s.nfsPort)))
			if err == nil {
				break
			}
			pmL.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nfsserver: restart: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.serve(pmL, nfsL)
	return nil
}

// trackingListener wraps accepted connections in an exportConn and records them for Stop.
type trackingListener struct {
	net.Listener
	conns  *conns
	usedOf func(fh []byte) (uint64, bool)
}

// Accept returns the next connection, wrapped.
func (l *trackingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.conns.add(c) {
			return newExportConn(c, l.usedOf), nil
		}
	}
}

// usedOf returns the bytes allocated to the file behind a handle (st_blocks * 512).
func (s *Server) usedOf(fh []byte) (uint64, bool) {
	_, p, err := s.handler.FromHandle(fh)
	if err != nil {
		return 0, false
	}
	fi, err := os.Lstat(filepath.Join(append([]string{s.dir}, p...)...))
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Blocks) * 512, true
}
