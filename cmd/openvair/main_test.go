package main_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/openvair/openvair/internal/testenv/libvirtd"
)

// update rewrites the golden files of testdata instead of comparing with them.
var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// binary is the openvair CLI built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "openvair-cli")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "openvair")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the CLI:", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	libvirtd.CleanupCache()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
