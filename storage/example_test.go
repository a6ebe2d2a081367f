package storage_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/storage"
)

// ExampleService_Create makes a storage on a local directory and shows the uniqueness rule.
func ExampleService_Create() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "storage-example")
	defer os.RemoveAll(dir)
	sys, err := openvair.Open(ctx, openvair.Config{DataDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer sys.Close()

	req := storage.CreateRequest{Name: "local", Type: "localfs", Config: localfs.Config{Path: filepath.Join(dir, "pool")}}
	st, err := sys.Storages.Create(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.Name, st.Status, st.Capacity > 0)

	req.Name = "again" // same directory under another name
	_, err = sys.Storages.Create(ctx, req)
	fmt.Println(errors.Is(err, openvair.ErrAlreadyExists))
	// Output:
	// local available true
	// true
}
