package refserver

import (
	"context"
	"net/http"
	"regexp"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"
	"github.com/openvair/openvair/vm"
)

type vmOutput struct {
	Location string `header:"Location" doc:"Set on create."`
	ETag     string `header:"ETag" doc:"The VM's version as a strong entity tag (\"3\"), for If-Match and If-None-Match."`
	Body     *VM
}

func vmResp(v *vm.VM) *vmOutput {
	return &vmOutput{ETag: etag(v.Version), Body: vmOut(v)}
}

// VMPage is one page of VMs; next_cursor is absent on the last page.
type VMPage struct {
	Items      []*VM  `json:"items" nullable:"false"`
	NextCursor string `json:"next_cursor,omitempty"`
}

type vmPageOutput struct{ Body VMPage }

type listVMsInput struct {
	Limit      int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Page size, 1 to 1000 (default 100)."`
	Cursor     string `query:"cursor" maxLength:"64" doc:"The next_cursor of the previous page."`
	Status     string `query:"status" enum:"creating,available,starting,stopping,editing,deleting,error" doc:"Only VMs with this status."`
	PowerState string `query:"power_state" enum:"shut_off,running,paused,shutting_down,crashed,missing" doc:"Only VMs in this power state."`
	Name       string `query:"name" maxLength:"255" doc:"Only the VM with this name."`
}

type createVMInput struct{ Body VMCreate }

type editVMInput struct {
	ID   string `path:"id" format:"uuid" doc:"The entity's id."`
	Body VMEdit
}

type deleteVMInput struct {
	ID            string `path:"id" format:"uuid" doc:"The entity's id."`
	DeleteVolumes bool   `query:"delete_volumes" doc:"Also delete the VM's volumes that no other VM uses."`
}

type stopVMInput struct {
	ID   string  `path:"id" format:"uuid" doc:"The entity's id."`
	Body *VMStop `required:"false"`
}

type attachVolumeInput struct {
	ID   string `path:"id" format:"uuid" doc:"The entity's id."`
	Body VolumeAttach
}

type detachVolumeInput struct {
	ID       string `path:"id" format:"uuid" doc:"The entity's id."`
	VolumeID string `path:"volume_id" format:"uuid"`
}

type consoleOutput struct{ Body Console }

type consoleLogInput struct {
	ID   string `path:"id" format:"uuid" doc:"The entity's id."`
	Tail int64  `query:"tail" minimum:"1" maximum:"16777216" default:"65536" doc:"At most this many bytes from the end of the log (default 64 KiB)."`
}

type consoleLogOutput struct {
	ContentType string `header:"Content-Type"`
	Body        []byte `contentType:"text/plain"`
}

// vmWriteErrs are the errors of an operation that changes a VM's definition: the store, new volumes
// (413 when a storage has no room) and the hypervisor (422 unrunnable, 502, 503, 504) may refuse it.
var vmWriteErrs = []int{http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusRequestEntityTooLarge,
	http.StatusUnprocessableEntity, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}

// diskField matches the SDK's name of a field of one disk of a VM.
var diskField = regexp.MustCompile(`^disks\[\d+\]\.(.+)$`)

