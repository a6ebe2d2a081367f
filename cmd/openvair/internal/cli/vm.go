package cli

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/cmd/openvair/internal/exitcode"
	"github.com/openvair/openvair/vm"
)

func (a *App) vmCmd() *cobra.Command {
	c := group("vm", "Manage virtual machines", "vms")
	c.AddCommand(a.vmListCmd(), a.vmShowCmd(), a.vmCreateCmd(), a.vmEditCmd(), a.vmDeleteCmd(),
		a.vmActionCmd("start", "Start a VM", func(ctx context.Context, c *client.Client, id uuid.UUID) (*vm.VM, error) {
			return c.StartVM(ctx, id)
		}),
		a.vmStopCmd(),
		a.vmActionCmd("reboot", "Ask a VM's guest to reboot (ACPI)", func(ctx context.Context, c *client.Client, id uuid.UUID) (*vm.VM, error) {
			return c.RebootVM(ctx, id)
		}),
		a.vmActionCmd("reset", "Reset a VM at once (a hardware reset)", func(ctx context.Context, c *client.Client, id uuid.UUID) (*vm.VM, error) {
			return c.ResetVM(ctx, id)
		}),
		a.vmAttachCmd(), a.vmDetachCmd(), a.vmConsoleCmd(), a.vmConsoleLogCmd())
	return c
}

func (a *App) vmListCmd() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List VMs", Aliases: []string{"ls"}, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				all, err := c.ListVMs(ctx)
				if err != nil {
					return err
				}
				return a.print(nonNil(all), vmTable(all))
			})
		},
	}
}

func (a *App) vmShowCmd() *cobra.Command {
	return &cobra.Command{
		Use: "show VM", Short: "Show a VM", Args: cobra.ExactArgs(1), ValidArgsFunction: a.complete(kindVM, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.vmDo(cmd, args[0], func(ctx context.Context, c *client.Client, id uuid.UUID) (*vm.VM, error) {
				return c.GetVM(ctx, id)
			})
		},
	}
}

// vmDo resolves a VM, calls fn and prints the VM it returns.
func (a *App) vmDo(cmd *cobra.Command, arg string, fn func(context.Context, *client.Client, uuid.UUID) (*vm.VM, error)) error {
	return a.run(cmd, func(ctx context.Context, c *client.Client) error {
		id, err := resolveArg(ctx, c, kindVM, arg)
		if err != nil {
			return err
		}
		v, err := fn(ctx, c, id)
		if err != nil {
			return err
		}
		return a.printVM(ctx, c, v)
	})
}

// printVM prints a VM; the table view names its volumes and images (two listings).
func (a *App) printVM(ctx context.Context, c *client.Client, v *vm.VM) error {
	if a.format != "table" {
		return a.print(v, nil)
	}
	names := map[uuid.UUID]string{}
	if vols, err := c.ListVolumes(ctx, uuid.Nil); err == nil {
		for _, x := range vols {
			names[x.ID] = x.Name
		}
	}
	if imgs, err := c.ListImages(ctx); err == nil {
		for _, x := range imgs {
			names[x.ID] = x.Name
		}
	}
	return a.print(v, vmFields(v, names))
}

func (a *App) vmActionCmd(verb, short string, fn func(context.Context, *client.Client, uuid.UUID) (*vm.VM, error)) *cobra.Command {
	return &cobra.Command{
		Use: verb + " VM", Short: short, Args: cobra.ExactArgs(1), ValidArgsFunction: a.complete(kindVM, 1),
		RunE: func(cmd *cobra.Command, args []string) error { return a.vmDo(cmd, args[0], fn) },
	}
}

func (a *App) vmStopCmd() *cobra.Command {
	var force, forceAfter bool
	var grace time.Duration
	c := &cobra.Command{
		Use:   "stop VM [--force] [--timeout DURATION]",
		Short: "Stop a VM: ask its guest to shut down, or power it off with --force",
		Long: `Stop a VM. By default the guest gets the ACPI power button and the command waits for it to power off,
for --timeout (default: the server's, 60s); when that passes the VM keeps running and the command fails,
unless --force-after-timeout. --force powers the VM off at once.`,
		Args: cobra.ExactArgs(1), ValidArgsFunction: a.complete(kindVM, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if grace < 0 {
				return exitcode.Usagef("--timeout must not be negative")
			}
			opts := vm.StopOptions{Force: force, Timeout: grace, ForceAfterTimeout: forceAfter}
			c, err := a.client()
			if err != nil {
				return err
			}
			// The call waits for the guest: give it the graceful timeout and a margin.
			limit := max(a.timeout, grace+time.Minute)
			ctx, cancel := context.WithTimeout(a.baseCtx(cmd), limit)
			defer cancel()
			id, err := resolveArg(ctx, c, kindVM, args[0])
			if err != nil {
				return err
			}
			v, err := c.StopVM(ctx, id, opts)
			if err != nil {
				return err
			}
			return a.printVM(ctx, c, v)
		},
	}
	c.Flags().BoolVar(&force, "force", false, "power off at once instead of asking the guest")
	c.Flags().DurationVar(&grace, "timeout", 0, "how long a graceful stop waits for the guest (default: the server's, 60s)")
	c.Flags().BoolVar(&forceAfter, "force-after-timeout", false, "power off when the guest has not shut down in time")
	return c
}

