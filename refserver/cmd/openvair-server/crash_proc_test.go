package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// crashBinary is the server binary, built into a directory removed when the test that asked for it ends
// (the crash and multi-process tests use it); a later test that asks for it builds it again.
var crashBinary struct {
	mu   sync.Mutex
	path string
}

// crashServerBinary returns the path of the built server binary.
func crashServerBinary(t *testing.T) string {
	t.Helper()
	crashBinary.mu.Lock()
	defer crashBinary.mu.Unlock()
	if _, err := os.Stat(crashBinary.path); crashBinary.path == "" || err != nil {
		dir, err := os.MkdirTemp("", "openvair-crash-bin")
		require.NoError(t, err)
		bin := filepath.Join(dir, "openvair-server")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
		if err != nil {
			_ = os.RemoveAll(dir)
			t.Fatalf("go build: %v\n%s", err, out)
		}
		crashBinary.path = bin
	}
	dir := filepath.Dir(crashBinary.path)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return crashBinary.path
}

// crashProc is one run of the server binary as a child process in its own process group.
type crashProc struct {
	cmd    *exec.Cmd
	url    string
	logs   *lockedWriter
	exited chan struct{}
}

// crashFreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func crashFreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// crashStart starts the binary on dataDir (and dsn, when not empty), and waits until its API answers with
// token (read from dataDir/admin.token once it exists). It returns the process and the admin token.
func crashStart(t *testing.T, bin, dataDir, dsn string) (*crashProc, string) {
	t.Helper()
	return crashStartWith(t, bin, dataDir, dsn, nil, nil)
}

// crashStartWith is crashStart with more command-line arguments and environment variables (KEY=VALUE, added
// to this process's environment).
func crashStartWith(t testing.TB, bin, dataDir, dsn string, extraArgs, extraEnv []string) (*crashProc, string) {
	t.Helper()
	var p *crashProc
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a port taken between probe and bind: try another
		port := crashFreePort(t)
		args := []string{"-listen", fmt.Sprintf("127.0.0.1:%d", port), "-data-dir", dataDir, "-libvirt-uri", "none"}
		if dsn != "" {
			args = append(args, "-dsn", dsn)
		}
		p = &crashProc{logs: &lockedWriter{w: &bytes.Buffer{}}, exited: make(chan struct{}), url: fmt.Sprintf("http://127.0.0.1:%d", port)}
		args = append(args, extraArgs...)
		p.cmd = exec.Command(bin, args...)
		if len(extraEnv) > 0 {
			p.cmd.Env = append(os.Environ(), extraEnv...)
		}
		p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		require.NoError(t, p.cmd.Start())
		go func(p *crashProc) { _ = p.cmd.Wait(); close(p.exited) }(p)
		t.Cleanup(p.kill)
		token, err := p.waitReady(dataDir, time.Minute)
		if err == nil {
			return p, token
		}
		lastErr = err
		p.kill()
		if !strings.Contains(p.logs.String(), "address already in use") {
			break
		}
	}
	t.Fatalf("server did not become ready: %v\n--- server log ---\n%s", lastErr, crashTail(p.logs.String(), 4000))
	return nil, ""
}

// waitReady polls the API until it answers 200 to an authenticated list.
func (p *crashProc) waitReady(dataDir string, timeout time.Duration) (string, error) {
	end := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(end) {
		select {
		case <-p.exited:
			return "", errors.New("the server exited")
		default:
		}
		b, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
		if token := strings.TrimSpace(string(b)); err == nil && token != "" {
			req, _ := http.NewRequest(http.MethodGet, p.url+"/api/v1/storages", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			if res, err := client.Do(req); err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					return token, nil
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("no answer within %s", timeout)
}

// kill sends SIGKILL to the process group and waits for the server to exit.
func (p *crashProc) kill() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
	}
}

// crashTail returns the end of s.
func crashTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
