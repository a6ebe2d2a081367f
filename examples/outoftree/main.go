// Command outoftree shows a storage type defined outside the openvair SDK: package quotadir (a directory
// with a quota) is written against the public driver contract only and registers itself as the storage
// type "quotadir" when imported, like the drivers that ship with openvair; openvair needs no change to
// create storages of that type and volumes on them. The program opens openvair on the in-memory store,
// creates a quotadir storage of 1 GiB in a temporary directory and a raw volume of 256 MiB on it, and
// prints them; then it shows what the storage refuses: a qcow2 volume (the backend declares raw volumes
// only, openvair.ErrUnsupported) and a volume larger than what the quota has left (openvair.ErrTooLarge).
// Run it with:
//
//	go run ./examples/outoftree
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/openvair/openvair"                             // opens the "memory:" store without further imports
	"github.com/openvair/openvair/examples/outoftree/quotadir" // registers the "quotadir" storage backend
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer) error {
	dir, err := os.MkdirTemp("", "openvair-outoftree")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	sys, err := openvair.Open(ctx, openvair.Config{DSN: "memory:", DataDir: dir})
	if err != nil {
		return err
	}
	defer sys.Close()

	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "q", Type: quotadir.Name,
		Config: quotadir.Config{Root: filepath.Join(dir, "q"), Quota: 1 << 30}})
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "storage:", st.Name, st.Type, st.Status, "capacity", st.Capacity)

	vol, err := sys.Volumes.Create(ctx, volume.CreateRequest{Name: "disk0", StorageID: st.ID,
		Format: volume.FormatRaw, Size: 256 << 20})
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "volume:", vol.Name, vol.Format, vol.Size, vol.Status)

	_, err = sys.Volumes.Create(ctx, volume.CreateRequest{Name: "disk1", StorageID: st.ID,
		Format: volume.FormatQCOW2, Size: 256 << 20})
	if !errors.Is(err, openvair.ErrUnsupported) {
		return fmt.Errorf("a qcow2 volume on a quotadir storage: want openvair.ErrUnsupported, got %v", err)
	}
	fmt.Fprintln(w, "qcow2 volume: refused, unsupported")

	_, err = sys.Volumes.Create(ctx, volume.CreateRequest{Name: "disk2", StorageID: st.ID,
		Format: volume.FormatRaw, Size: 1 << 30})
	if !errors.Is(err, openvair.ErrTooLarge) {
		return fmt.Errorf("a 1 GiB volume on a 1 GiB quota holding 256 MiB: want openvair.ErrTooLarge, got %v", err)
	}
	fmt.Fprintln(w, "1 GiB volume: refused, too large for the quota")
	return nil
}
