// Command embed-sdk shows the openvair SDK embedded in a Go program: it opens a System on a SQLite file in
// a temporary directory, creates a LocalFS storage, a volume and an image, lists the volumes, and shows
// how typed errors are tested. Run it with: go run ./examples/embed-sdk
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver/localfs"
	_ "github.com/openvair/openvair/driver/localfs" // registers the "localfs" storage backend
	"github.com/openvair/openvair/image"
	_ "github.com/openvair/openvair/repo/sql" // registers the "sqlite:" and "postgres:" stores
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
)

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "openvair-embed")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	sys, err := openvair.Open(ctx, openvair.Config{DSN: "sqlite://" + filepath.Join(dir, "openvair.db"), DataDir: dir})
	if err != nil {
		return err
	}
	defer sys.Close()
	// Monitors (capacity, usage, VM power state) run until ctx ends.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = sys.Run(runCtx) }()

	pool := filepath.Join(dir, "pool")
	if err := os.Mkdir(pool, 0o750); err != nil {
		return err
	}
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "local", Type: "localfs",
		Config: localfs.Config{Path: pool}})
	if err != nil {
		return err
	}
	fmt.Printf("storage %s: %s, %d bytes available\n", st.Name, st.Status, st.Available)

	for _, name := range []string{"root", "data"} {
		if _, err := sys.Volumes.Create(ctx, volume.CreateRequest{Name: name, StorageID: st.ID, Format: volume.FormatQCOW2, Size: 1 << 30}); err != nil {
			return err
		}
	}
	page, err := sys.Volumes.List(ctx, volume.ListOptions{StorageID: st.ID, Limit: 10})
	if err != nil {
		return err
	}
	for _, v := range page.Items {
		fmt.Printf("volume %s: %s %s %d bytes\n", v.Name, v.Status, v.Format, v.Size)
	}

	iso := make([]byte, 64<<10)
	copy(iso[32768:], "\x01CD001\x01")
	img, err := sys.Images.Create(ctx, image.CreateRequest{Name: "installer", StorageID: st.ID}, bytes.NewReader(iso))
	if err != nil {
		return err
	}
	fmt.Printf("image %s: %s %s sha256 %s\n", img.Name, img.Status, img.Format, img.SHA256[:12])

	// Typed errors: the same kinds the reference server maps to HTTP statuses.
	_, err = sys.Volumes.Create(ctx, volume.CreateRequest{Name: "root", StorageID: st.ID, Format: volume.FormatRaw, Size: 1 << 20})
	fmt.Println("duplicate name is ErrAlreadyExists:", errors.Is(err, openvair.ErrAlreadyExists))
	err = sys.Storages.Delete(ctx, st.ID)
	var oe *openvair.Error
	if errors.Is(err, openvair.ErrInUse) && errors.As(err, &oe) {
		fmt.Printf("storage in use by %d objects\n", len(oe.Refs))
	}
	return nil
}
