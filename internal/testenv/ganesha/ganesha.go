// Package ganesha runs nfs-ganesha (VFS FSAL, NFSv3 over TCP) with rpcbind for tests. ganesha refuses to
// bind 127.0.0.1 only, so it runs in a private network namespace, and the test process must be in the same
// namespace: InNamespace re-executes the current test inside `unshare -n -m` and reports its result.
//
//	func TestSomething(t *testing.T) {
//		if !ganesha.InNamespace(t) {
//			return // the test ran in the namespace
//		}
//		srv := ganesha.Start(t)
//		...
//	}
package ganesha

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/internal/testenv"
)

// envMarker names the test that runs inside the namespace.
const envMarker = "OPENVAIR_GANESHA_NETNS_TEST"

// InNamespace returns true when the test already runs in a private network and mount namespace (with lo up
// and a private tmpfs on /run for rpcbind). Otherwise it runs the test (and its subtests) again in such a
// namespace, in a child process of the same test binary, logs the child's output, fails when the child
// failed, and returns false. It needs root and unshare.
func InNamespace(t testing.TB) bool {
	t.Helper()
	if os.Getenv(envMarker) == t.Name() {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("ganesha: ip link set lo up: %v: %s", err, out)
		}
		if err := unix.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"); err != nil {
			t.Fatalf("ganesha: private /run: %v", err)
		}
		return true
	}
	testenv.RequireRoot(t)
	unshare := testenv.LookPath(t, "unshare")
	testenv.LookPath(t, "ip")
	testenv.LookPath(t, "ganesha.nfsd")
	testenv.LookPath(t, "rpcbind")

	args := []string{"-n", "-m", "--propagation", "private", "--", os.Args[0],
		"-test.run", "^" + regexpQuote(t.Name()) + "$", "-test.count", "1"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	if dt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := dt.Deadline(); ok {
			args = append(args, "-test.timeout", time.Until(d).Round(time.Second).String())
		}
	}
	if f := flagValue("test.bench"); f != "" {
		args = append(args, "-test.bench", f)
	}
	if f := flagValue("test.benchtime"); f != "" {
		args = append(args, "-test.benchtime", f)
	}
	ctx := t.Context()
	cmd := exec.CommandContext(ctx, unshare, args...)
	cmd.Env = append(os.Environ(), envMarker+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("in a private network namespace:\n%s", out.String())
	if err != nil {
		t.Fatalf("test in namespace failed: %v", err)
	}
	if strings.Contains(out.String(), "--- SKIP: "+t.Name()+" (") {
		t.Skip("skipped in the namespace")
	}
	return false
}

func regexpQuote(name string) string {
	// Test names are identifiers plus "/" for subtests; a top-level name needs no quoting beyond this.
	return strings.NewReplacer("(", `\(`, ")", `\)`, ".", `\.`, "+", `\+`, "[", `\[`, "]", `\]`).Replace(strings.SplitN(name, "/", 2)[0])
}

func flagValue(name string) string {
	for i, a := range os.Args {
		for _, p := range []string{"-" + name + "=", "--" + name + "="} {
			if strings.HasPrefix(a, p) {
				return strings.TrimPrefix(a, p)
			}
		}
		if (a == "-"+name || a == "--"+name) && i+1 < len(os.Args) {
			return os.Args[i+1]
		}
	}
	return ""
}

// Server is a running nfs-ganesha.
type Server struct {
	dir    string
	export string
	cmd    *exec.Cmd
	conf   string
	log    string
	pid    string
}

// Start runs rpcbind and ganesha.nfsd exporting a fresh directory (on a private tmpfs, so its space figures
// are stable) and stops them when the test ends. Call it inside InNamespace.
func Start(t testing.TB) *Server {
	t.Helper()
	if os.Getenv(envMarker) == "" {
		t.Fatal("ganesha.Start must run inside InNamespace")
	}
	dir := t.TempDir()
	export := filepath.Join(dir, "export")
	if err := os.Mkdir(export, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", export, "tmpfs", 0, "size=8g,mode=0755"); err != nil {
		t.Fatalf("ganesha: tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(export, unix.MNT_DETACH) })

	rpcbind := exec.Command("rpcbind", "-f")
	rpcbind.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := rpcbind.Start(); err != nil {
		t.Fatalf("ganesha: rpcbind: %v", err)
	}
	t.Cleanup(func() { stop(rpcbind) })
	waitPort(t, "127.0.0.1:111")

	s := &Server{dir: dir, export: export, conf: filepath.Join(dir, "ganesha.conf"),
		log: filepath.Join(dir, "ganesha.log"), pid: filepath.Join(dir, "ganesha.pid")}
	conf := fmt.Sprintf(`NFS_CORE_PARAM {
	Protocols = 3;
	Enable_NLM = false;
	Enable_RQUOTA = false;
	Enable_UDP = false;
}
NFSV4 { Graceless = true; }
EXPORT {
	Export_Id = 1;
	Path = %q;
	Pseudo = %q;
	Access_Type = RW;
	Squash = No_Root_Squash;
	Protocols = 3;
	Transports = TCP;
	FSAL { Name = VFS; }
}
`, export, export)
	if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	if err := s.start(t.Context()); err != nil {
		t.Fatalf("ganesha: %v", err)
	}
	return s
}

func (s *Server) start(ctx context.Context) error {
	cmd := exec.Command("ganesha.nfsd", "-F", "-f", s.conf, "-L", s.log, "-p", s.pid)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:2049", time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			logData, _ := os.ReadFile(s.log)
			return fmt.Errorf("ganesha.nfsd did not listen on 2049: %s", logData)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Addr is the host to put in driver.NFSSpec.Server.
func (s *Server) Addr() string { return "127.0.0.1" }

// Export is the export path to put in driver.NFSSpec.Export.
func (s *Server) Export() string { return s.export }

// Dir is the exported directory.
func (s *Server) Dir() string { return s.export }

// Stop kills ganesha.nfsd (rpcbind keeps running); a stopped server does nothing.
func (s *Server) Stop() {
	if s.cmd != nil {
		stop(s.cmd)
		s.cmd = nil
	}
}

// Restart starts a stopped ganesha.nfsd again with the same configuration.
func (s *Server) Restart(ctx context.Context) error {
	if s.cmd != nil {
		return fmt.Errorf("ganesha already running")
	}
	return s.start(ctx)
}

func stop(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
}

func waitPort(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}
