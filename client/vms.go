package client

import (
	"context"
	"math"
	"net/http"
	"net/url"
	"strconv"

	"github.com/google/uuid"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/vm"
)

// The bodies of VM requests as the server reads them. The SDK's request types do not encode as the server
// reads them: zero fields would be sent as invalid values ("mode": "", a nil volume id), and the graphics
// password is never encoded.

type cpuBody struct {
	Sockets int    `json:"sockets"`
	Cores   int    `json:"cores"`
	Threads int    `json:"threads"`
	Mode    string `json:"mode,omitempty"`
	Model   string `json:"model,omitempty"`
}

type diskBody struct {
	VolumeID   *uuid.UUID  `json:"volume_id,omitempty"`
	New        *volumeBody `json:"new,omitempty"`
	Bus        string      `json:"bus,omitempty"`
	BootOrder  int         `json:"boot_order,omitempty"`
	ReadIOPS   int64       `json:"read_iops,omitempty"`
	WriteIOPS  int64       `json:"write_iops,omitempty"`
	ReadBytes  int64       `json:"read_bytes_sec,omitempty"`
	WriteBytes int64       `json:"write_bytes_sec,omitempty"`
}

type nicBody struct {
	Type   string `json:"type"`
	Source string `json:"source"`
	Model  string `json:"model,omitempty"`
	MAC    string `json:"mac,omitempty"`
}

type graphicsBody struct {
	Type     string `json:"type,omitempty"`
	Listen   string `json:"listen,omitempty"`
	Password string `json:"password,omitempty"`
}

type vmBody struct {
	Name        string              `json:"name"`
	Description string              `json:"description,omitempty"`
	CPU         cpuBody             `json:"cpu"`
	Memory      int64               `json:"memory"`
	Firmware    string              `json:"firmware,omitempty"`
	MachineType string              `json:"machine_type,omitempty"`
	Boot        []string            `json:"boot,omitempty"`
	Disks       []diskBody          `json:"disks,omitempty"`
	CDROMs      []vm.CDROM          `json:"cdroms,omitempty"`
	Interfaces  []nicBody           `json:"interfaces,omitempty"`
	Graphics    *graphicsBody       `json:"graphics,omitempty"`
	CloudInit   *vm.CloudInitConfig `json:"cloud_init,omitempty"`
}

type vmEditBody struct {
	Name        *string             `json:"name,omitempty"`
	Description *string             `json:"description,omitempty"`
	CPU         *cpuBody            `json:"cpu,omitempty"`
	Memory      *int64              `json:"memory,omitempty"`
	Firmware    *string             `json:"firmware,omitempty"`
	MachineType *string             `json:"machine_type,omitempty"`
	Boot        *[]string           `json:"boot,omitempty"`
	Disks       *[]diskBody         `json:"disks,omitempty"`
	CDROMs      *[]vm.CDROM         `json:"cdroms,omitempty"`
	Interfaces  *[]nicBody          `json:"interfaces,omitempty"`
	Graphics    *graphicsBody       `json:"graphics,omitempty"`
	CloudInit   *vm.CloudInitConfig `json:"cloud_init,omitempty"`
}

type stopBody struct {
	Force             bool `json:"force,omitempty"`
	Timeout           int  `json:"timeout,omitempty"`
	ForceAfterTimeout bool `json:"force_after_timeout,omitempty"`
}

func cpuBodyOf(c vm.CPU) cpuBody { return cpuBody(c) }

func disksBodyOf(ds []vm.DiskRequest) []diskBody {
	if ds == nil {
		return nil
	}
	out := make([]diskBody, 0, len(ds))
	for _, d := range ds {
		b := diskBody{Bus: d.Bus, BootOrder: d.BootOrder, ReadIOPS: d.ReadIOPS, WriteIOPS: d.WriteIOPS,
			ReadBytes: d.ReadBytes, WriteBytes: d.WriteBytes}
		if d.VolumeID != uuid.Nil {
			id := d.VolumeID
			b.VolumeID = &id
		}
		if d.New != nil {
			nb := volumeBodyOf(*d.New)
			b.New = &nb
		}
		out = append(out, b)
	}
	return out
}

func nicsBodyOf(ns []vm.Interface) []nicBody {
	if ns == nil {
		return nil
	}
	out := make([]nicBody, 0, len(ns))
	for _, n := range ns {
		out = append(out, nicBody(n))
	}
	return out
}

func graphicsBodyOf(g vm.Graphics) *graphicsBody {
	if g == (vm.Graphics{}) {
		return nil
	}
	return &graphicsBody{Type: g.Type, Listen: g.Listen, Password: g.Password}
}

