package image_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver/localfs"
	_ "github.com/openvair/openvair/driver/localfs" // registers the "localfs" storage backend
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/storage"
)

// ExampleService_Create streams an image into a storage; its type comes from its content, and uploads
// over the limit are refused without leaving anything behind.
func ExampleService_Create() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "image-example")
	defer os.RemoveAll(dir)
	sys, err := openvair.Open(ctx, openvair.Config{DataDir: dir, MaxImageSize: 1 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer sys.Close()
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "local", Type: "localfs",
		Config: localfs.Config{Path: filepath.Join(dir, "pool")}})
	if err != nil {
		log.Fatal(err)
	}

	img, err := sys.Images.Create(ctx, image.CreateRequest{Name: "notes.iso", StorageID: st.ID}, strings.NewReader("just text"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(img.Format, img.Size, img.SHA256[:12])

	_, err = sys.Images.Create(ctx, image.CreateRequest{Name: "huge", StorageID: st.ID}, strings.NewReader(strings.Repeat("x", 2<<20)))
	fmt.Println(errors.Is(err, openvair.ErrTooLarge))
	// Output:
	// raw 9 7f5dde76c846
	// true
}
