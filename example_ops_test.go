package openvair_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver/localfs"
	_ "github.com/openvair/openvair/driver/localfs" // registers the "localfs" storage backend
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
)

// Example_operations starts a volume create that a worker runs, waits for its operation, and reads the
// events the change wrote, as an orchestrator following the SDK would.
func Example_operations() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "openvair-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
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
	since, err := sys.Events.Last(ctx)
	if err != nil {
		log.Fatal(err)
	}

	// Who asks is recorded in the operation and its events.
	ctx = openvair.WithRequest(ctx, "req-42", "orchestrator")
	op, err := sys.Volumes.CreateAsync(ctx, volume.CreateRequest{Name: "disk0", StorageID: pool.ID,
		Format: volume.FormatQCOW2, Size: 1 << 30})
	if err != nil {
		log.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	done, err := sys.Operations.Wait(wctx, op.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(done.Kind, done.Status, done.Requester, done.Result.ID == done.TargetID)

	// Every change is an event, in commit order; Subscribe resumes after any event id.
	sctx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	for ev, err := range sys.Events.Subscribe(sctx, since, openvair.EventFilter{Resource: "volume"}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.Type, ev.RequestID)
		if ev.Version == done.Result.Version {
			break
		}
	}
	// Output:
	// volume.create succeeded orchestrator true
	// volume.created req-42
	// volume.updated req-42
}