// vmCreateFlags are the flags of vm create.
type vmCreateFlags struct {
	desc, memory, firmware, machine, cpuMode, cpuModel, boot, graphics, listen string
	userData, metaData, networkConfig, hostname                                string
	cpus                                                                       int
	disks, cdroms, nics, sshKeys                                               []string
	af                                                                         asyncFlags
}

func (a *App) vmCreateCmd() *cobra.Command {
	var f vmCreateFlags
	c := &cobra.Command{
		Use:   "create NAME [--cpus N] [--memory SIZE] [--disk ...] [--cdrom IMAGE] [--nic ...]",
		Short: "Create a VM",
		Long: `Create a VM (stopped). Disks are existing volumes or new ones made with the VM:

  --disk VOLUME                      an existing volume (id or name); also volume=VOLUME[,bus=..][,boot=N]
  --disk new:storage=S,size=10GiB    a new blank volume [,format=qcow2|raw][,name=NAME][,bus=virtio|sata|scsi][,boot=N]
  --disk new:from-image=IMG          a new volume made from an image [,mode=copy|linked|instant][,storage=S][,size=..]

NICs: --nic network=default or --nic bridge=br0, with [,model=virtio|e1000|rtl8139][,mac=52:54:00:..].
cloud-init (NoCloud seed): --user-data FILE, --meta-data FILE, --network-config FILE, --ssh-key FILE,
--hostname NAME.`,
		Example: "  openvair vm create web --cpus 2 --memory 2GiB --disk new:storage=pool,size=10GiB --cdrom debian-12 --nic network=default\n" +
			"  openvair vm create db --disk new:from-image=debian-12-cloud,mode=linked --ssh-key ~/.ssh/id_ed25519.pub",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, disks, err := f.request(args[0])
			if err != nil {
				return err
			}
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				for i, d := range disks {
					r, err := d.request(ctx, c, args[0], i)
					if err != nil {
						return err
					}
					req.Disks = append(req.Disks, r)
				}
				for _, img := range f.cdroms {
					id, err := resolveArg(ctx, c, kindImage, img)
					if err != nil {
						return err
					}
					req.CDROMs = append(req.CDROMs, vm.CDROM{ImageID: id})
				}
				if f.af.async {
					op, err := c.CreateVMAsync(ctx, req)
					if err != nil {
						return err
					}
					return a.printOperation(op)
				}
				v, err := c.CreateVM(ctx, req)
				if err != nil {
					return err
				}
				return a.printVM(ctx, c, v)
			})
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.desc, "description", "", "description")
	fl.IntVar(&f.cpus, "cpus", 1, "virtual CPUs (one socket, N cores)")
	fl.StringVar(&f.memory, "memory", "512MiB", "memory, such as 512MiB or 2GiB")
	fl.StringVar(&f.cpuMode, "cpu-mode", "", "host-model, host-passthrough or custom (default: the server's)")
	fl.StringVar(&f.cpuModel, "cpu-model", "", "CPU model for --cpu-mode custom (see 'openvair host show -o yaml')")
	fl.StringVar(&f.firmware, "firmware", "", "bios or uefi (default bios)")
	fl.StringVar(&f.machine, "machine", "", "machine type, such as q35")
	fl.StringVar(&f.boot, "boot", "", "boot order, such as cdrom,hd (default hd,cdrom)")
	fl.StringArrayVar(&f.disks, "disk", nil, "a disk (repeatable; see above)")
	fl.StringArrayVar(&f.cdroms, "cdrom", nil, "an image to attach as a cdrom (repeatable)")
	fl.StringArrayVar(&f.nics, "nic", nil, "a network interface: network=NAME or bridge=NAME [,model=..][,mac=..] (repeatable)")
	fl.StringVar(&f.graphics, "graphics", "", "vnc, spice or none (default vnc)")
	fl.StringVar(&f.listen, "graphics-listen", "", "address the console listens on (default 127.0.0.1)")
	fl.StringVar(&f.userData, "user-data", "", "cloud-init user-data file (#cloud-config, a #! script or MIME multipart)")
	fl.StringVar(&f.metaData, "meta-data", "", "cloud-init meta-data file (YAML)")
	fl.StringVar(&f.networkConfig, "network-config", "", "cloud-init network-config file (YAML)")
	fl.StringArrayVar(&f.sshKeys, "ssh-key", nil, "an OpenSSH public key file for the guest's default user (repeatable)")
	fl.StringVar(&f.hostname, "hostname", "", "the guest's host name (cloud-init)")
	a.completeFlag(c, "cdrom", kindImage)
	_ = c.RegisterFlagCompletionFunc("graphics", cobra.FixedCompletions([]string{"vnc", "spice", "none"}, cobra.ShellCompDirectiveNoFileComp))
	_ = c.RegisterFlagCompletionFunc("firmware", cobra.FixedCompletions([]string{"bios", "uefi"}, cobra.ShellCompDirectiveNoFileComp))
	f.af.add(c)
	return c
}