func (s *server) registerVMs(api huma.API) {
	const tag = "vms"
	svc := s.sys.VMs
	// vmOp registers an operation on one VM that returns it.
	vmOp := func(o huma.Operation, call func(ctx context.Context, id uuid.UUID) (*vm.VM, error)) {
		huma.Register(api, o, func(ctx context.Context, in *idInput) (*vmOutput, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*vmOutput, error) {
				v, err := call(ctx, id)
				if err != nil {
					return nil, err
				}
				return vmResp(v), nil
			})
		})
	}

	huma.Register(api, s.op(http.MethodGet, "/api/v1/vms", "listVMs", "List VMs", tag),
		func(ctx context.Context, in *listVMsInput) (*vmPageOutput, error) {
			page, err := svc.List(ctx, vm.ListOptions{Limit: in.Limit, Cursor: in.Cursor, Status: vm.Status(in.Status),
				PowerState: vm.PowerState(in.PowerState), Name: in.Name})
			if err != nil {
				return nil, s.problemOf(ctx, locateFields(err, inQuery))
			}
			out := &vmPageOutput{Body: VMPage{Items: make([]*VM, 0, len(page.Items)), NextCursor: page.NextCursor}}
			for _, v := range page.Items {
				out.Body.Items = append(out.Body.Items, vmOut(v))
			}
			return out, nil
		})

	huma.Register(api, created(s.op(http.MethodPost, "/api/v1/vms", "createVM",
		"Define a VM with existing or new volumes, images as cdroms, interfaces and graphics", tag, vmWriteErrs...)),
		func(ctx context.Context, in *createVMInput) (*vmOutput, error) {
			v, err := svc.Create(ctx, in.Body.request())
			if err != nil {
				return nil, s.fail(ctx, err)
			}
			out := vmResp(v)
			out.Location = s.location("vms", v.ID)
			return out, nil
		})

	vmOp(s.op(http.MethodGet, "/api/v1/vms/{id}", "getVM", "Get a VM", tag, http.StatusNotFound),
		svc.Get)

	huma.Register(api, s.op(http.MethodPatch, "/api/v1/vms/{id}", "editVM", "Change a stopped VM", tag, vmWriteErrs...),
		func(ctx context.Context, in *editVMInput) (*vmOutput, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*vmOutput, error) {
				v, err := svc.Edit(ctx, id, in.Body.request())
				if err != nil {
					return nil, err
				}
				return vmResp(v), nil
			})
		})

	huma.Register(api, noContent(s.op(http.MethodDelete, "/api/v1/vms/{id}", "deleteVM", "Delete a stopped VM", tag,
		vmWriteErrs...)),
		func(ctx context.Context, in *deleteVMInput) (*struct{}, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*struct{}, error) {
				if err := svc.Delete(ctx, id, vm.DeleteOptions{DeleteVolumes: in.DeleteVolumes}); err != nil {
					return nil, err
				}
				return nil, nil
			})
		})

	powerErrs := []int{http.StatusNotFound, http.StatusConflict, http.StatusServiceUnavailable, http.StatusGatewayTimeout,
		http.StatusBadGateway}
	start := s.op(http.MethodPost, "/api/v1/vms/{id}/start", "startVM", "Start a VM", tag,
		append(powerErrs, http.StatusUnprocessableEntity)...)
	start.Description = "Boots a shut-off VM. A start the hypervisor refuses answers by cause: 422 kind unrunnable when the " +
		"VM's definition cannot run on this host (a CPU mode or model, firmware, machine or domain type the host does not " +
		"offer: fix the VM), 502 kind backend_failed when QEMU itself failed (a file it cannot open, an NFS server refusing " +
		"its access, QEMU exiting at once: fix the host or storage), 503 only when the hypervisor cannot be reached now " +
		"(retry later). The problem's reason names the cause (cpu, firmware, machine, domain_type, file_access, nfs_access, " +
		"qemu_exited) and its detail carries the hypervisor's message."
	vmOp(start, svc.Start)
	vmOp(s.op(http.MethodPost, "/api/v1/vms/{id}/reboot", "rebootVM",
		"Ask a running VM's guest to reboot (ACPI; a guest may ignore it: see reset)", tag, powerErrs...),
		svc.Reboot)
	vmOp(s.op(http.MethodPost, "/api/v1/vms/{id}/reset", "resetVM",
		"Reset a running VM at once, like a hardware reset button (the guest is not asked)", tag, powerErrs...),
		svc.Reset)

	huma.Register(api, s.op(http.MethodPost, "/api/v1/vms/{id}/stop", "stopVM",
		"Stop a VM: gracefully (waiting up to timeout seconds) or, with force, at once", tag, powerErrs...),
		func(ctx context.Context, in *stopVMInput) (*vmOutput, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*vmOutput, error) {
				var opts vm.StopOptions
				if in.Body != nil {
					opts = vm.StopOptions{Force: in.Body.Force, Timeout: time.Duration(in.Body.Timeout) * time.Second,
						ForceAfterTimeout: in.Body.ForceAfterTimeout}
				}
				v, err := svc.Stop(ctx, id, opts)
				if err != nil {
					return nil, err
				}
				return vmResp(v), nil
			})
		})

	huma.Register(api, admin(s.op(http.MethodGet, "/api/v1/vms/{id}/console", "getVMConsole",
		"Where a running VM's graphical console listens (role admin)", tag, http.StatusNotFound, http.StatusConflict,
		http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout)),
		func(ctx context.Context, in *idInput) (*consoleOutput, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*consoleOutput, error) {
				c, err := svc.Console(ctx, id)
				if err != nil {
					return nil, err
				}
				return &consoleOutput{Body: Console(c)}, nil
			})
		})

	huma.Register(api, admin(s.op(http.MethodGet, "/api/v1/vms/{id}/console/log", "getVMConsoleLog",
		"What the VM wrote on its serial console (boot messages, a kernel panic), kept across boots (role admin)", tag,
		http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusServiceUnavailable, http.StatusBadGateway,
		http.StatusGatewayTimeout)),
		func(ctx context.Context, in *consoleLogInput) (*consoleLogOutput, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*consoleLogOutput, error) {
				b, err := svc.ConsoleLog(ctx, id, in.Tail)
				if err != nil {
					return nil, err
				}
				return &consoleLogOutput{ContentType: "text/plain; charset=utf-8", Body: b}, nil
			})
		})

	huma.Register(api, s.op(http.MethodPost, "/api/v1/vms/{id}/volumes", "attachVolume", "Attach a volume to a stopped VM", tag,
		vmWriteErrs...),
		func(ctx context.Context, in *attachVolumeInput) (*vmOutput, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*vmOutput, error) {
				v, err := svc.AttachVolume(ctx, id, in.Body.VolumeID, in.Body.Bus)
				if err != nil {
					// The SDK validates the VM's new disk list; the client sent one disk's fields.
					return nil, locateFields(err, func(f string) string {
						if m := diskField.FindStringSubmatch(f); m != nil {
							return "body." + m[1]
						}
						return "body"
					})
				}
				return vmResp(v), nil
			})
		})

	huma.Register(api, s.op(http.MethodDelete, "/api/v1/vms/{id}/volumes/{volume_id}", "detachVolume",
		"Detach a volume from a stopped VM (the volume is kept)", tag, vmWriteErrs...),
		func(ctx context.Context, in *detachVolumeInput) (*vmOutput, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*vmOutput, error) {
				vid, err := parseID(in.VolumeID)
				if err != nil {
					return nil, err
				}
				v, err := svc.DetachVolume(ctx, id, vid)
				if err != nil {
					return nil, err
				}
				return vmResp(v), nil
			})
		})
}
