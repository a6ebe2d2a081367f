package main

import (
	"bytes"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRun builds a package from the flags and prints its path; bad flags are errors.
func TestRun(t *testing.T) {
	bin, err := exec.LookPath("true") // a small ELF executable
	require.NoError(t, err)
	bin, err = filepath.EvalSymlinks(bin)
	require.NoError(t, err)
	out := t.TempDir()
	var stdout bytes.Buffer
	require.NoError(t, run([]string{"-binary", bin, "-version", "2.0.0", "-out", out}, &stdout, io.Discard))
	path := strings.TrimSpace(stdout.String())
	assert.Equal(t, filepath.Join(out, "openvair-server_2.0.0_amd64.deb"), path)
	assert.FileExists(t, path)

	assert.ErrorContains(t, run([]string{"-binary", bin}, io.Discard, io.Discard), "version is required")
	assert.ErrorContains(t, run([]string{"-binary", bin, "-version", "1.0.0", "extra"}, io.Discard, io.Discard), "unexpected arguments")
	assert.Error(t, run([]string{"-nope"}, io.Discard, io.Discard))
}