// request builds the create request from the flags; disks still name volumes, storages and images.
func (f *vmCreateFlags) request(name string) (vm.CreateRequest, []diskSpec, error) {
	mem, err := sizeFlag("memory", f.memory)
	if err != nil {
		return vm.CreateRequest{}, nil, err
	}
	if f.cpus < 1 {
		return vm.CreateRequest{}, nil, exitcode.Usagef("--cpus must be at least 1")
	}
	req := vm.CreateRequest{Name: name, Description: f.desc, MemoryBytes: mem, Firmware: f.firmware, MachineType: f.machine,
		CPU:      vm.CPU{Sockets: 1, Cores: f.cpus, Threads: 1, Mode: f.cpuMode, Model: f.cpuModel},
		Graphics: vm.Graphics{Type: f.graphics, Listen: f.listen}}
	if f.boot != "" {
		req.Boot = strings.Split(f.boot, ",")
	}
	var disks []diskSpec
	for _, s := range f.disks {
		d, err := parseDisk(s)
		if err != nil {
			return req, nil, err
		}
		disks = append(disks, d)
	}
	for _, s := range f.nics {
		n, err := parseNIC(s)
		if err != nil {
			return req, nil, err
		}
		req.Interfaces = append(req.Interfaces, n)
	}
	ci, err := f.cloudInit()
	if err != nil {
		return req, nil, err
	}
	req.CloudInit = ci
	return req, disks, nil
}

// cloudInit reads the cloud-init files named by the flags; nil when none is given.
func (f *vmCreateFlags) cloudInit() (*vm.CloudInitConfig, error) {
	if f.userData == "" && f.metaData == "" && f.networkConfig == "" && len(f.sshKeys) == 0 && f.hostname == "" {
		return nil, nil
	}
	ci := &vm.CloudInitConfig{Hostname: f.hostname}
	for _, x := range []struct {
		flag, path string
		dst        *string
	}{{"user-data", f.userData, &ci.UserData}, {"meta-data", f.metaData, &ci.MetaData}, {"network-config", f.networkConfig, &ci.NetworkConfig}} {
		if x.path == "" {
			continue
		}
		b, err := os.ReadFile(x.path)
		if err != nil {
			return nil, exitcode.Usagef("--%s: %v", x.flag, err)
		}
		*x.dst = string(b)
	}
	for _, p := range f.sshKeys {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, exitcode.Usagef("--ssh-key: %v", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				ci.SSHAuthorizedKeys = append(ci.SSHAuthorizedKeys, line)
			}
		}
	}
	return ci, nil
}

