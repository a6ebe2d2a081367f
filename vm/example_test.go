package vm_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/openvair/openvair"
	_ "github.com/openvair/openvair/driver/fake" // the "fake" drivers, standing in for localfs and libvirt here
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// ExampleService_Create creates a VM together with a new volume, starts it and stops it. With
// Config{Hypervisor: "libvirt"} the same calls drive real libvirt domains.
func ExampleService_Create() {
	ctx := context.Background()
	sys, err := openvair.Open(ctx, openvair.Config{Hypervisor: "fake",
		StorageDrivers: map[storage.Type]string{storage.TypeLocalFS: "fake"}})
	if err != nil {
		log.Fatal(err)
	}
	defer sys.Close()
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "local", Type: storage.TypeLocalFS,
		LocalFS: &storage.LocalFSSpec{Path: "/var/lib/openvair/pool"}})
	if err != nil {
		log.Fatal(err)
	}

	web, err := sys.VMs.Create(ctx, vm.CreateRequest{
		Name:        "web",
		CPU:         vm.CPU{Sockets: 1, Cores: 2, Threads: 1},
		MemoryBytes: 2 << 30,
		Disks: []vm.DiskRequest{{New: &volume.CreateRequest{Name: "web-root", StorageID: st.ID,
			Format: volume.FormatQCOW2, Size: 20 << 30}}},
		Interfaces: []vm.Interface{{Type: "network", Source: "default", MAC: "52:54:00:12:34:56"}},
		Graphics:   vm.Graphics{Type: "vnc"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(web.Name, web.Status, web.PowerState, web.Interfaces[0].MAC)

	web, err = sys.VMs.Start(ctx, web.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(web.PowerState)

	mem := int64(4 << 30)
	_, err = sys.VMs.Edit(ctx, web.ID, vm.EditRequest{MemoryBytes: &mem})
	fmt.Println(errors.Is(err, openvair.ErrWrongState)) // edits need a stopped VM

	web, err = sys.VMs.Stop(ctx, web.ID, vm.StopOptions{Force: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(web.PowerState)
	// Output:
	// web available shut_off 52:54:00:12:34:56
	// running
	// true
	// shut_off
}
