// Command minimal is the smallest embedding of openvair: the in-memory store and the LocalFS storage
// backend, and nothing else. Drivers and stores register when their package is imported, so this program
// links neither libvirt, NFS, SQLite, PostgreSQL nor the River job queue (deps_test.go checks it). It
// creates a storage on a temporary directory and a volume on it, and prints them. Run it with:
//
//	go run ./examples/minimal
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/openvair/openvair" // opens the "memory:" store without further imports
	"github.com/openvair/openvair/driver/localfs"
	_ "github.com/openvair/openvair/driver/localfs" // registers the "localfs" storage backend
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer) error {
	dir, err := os.MkdirTemp("", "openvair-minimal")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	sys, err := openvair.Open(ctx, openvair.Config{DSN: "memory:", DataDir: dir})
	if err != nil {
		return err
	}
	defer sys.Close()

	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "local", Type: "localfs",
		Config: localfs.Config{Path: filepath.Join(dir, "pool")}})
	if err != nil {
		return err
	}
	vol, err := sys.Volumes.Create(ctx, volume.CreateRequest{Name: "disk0", StorageID: st.ID,
		Format: volume.FormatQCOW2, Size: 1 << 30})
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "storage:", st.Name, st.Type, st.Status)
	fmt.Fprintln(w, "volume:", vol.Name, vol.Format, vol.Size, vol.Status)
	return nil
}