// vmBodyOf is req as the server reads it.
func vmBodyOf(req vm.CreateRequest) vmBody {
	return vmBody{Name: req.Name, Description: req.Description, CPU: cpuBodyOf(req.CPU), Memory: req.MemoryBytes,
		Firmware: req.Firmware, MachineType: req.MachineType, Boot: req.Boot, Disks: disksBodyOf(req.Disks),
		CDROMs: req.CDROMs, Interfaces: nicsBodyOf(req.Interfaces), Graphics: graphicsBodyOf(req.Graphics),
		CloudInit: req.CloudInit}
}

// vmEditBodyOf is req as the server reads it.
func vmEditBodyOf(req vm.EditRequest) vmEditBody {
	b := vmEditBody{Name: req.Name, Description: req.Description, Memory: req.MemoryBytes, Firmware: req.Firmware,
		MachineType: req.MachineType, Boot: req.Boot, CDROMs: req.CDROMs, CloudInit: req.CloudInit}
	if req.CPU != nil {
		c := cpuBodyOf(*req.CPU)
		b.CPU = &c
	}
	if req.Disks != nil {
		d := disksBodyOf(*req.Disks)
		if d == nil {
			d = []diskBody{}
		}
		b.Disks = &d
	}
	if req.Interfaces != nil {
		n := nicsBodyOf(*req.Interfaces)
		if n == nil {
			n = []nicBody{}
		}
		b.Interfaces = &n
	}
	if req.Graphics != nil {
		b.Graphics = &graphicsBody{Type: req.Graphics.Type, Listen: req.Graphics.Listen, Password: req.Graphics.Password}
	}
	return b
}

// stopBodyOf is opts as the server reads it: the timeout in whole seconds, rounded up.
func stopBodyOf(opts vm.StopOptions) stopBody {
	b := stopBody{Force: opts.Force, ForceAfterTimeout: opts.ForceAfterTimeout}
	if opts.Timeout != 0 {
		b.Timeout = int(math.Ceil(opts.Timeout.Seconds()))
		if b.Timeout == 0 {
			b.Timeout = -1 // a negative timeout: let the server refuse it
		}
	}
	return b
}

// ListVMs returns every VM, following the pages.
func (c *Client) ListVMs(ctx context.Context) ([]*vm.VM, error) {
	return listAll[*vm.VM](ctx, c, "/api/v1/vms", nil)
}

// GetVM returns a VM.
func (c *Client) GetVM(ctx context.Context, id uuid.UUID) (*vm.VM, error) {
	return call[vm.VM](ctx, c, request{method: http.MethodGet, path: idPath("vms", id)})
}

// CreateVM defines a VM with existing or new volumes, images as cdroms, interfaces and graphics
// (vm.Service.Create).
func (c *Client) CreateVM(ctx context.Context, req vm.CreateRequest) (*vm.VM, error) {
	return call[vm.VM](ctx, c, request{method: http.MethodPost, path: "/api/v1/vms", body: vmBodyOf(req), idem: true})
}

// CreateVMAsync starts a VM create as an operation (Prefer: respond-async) and returns it at once.
func (c *Client) CreateVMAsync(ctx context.Context, req vm.CreateRequest) (*Operation, error) {
	return c.async(ctx, http.MethodPost, "/api/v1/vms", vmBodyOf(req))
}

// EditVM changes a stopped VM (vm.Service.Edit); nil fields stay as they are, lists given replace the
// current ones.
func (c *Client) EditVM(ctx context.Context, id uuid.UUID, req vm.EditRequest) (*vm.VM, error) {
	return call[vm.VM](ctx, c, request{method: http.MethodPatch, path: idPath("vms", id), body: vmEditBodyOf(req)})
}

// DeleteVM deletes a stopped VM; with opts.DeleteVolumes, also its volumes that no other VM uses.
func (c *Client) DeleteVM(ctx context.Context, id uuid.UUID, opts vm.DeleteOptions) error {
	path := idPath("vms", id)
	if opts.DeleteVolumes {
		path += "?delete_volumes=true"
	}
	_, err := c.do(ctx, request{method: http.MethodDelete, path: path}, nil)
	return err
}

// vmAction runs a POST action on a VM that answers with it.
func (c *Client) vmAction(ctx context.Context, id uuid.UUID, action string, body any) (*vm.VM, error) {
	return call[vm.VM](ctx, c, request{method: http.MethodPost, path: idPath("vms", id) + "/" + action, body: body, idem: true})
}

// StartVM boots a shut-off VM and returns it running. A start the host refuses matches
// openvair.ErrUnrunnable (fix the VM) or openvair.ErrBackendFailed (fix the host), with the cause in the
// *Error's Reason.
func (c *Client) StartVM(ctx context.Context, id uuid.UUID) (*vm.VM, error) {
	return c.vmAction(ctx, id, "start", nil)
}

