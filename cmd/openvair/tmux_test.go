package main_test

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/testenv"
)

// slowReader reads at most rate bytes per second.
type slowReader struct {
	r     io.ReadCloser
	rate  int64
	start time.Time
	n     int64
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(p) > 256<<10 {
		p = p[:256<<10]
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	if ahead := time.Duration(float64(s.n)/float64(s.rate)*float64(time.Second)) - time.Since(s.start); ahead > 0 {
		time.Sleep(ahead)
	}
	return n, err
}

func (s *slowReader) Close() error { return s.r.Close() }

// throttleUploads slows image uploads down to rate bytes per second, so that a terminal shows the bar move.
func throttleUploads(rate int64) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == "/api/v1/images" && r.Header.Get("Content-Type") == "application/octet-stream" {
				r.Body = &slowReader{r: r.Body, rate: rate, start: time.Now()}
			}
			h.ServeHTTP(w, r)
		})
	}
}

// TestTmuxUploadProgress runs an upload in a real terminal (a tmux pane, 120x30) and captures the pane
// while it runs: the bar shows the percentage, bytes sent of the total, and the rate; the command ends 0.
// The server reads the 64 MiB at 16 MiB/s so that the bar is seen moving.
func TestTmuxUploadProgress(t *testing.T) {
	tmux := testenv.LookPath(t, "tmux")
	s := startServer(t, serverOptions{wrap: throttleUploads(16 << 20)})
	s.ok(t, "storage", "create", "pool", "--type", "localfs", "--config", "path="+filepath.Join(s.Dir, "pool"))
	file := filepath.Join(t.TempDir(), "big.raw")
	b := make([]byte, 64<<20)
	_, _ = rand.Read(b)
	require.NoError(t, os.WriteFile(file, b, 0o644))

	session := fmt.Sprintf("ovtest-go-%d", os.Getpid())
	out, err := exec.Command(tmux, "new-session", "-d", "-s", session, "-x", "120", "-y", "30").CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() { _ = exec.Command(tmux, "kill-session", "-t", session).Run() })
	line := fmt.Sprintf("clear; XDG_CONFIG_HOME=%s OPENVAIR_URL=%s OPENVAIR_TOKEN=%s %s image upload %s --storage pool; echo EXIT\"\"=$?",
		s.config, s.URL, s.Token, binary, file)
	out, err = exec.Command(tmux, "send-keys", "-t", session, line, "Enter").CombinedOutput()
	require.NoError(t, err, "%s", out)

	// "upload big.raw  40% [=====>     ] (26 MiB/64 MiB, 16 MiB/s) [1s:2s]"
	bar := regexp.MustCompile(`upload big\.raw +(\d+)% \[[=> ]+\] \([0-9.]+( [KM]iB)?/64 MiB, [0-9.]+ [KM]iB/s\)`)
	var frames []string
	moving := 0
	deadline := time.Now().Add(45 * time.Second)
	pane := ""
	exit := regexp.MustCompile(`(?m)^EXIT=(\d+)`)
	for !exit.MatchString(pane) {
		require.True(t, time.Now().Before(deadline), "the upload did not end; pane:\n%s", pane)
		time.Sleep(200 * time.Millisecond)
		b, err := exec.Command(tmux, "capture-pane", "-p", "-t", session).Output()
		require.NoError(t, err)
		pane = string(b)
		if m := bar.FindStringSubmatch(pane); m != nil {
			frames = append(frames, m[0])
			if m[1] != "100" {
				moving++
			}
		}
	}
	t.Logf("frames:\n%s", strings.Join(frames, "\n"))
	assert.Contains(t, pane, "EXIT=0", "pane:\n%s", pane)
	assert.GreaterOrEqual(t, moving, 2, "the bar was seen moving: %q\npane:\n%s", frames, pane)
	assert.Contains(t, pane, "format:         raw")
}
