package volume_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver/localfs" // registers the "localfs" storage backend
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
)

// ExampleService_Extend grows a qcow2 volume on a local directory storage.
func ExampleService_Extend() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "volume-example")
	defer os.RemoveAll(dir)
	sys, err := openvair.Open(ctx, openvair.Config{DataDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer sys.Close()
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "local", Type: "localfs",
		Config: localfs.Config{Path: filepath.Join(dir, "pool")}})
	if err != nil {
		log.Fatal(err)
	}

	v, err := sys.Volumes.Create(ctx, volume.CreateRequest{Name: "data", StorageID: st.ID, Format: volume.FormatQCOW2, Size: 1 << 30})
	if err != nil {
		log.Fatal(err)
	}
	v, err = sys.Volumes.Extend(ctx, v.ID, 4<<30)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v.Name, v.Status, v.Size)
	// Output: data available 4294967296
}

// ExampleService_CreateSnapshot makes a linked clone of a volume, then snapshots the clone and reverts it.
func ExampleService_CreateSnapshot() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "volume-example")
	defer os.RemoveAll(dir)
	sys, err := openvair.Open(ctx, openvair.Config{DataDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer sys.Close()
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "local", Type: localfs.Type,
		Config: localfs.Config{Path: filepath.Join(dir, "pool")}})
	if err != nil {
		log.Fatal(err)
	}
	base, err := sys.Volumes.Create(ctx, volume.CreateRequest{Name: "golden", StorageID: st.ID, Format: volume.FormatRaw, Size: 1 << 30})
	if err != nil {
		log.Fatal(err)
	}
	// A linked clone: a qcow2 overlay over the golden volume, made at once.
	clone, err := sys.Volumes.Create(ctx, volume.CreateRequest{Name: "web-root",
		Source: &volume.Source{VolumeID: base.ID, Mode: volume.ModeLinked}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(clone.Name, clone.Format, clone.Backing.Kind)

	snap, err := sys.Volumes.CreateSnapshot(ctx, clone.ID, volume.SnapshotRequest{Name: "before-upgrade"})
	if err != nil {
		log.Fatal(err)
	}
	reverted, err := sys.Volumes.RevertSnapshot(ctx, snap.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(snap.Name, reverted.Status)
	// Output:
	// web-root qcow2 volume
	// before-upgrade available
}
