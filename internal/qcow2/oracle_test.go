package qcow2

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/testenv"
)

// qemuImg runs qemu-img (only ever as a test oracle) and returns its standard output.
func qemuImg(t testing.TB, args ...string) []byte {
	t.Helper()
	bin := testenv.LookPath(t, "qemu-img")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if ee, ok := err.(*exec.ExitError); ok {
		t.Fatalf("qemu-img %v: %v\n%s\n%s", args, err, out, ee.Stderr)
	}
	require.NoError(t, err, "qemu-img %v", args)
	return out
}

// checkResult is the part of `qemu-img check --output=json` the tests look at.
type checkResult struct {
	CheckErrors    int    `json:"check-errors"`
	Corruptions    int    `json:"corruptions"`
	Leaks          int    `json:"leaks"`
	ImageEndOffset int64  `json:"image-end-offset"`
	AllocatedClust int64  `json:"allocated-clusters"`
	TotalClusters  int64  `json:"total-clusters"`
	Format         string `json:"format"`
}

// qemuCheck asserts that qemu-img check finds no error, corruption or leak in the image.
func qemuCheck(t testing.TB, path string) checkResult {
	t.Helper()
	bin := testenv.LookPath(t, "qemu-img")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// qemu-img check exits 2 or 3 when it finds problems; the JSON says which.
	out, _ := exec.CommandContext(ctx, bin, "check", "--output=json", path).Output()
	var res checkResult
	require.NoError(t, json.Unmarshal(out, &res), "qemu-img check output: %s", out)
	require.Zero(t, res.CheckErrors, "check errors: %s", out)
	require.Zero(t, res.Corruptions, "corruptions: %s", out)
	require.Zero(t, res.Leaks, "leaks: %s", out)
	require.Equal(t, "qcow2", res.Format)
	return res
}

// infoResult is the part of `qemu-img info --output=json` the tests look at.
type infoResult struct {
	VirtualSize    int64  `json:"virtual-size"`
	Format         string `json:"format"`
	ClusterSize    int64  `json:"cluster-size"`
	BackingFile    string `json:"backing-filename"`
	FormatSpecific struct {
		Data struct {
			Compat   string `json:"compat"`
			DataFile string `json:"data-file"`
		} `json:"data"`
	} `json:"format-specific"`
}

func qemuInfo(t testing.TB, path string) infoResult {
	t.Helper()
	out := qemuImg(t, "info", "--output=json", path)
	var res infoResult
	require.NoError(t, json.Unmarshal(out, &res), "qemu-img info output: %s", out)
	return res
}

// tempFile creates an empty file in a per-test directory.
func tempFile(t testing.TB, name string) (*os.File, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	return f, p
}

// qemuCheckLeaky runs qemu-img check and returns its findings without asserting on them.
func qemuCheckLeaky(t testing.TB, path string) checkResult {
	t.Helper()
	bin := testenv.LookPath(t, "qemu-img")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "check", "--output=json", path).Output()
	var res checkResult
	require.NoError(t, json.Unmarshal(out, &res), "qemu-img check output: %s", out)
	return res
}

// runCmd runs a binary with a generous deadline and returns its combined output.
func runCmd(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}
