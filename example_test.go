package openvair_test

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
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// Example is the README's quick start: a storage on a local directory, a qcow2 volume on it, an image
// uploaded from a reader, and the typed errors the SDK returns.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "openvair-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// The in-memory store and the localfs driver imported above; to persist, import repo/sql and use DSN
	// "sqlite:///var/lib/openvair/openvair.db".
	sys, err := openvair.Open(ctx, openvair.Config{DSN: "memory:", DataDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer sys.Close()

	pool, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "local", Type: "localfs",
		Config: localfs.Config{Path: filepath.Join(dir, "pool")}})
	if err != nil {
		log.Fatal(err)
	}
	disk, err := sys.Volumes.Create(ctx, volume.CreateRequest{Name: "disk0", StorageID: pool.ID,
		Format: volume.FormatQCOW2, Size: 10 << 30})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(disk.Name, disk.Status, disk.Format, disk.Size)

	iso := make([]byte, 64<<10)
	copy(iso[32768:], "\x01CD001\x01") // an ISO 9660 volume descriptor
	img, err := sys.Images.Create(ctx, image.CreateRequest{Name: "installer", StorageID: pool.ID}, bytes.NewReader(iso))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(img.Name, img.Status, img.Format, img.Size)

	// Errors carry a kind callers test with errors.Is.
	_, err = sys.Volumes.Extend(ctx, disk.ID, 1<<30)
	fmt.Println(errors.Is(err, openvair.ErrInvalid))
	err = sys.Storages.Delete(ctx, pool.ID)
	fmt.Println(errors.Is(err, openvair.ErrInUse))
	// Without a hypervisor configured, VM calls say so.
	_, err = sys.VMs.Create(ctx, vm.CreateRequest{Name: "web", CPU: vm.CPU{Sockets: 1, Cores: 1, Threads: 1}, MemoryBytes: 1 << 30})
	fmt.Println(errors.Is(err, openvair.ErrUnavailable))
	// Output:
	// disk0 available qcow2 10737418240
	// installer available iso 65536
	// true
	// true
	// true
}
