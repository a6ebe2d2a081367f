package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRun runs the program: openvair creates a storage of the type quotadir registers and a volume on it,
// and the backend's refusals reach the caller with openvair's error kinds.
func TestRun(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, run(context.Background(), &buf))
	require.Equal(t, `storage: q quotadir available capacity 1073741824
volume: disk0 raw 268435456 available
qcow2 volume: refused, unsupported
1 GiB volume: refused, too large for the quota
`, buf.String())
}

// TestLinksNoOtherDriver: the program's only storage backend is quotadir; openvair links none of its own
// drivers unless they are imported. Checked with go list, which compiles nothing.
func TestLinksNoOtherDriver(t *testing.T) {
	gobin, err := exec.LookPath("go") // go test puts its own GOROOT/bin first in PATH
	if err != nil {
		t.Skipf("go tool not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, gobin, "list", "-deps", ".").Output()
	if ee, ok := err.(*exec.ExitError); ok {
		t.Fatalf("go list: %v\n%s", err, ee.Stderr)
	}
	require.NoError(t, err)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/openvair/openvair/examples/outoftree/quotadir")
	for _, dep := range deps {
		require.False(t, strings.HasPrefix(dep, "github.com/openvair/openvair/driver/"), "links %s", dep)
	}
}