// StopVM stops a VM: gracefully, waiting up to opts.Timeout (whole seconds, default 60) for the guest, or
// at once with opts.Force. A graceful stop that times out matches openvair.ErrTimeout unless
// opts.ForceAfterTimeout.
func (c *Client) StopVM(ctx context.Context, id uuid.UUID, opts vm.StopOptions) (*vm.VM, error) {
	return c.vmAction(ctx, id, "stop", stopBodyOf(opts))
}

// RebootVM asks a running VM's guest to reboot (ACPI; the guest may ignore it).
func (c *Client) RebootVM(ctx context.Context, id uuid.UUID) (*vm.VM, error) {
	return c.vmAction(ctx, id, "reboot", nil)
}

// ResetVM resets a running VM at once, like a hardware reset button.
func (c *Client) ResetVM(ctx context.Context, id uuid.UUID) (*vm.VM, error) {
	return c.vmAction(ctx, id, "reset", nil)
}

// AttachVolume attaches a volume to a stopped VM on bus ("": virtio).
func (c *Client) AttachVolume(ctx context.Context, vmID, volumeID uuid.UUID, bus string) (*vm.VM, error) {
	body := struct {
		VolumeID uuid.UUID `json:"volume_id"`
		Bus      string    `json:"bus,omitempty"`
	}{volumeID, bus}
	return c.vmAction(ctx, vmID, "volumes", body)
}

// DetachVolume detaches a volume from a stopped VM; the volume is kept.
func (c *Client) DetachVolume(ctx context.Context, vmID, volumeID uuid.UUID) (*vm.VM, error) {
	return call[vm.VM](ctx, c, request{method: http.MethodDelete, path: idPath("vms", vmID) + "/volumes/" + volumeID.String()})
}

// ConsoleLog returns at most max bytes (max <= 0: the server's default, 64 KiB) from the end of what the VM
// wrote on its serial console, kept across boots.
func (c *Client) ConsoleLog(ctx context.Context, id uuid.UUID, max int64) ([]byte, error) {
	path := idPath("vms", id) + "/console/log"
	if max > 0 {
		path += "?" + url.Values{"tail": {strconv.FormatInt(max, 10)}}.Encode()
	}
	var out rawBody
	if _, err := c.do(ctx, request{method: http.MethodGet, path: path, header: http.Header{"Accept": {"text/plain"}}}, &out); err != nil {
		return nil, err
	}
	return out.b, nil
}

// Console is where a running VM's graphical console listens (vm.Service.Console).
type Console = vm.Console

// Console returns where a running VM's graphical console (VNC or SPICE) listens, on the server's host.
func (c *Client) Console(ctx context.Context, id uuid.UUID) (Console, error) {
	out, err := call[Console](ctx, c, request{method: http.MethodGet, path: idPath("vms", id) + "/console"})
	if err != nil {
		return Console{}, err
	}
	return *out, nil
}

// Host is what the hypervisor's host offers to VMs (GET /api/v1/host): the SDK's vm.Service.Host facts.
type Host = driver.HostFacts

// Host reports what the hypervisor's host offers to VMs: domain types, CPU modes and models, machine
// types, firmware, networks and bridges, memory and CPUs.
func (c *Client) Host(ctx context.Context) (*Host, error) {
	return call[Host](ctx, c, request{method: http.MethodGet, path: "/api/v1/host"})
}

// Networks lists what network interfaces can be connected to: the hypervisor's networks (type network)
// and the host's bridges (type bridge).
func (c *Client) Networks(ctx context.Context) ([]vm.Network, error) {
	p, err := call[page[vm.Network]](ctx, c, request{method: http.MethodGet, path: "/api/v1/networks"})
	if err != nil {
		return nil, err
	}
	return p.Items, nil
}

// StartVMAsync starts a VM start as an operation (Prefer: respond-async) and returns it at once.
func (c *Client) StartVMAsync(ctx context.Context, id uuid.UUID) (*Operation, error) {
	return c.async(ctx, http.MethodPost, idPath("vms", id)+"/start", nil)
}

// StopVMAsync starts a VM stop as an operation (Prefer: respond-async) and returns it at once; a running
// vm.stop can be cancelled (CancelOperation), which abandons its wait.
func (c *Client) StopVMAsync(ctx context.Context, id uuid.UUID, opts vm.StopOptions) (*Operation, error) {
	return c.async(ctx, http.MethodPost, idPath("vms", id)+"/stop", stopBodyOf(opts))
}

// DeleteVMAsync starts a VM delete as an operation (Prefer: respond-async) and returns it at once.
func (c *Client) DeleteVMAsync(ctx context.Context, id uuid.UUID, opts vm.DeleteOptions) (*Operation, error) {
	path := idPath("vms", id)
	if opts.DeleteVolumes {
		path += "?delete_volumes=true"
	}
	return c.async(ctx, http.MethodDelete, path, nil)
}
