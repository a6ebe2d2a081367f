package volume_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver/localfs"
	_ "github.com/openvair/openvair/driver/localfs" // registers the "localfs" storage backend
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
