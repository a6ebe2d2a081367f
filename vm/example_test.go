package vm_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/openvair/openvair"
	_ "github.com/openvair/openvair/driver/fake" // the "fake" drivers, standing in for localfs and libvirt here
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// ExampleService_Create creates a VM together with a new volume, starts it and stops it. With
// Config{Hypervisor: "libvirt"} the same calls drive real libvirt domains.
func ExampleService_Create() {
	ctx := context.Background()
	sys, err := openvair.Open(ctx, openvair.Config{Hypervisor: "fake",
		StorageDrivers: map[storage.Type]string{"localfs": "fake"}})
	if err != nil {
		log.Fatal(err)
	}
	defer sys.Close()
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "local", Type: "localfs",
		Config: localfs.Config{Path: "/var/lib/openvair/pool"}})
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
	fmt.Println(web.PowerState, web.PowerStateReason) // why it is off: it was forced
	// Output:
	// web available shut_off 52:54:00:12:34:56
	// running
	// true
	// shut_off destroyed
}

// ExampleService_Start_errorKinds shows how a client tells "fix the VM" from "retry later" when a start fails
// (here the fake hypervisor starts it).
func ExampleService_Start_errorKinds() {
	ctx := context.Background()
	sys, err := openvair.Open(ctx, openvair.Config{Hypervisor: "fake"})
	if err != nil {
		log.Fatal(err)
	}
	defer sys.Close()
	web, err := sys.VMs.Create(ctx, vm.CreateRequest{Name: "web", CPU: vm.CPU{Sockets: 1, Cores: 1, Threads: 1,
		Mode: vm.CPUCustom, Model: "qemu64"}, MemoryBytes: 1 << 30})
	if err != nil {
		log.Fatal(err)
	}
	_, err = sys.VMs.Start(ctx, web.ID)
	var e *openvair.Error
	switch {
	case err == nil:
		fmt.Println("running")
	case errors.Is(err, openvair.ErrUnrunnable) && errors.As(err, &e):
		fmt.Println("fix the VM:", e.Reason) // CPU, firmware, machine or domain type the host lacks
	case errors.Is(err, openvair.ErrBackendFailed):
		fmt.Println("fix the host or storage:", err) // QEMU could not open a file, an NFS server refused it
	case errors.Is(err, openvair.ErrUnavailable):
		fmt.Println("retry later:", err) // libvirtd cannot be reached now
	}
	// Output:
	// running
}

// ExampleService_Host asks what the hypervisor's host can run before choosing a VM's CPU.
func ExampleService_Host() {
	ctx := context.Background()
	sys, err := openvair.Open(ctx, openvair.Config{Hypervisor: "fake"})
	if err != nil {
		log.Fatal(err)
	}
	defer sys.Close()
	host, err := sys.VMs.Host(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range host.CPUModes {
		if m.Mode == vm.CPUCustom && m.Supported && len(m.Models) > 0 {
			fmt.Println("custom CPU models offered:", len(m.Models) > 0)
		}
	}
	// Output:
	// custom CPU models offered: true
}
