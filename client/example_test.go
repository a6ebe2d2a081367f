package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
)

// volumeAPI is what a program needs of volumes: *volume.Service (embedded) and client.Volumes (remote) both
// have it, so the program chooses by configuration.
type volumeAPI interface {
	Create(ctx context.Context, req volume.CreateRequest) (*volume.Volume, error)
	Get(ctx context.Context, id uuid.UUID) (*volume.Volume, error)
	Extend(ctx context.Context, id uuid.UUID, size int64) (*volume.Volume, error)
	Delete(ctx context.Context, id uuid.UUID) error
}

type storageAPI interface {
	Create(ctx context.Context, req storage.CreateRequest) (*storage.Storage, error)
	Get(ctx context.Context, id uuid.UUID) (*storage.Storage, error)
	Delete(ctx context.Context, id uuid.UUID) error
}

var (
	_ volumeAPI  = (*volume.Service)(nil)
	_ volumeAPI  = client.Volumes{}
	_ storageAPI = (*storage.Service)(nil)
	_ storageAPI = client.Storages{}
)

// provision makes a data disk through whichever implementation it is given.
func provision(ctx context.Context, vols volumeAPI, storageID uuid.UUID) (*volume.Volume, error) {
	v, err := vols.Create(ctx, volume.CreateRequest{Name: "data", StorageID: storageID, Format: volume.FormatQCOW2, Size: 1 << 30})
	if err != nil {
		return nil, err
	}
	return vols.Extend(ctx, v.ID, 2<<30)
}

// Example_embeddedOrRemote runs the same code on the embedded SDK (sys.Volumes) and, through the client, on
// a remote server.
func Example_embeddedOrRemote() {
	base, _ := os.MkdirTemp("", "client-example")
	defer os.RemoveAll(base)
	c, dir, stop, err := startServer(base, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx := context.Background()
	st, err := c.Storages().Create(ctx, storage.CreateRequest{Name: "pool", Type: "localfs", Config: map[string]string{"path": dir}})
	if err != nil {
		fmt.Println(err)
		return
	}
	v, err := provision(ctx, c.Volumes(), st.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(v.Name, v.Format, v.Size)
	// Output: data qcow2 2147483648
}

// ExampleClient_Events follows changes: from event 0 it first replays the ones the server keeps, then
// follows live; a broken connection is resumed where it stopped.
func ExampleClient_Events() {
	base, _ := os.MkdirTemp("", "client-example")
	defer os.RemoveAll(base)
	c, dir, stop, err := startServer(base, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.CreateStorage(ctx, storage.CreateRequest{Name: "pool", Type: "localfs", Config: map[string]string{"path": dir}}); err != nil {
		fmt.Println(err)
		return
	}
	for ev, err := range c.Events(ctx, client.EventOptions{Since: 0, Resource: "storage", Types: []string{"storage.created"}}) {
		if err != nil {
			fmt.Println(err)
			return
		}
		var st storage.Storage
		if err := json.Unmarshal(ev.Data, &st); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(ev.Type, st.Name, st.Status)
		break
	}
	// Output: storage.created pool creating
}