func (a *App) vmEditCmd() *cobra.Command {
	var cpus int
	var memory, boot string
	c := &cobra.Command{
		Use:   "edit VM [--name NAME] [--description TEXT] [--cpus N] [--memory SIZE] [--boot LIST] ...",
		Short: "Change a stopped VM",
		Args:  cobra.ExactArgs(1), ValidArgsFunction: a.complete(kindVM, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := vm.EditRequest{Name: optString(cmd, "name"), Description: optString(cmd, "description"),
				Firmware: optString(cmd, "firmware"), MachineType: optString(cmd, "machine")}
			if cmd.Flags().Changed("memory") {
				n, err := sizeFlag("memory", memory)
				if err != nil {
					return err
				}
				req.MemoryBytes = &n
			}
			if cmd.Flags().Changed("boot") {
				b := strings.Split(boot, ",")
				req.Boot = &b
			}
			cpuChanged := cmd.Flags().Changed("cpus") || cmd.Flags().Changed("cpu-mode") || cmd.Flags().Changed("cpu-model")
			if req == (vm.EditRequest{}) && !cpuChanged {
				return exitcode.Usagef("nothing to change: give --name, --description, --cpus, --memory, --boot, --firmware, --machine, --cpu-mode or --cpu-model")
			}
			return a.vmDo(cmd, args[0], func(ctx context.Context, c *client.Client, id uuid.UUID) (*vm.VM, error) {
				if cpuChanged {
					cur, err := c.GetVM(ctx, id)
					if err != nil {
						return nil, err
					}
					cpu := cur.CPU
					if cmd.Flags().Changed("cpus") {
						if cpus < 1 {
							return nil, exitcode.Usagef("--cpus must be at least 1")
						}
						cpu.Sockets, cpu.Cores, cpu.Threads = 1, cpus, 1
					}
					if m := optString(cmd, "cpu-mode"); m != nil {
						cpu.Mode = *m
					}
					if m := optString(cmd, "cpu-model"); m != nil {
						cpu.Model = *m
					}
					req.CPU = &cpu
				}
				return c.EditVM(ctx, id, req)
			})
		},
	}
	fl := c.Flags()
	fl.String("name", "", "new name")
	fl.String("description", "", "new description")
	fl.IntVar(&cpus, "cpus", 1, "virtual CPUs (one socket, N cores)")
	fl.StringVar(&memory, "memory", "", "memory, such as 2GiB")
	fl.StringVar(&boot, "boot", "", "boot order, such as cdrom,hd")
	fl.String("firmware", "", "bios or uefi")
	fl.String("machine", "", "machine type")
	fl.String("cpu-mode", "", "host-model, host-passthrough or custom")
	fl.String("cpu-model", "", "CPU model for --cpu-mode custom")
	return c
}

func (a *App) vmDeleteCmd() *cobra.Command {
	var vols bool
	c := &cobra.Command{
		Use: "delete VM...", Short: "Delete stopped VMs", Aliases: []string{"rm"}, Args: cobra.MinimumNArgs(1),
		ValidArgsFunction: a.complete(kindVM, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.deleteEach(cmd, kindVM, args, func(ctx context.Context, c *client.Client, id uuid.UUID) error {
				return c.DeleteVM(ctx, id, vm.DeleteOptions{DeleteVolumes: vols})
			})
		},
	}
	c.Flags().BoolVar(&vols, "volumes", false, "delete the VM's volumes that no other VM uses")
	return c
}

func (a *App) vmAttachCmd() *cobra.Command {
	var bus string
	c := &cobra.Command{
		Use: "attach VM VOLUME [--bus virtio|sata|scsi]", Short: "Attach a volume to a stopped VM", Args: cobra.ExactArgs(2),
		ValidArgsFunction: a.complete(kindVM, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.vmDo(cmd, args[0], func(ctx context.Context, c *client.Client, id uuid.UUID) (*vm.VM, error) {
				vol, err := resolveArg(ctx, c, kindVolume, args[1])
				if err != nil {
					return nil, err
				}
				return c.AttachVolume(ctx, id, vol, bus)
			})
		},
	}
	c.Flags().StringVar(&bus, "bus", "", "disk bus (default virtio)")
	return c
}

func (a *App) vmDetachCmd() *cobra.Command {
	return &cobra.Command{
		Use: "detach VM VOLUME", Short: "Detach a volume from a stopped VM (the volume is kept)", Args: cobra.ExactArgs(2),
		ValidArgsFunction: a.complete(kindVM, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.vmDo(cmd, args[0], func(ctx context.Context, c *client.Client, id uuid.UUID) (*vm.VM, error) {
				vol, err := resolveArg(ctx, c, kindVolume, args[1])
				if err != nil {
					return nil, err
				}
				return c.DetachVolume(ctx, id, vol)
			})
		},
	}
}

func (a *App) vmConsoleLogCmd() *cobra.Command {
	var tail string
	c := &cobra.Command{
		Use: "console-log VM [--tail SIZE]", Short: "Print the end of a VM's serial console output", Args: cobra.ExactArgs(1),
		ValidArgsFunction: a.complete(kindVM, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := sizeFlag("tail", tail)
			if err != nil {
				return err
			}
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				id, err := resolveArg(ctx, c, kindVM, args[0])
				if err != nil {
					return err
				}
				b, err := c.ConsoleLog(ctx, id, n)
				if err != nil {
					return err
				}
				if a.format != "table" {
					return a.print(map[string]string{"vm_id": id.String(), "log": string(b)}, nil)
				}
				_, err = a.Out.Write(b)
				return err
			})
		},
	}
	c.Flags().StringVar(&tail, "tail", "", "at most this much of the end, such as 4KiB (default: the server's)")
	return c
}
