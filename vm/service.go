package vm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/deadline"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/fsm"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/internal/revert"
	"github.com/openvair/openvair/internal/uow"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
)

// Repository persists VMs with their disks and cdroms. Implementations enforce unique names and unique
// MAC addresses across VMs (errkind.AlreadyExists), refuse an Update whose Version is not the stored one
// (errkind.Conflict) and bump the Version of the value passed to a successful Update.
type Repository interface {
	Get(ctx context.Context, id uuid.UUID) (*VM, error)
	List(ctx context.Context, opts ListOptions) (Page, error)
	Create(ctx context.Context, v *VM) error
	Update(ctx context.Context, v *VM) error
	Delete(ctx context.Context, id uuid.UUID) error
}

// Transactor runs fn as one unit of work (see storage.Transactor).
type Transactor interface {
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
}

// VolumeReader reads volumes, StorageReader storages, ImageReader images.
type (
	VolumeReader interface {
		Get(ctx context.Context, id uuid.UUID) (*volume.Volume, error)
	}
	StorageReader interface {
		Get(ctx context.Context, id uuid.UUID) (*storage.Storage, error)
	}
	ImageReader interface {
		Get(ctx context.Context, id uuid.UUID) (*image.Image, error)
	}
)

// Volumes creates and deletes the volumes a VM is created or deleted with (the volume service).
type Volumes interface {
	Create(ctx context.Context, req volume.CreateRequest) (*volume.Volume, error)
	Delete(ctx context.Context, id uuid.UUID) error
}

// Locator tells where the hypervisor finds a volume or image of a storage.
type Locator interface {
	DiskSource(pool driver.PoolSpec, kind driver.ObjectKind, id uuid.UUID) (driver.DiskSource, error)
}

// Hypervisor is what the VM service needs from a hypervisor driver.
type Hypervisor interface {
	// Info tells what the hypervisor can do; the service refuses what it cannot before any I/O.
	Info() driver.HypervisorInfo
	Define(ctx context.Context, spec driver.DomainSpec) error
	Undefine(ctx context.Context, id uuid.UUID) error
	Start(ctx context.Context, id uuid.UUID) error
	Shutdown(ctx context.Context, id uuid.UUID) error
	Destroy(ctx context.Context, id uuid.UUID) error
	Reboot(ctx context.Context, id uuid.UUID) error
	Reset(ctx context.Context, id uuid.UUID) error
	State(ctx context.Context, id uuid.UUID) (driver.DomainState, error)
	Console(ctx context.Context, id uuid.UUID) (driver.Console, error)
}

// Secrets keeps graphics passwords encrypted at rest (see internal/secret): Seal before a password is
// stored, Open before it goes to the hypervisor. Open returns a value that was never sealed as it is.
type Secrets interface {
	Seal(plain string) (string, error)
	Open(sealed string) (string, error)
}

// Deps are the collaborators of a VM service.
type Deps struct {
	Repo       Repository
	Tx         Transactor
	Volumes    VolumeReader
	Storages   StorageReader
	Images     ImageReader
	VolumeSvc  Volumes
	Locator    Locator
	Hypervisor Hypervisor // nil: no hypervisor configured, VM operations fail with errkind.Unavailable
	Secrets    Secrets    // nil: graphics passwords are stored as given
	Seeds      Seeds      // nil: cloud-init is ErrUnsupported
}

// Service holds the VM rules.
type Service struct {
	d Deps // the collaborators, given to NewService
	// OpTimeout bounds each hypervisor call that has no earlier deadline.
	OpTimeout time.Duration
	// DefaultStopTimeout is how long a graceful stop waits when the caller gives no timeout.
	DefaultStopTimeout time.Duration
	// PollInterval is how often a graceful stop checks the power state.
	PollInterval time.Duration
	// defaultCPU is the CPU mode and model of a VM created without a mode (host-model unless SetDefaultCPU
	// says otherwise).
	defaultCPU CPU
	Log        *slog.Logger
	now        func() time.Time
	live       liveness
	ops        *operation.Service
}

// Option configures a Service at construction (WithOperations).
type Option = func(*Service)

// configure applies the options and registers the operation kinds when the service records operations.
func (s *Service) configure(opts []Option) *Service {
	return operation.Configure(s, opts, func() *operation.Service { return s.ops }, s.registerOperations)
}

// NewService returns a VM service.
func NewService(d Deps, opts ...Option) *Service {
	return (&Service{d: d, OpTimeout: 2 * time.Minute, DefaultStopTimeout: time.Minute, PollInterval: 250 * time.Millisecond,
		defaultCPU: CPU{Mode: CPUHostModel}, Log: slog.Default(), now: time.Now}).configure(opts)
}

// Get returns a VM by id.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (*VM, error) {
	v, err := s.d.Repo.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.live.annotate(v), nil
}

// List returns a page of VMs.
func (s *Service) List(ctx context.Context, opts ListOptions) (Page, error) {
	if err := opts.validate(); err != nil {
		return Page{}, err
	}
	page, err := s.d.Repo.List(ctx, opts)
	for _, v := range page.Items {
		s.live.annotate(v)
	}
	return page, err
}

func (s *Service) hypervisor() (Hypervisor, error) {
	if s.d.Hypervisor == nil {
		return nil, errkind.New(errkind.Unavailable, "vm", "", "no hypervisor is configured")
	}
	return s.d.Hypervisor, nil
}

// call runs a hypervisor call with the operation deadline.
func (s *Service) call(ctx context.Context, fn func(ctx context.Context) error) error {
	ctx, cancel := deadline.Ensure(ctx, s.OpTimeout)
	defer cancel()
	return fn(ctx)
}

// create defines a new VM: it creates the volumes asked for, attaches them with the existing volumes and
// images, and defines the domain. Everything is undone when a step fails.
func (s *Service) create(ctx context.Context, req CreateRequest) (*VM, error) {
	sp, err := s.createSpec(req)
	if err != nil {
		return nil, err
	}
	hv, err := s.hypervisor()
	if err != nil {
		return nil, err
	}
	if err := supported(hv.Info(), sp.Firmware, sp.Graphics.Type); err != nil {
		return nil, err
	}
	rev := &revert.Reverter{}
	defer rev.Fail(ctx)
	s.ops.Step(ctx, 1, 3, "creating the volumes")
	if err := s.createVolumes(ctx, rev, sp.Disks); err != nil {
		return nil, err
	}
	s.ops.Step(ctx, 2, 3, "recording the VM")
	now := s.now().UTC()
	v := &VM{ID: uuid.Must(uuid.NewV7()), Status: StatusCreating, PowerState: PowerShutOff, PowerStateObservedAt: now,
		CreatedAt: now, UpdatedAt: now}
	sp.assign(v)
	if err := s.sealPassword(v); err != nil {
		return nil, err
	}
	for i := range v.Interfaces {
		if v.Interfaces[i].MAC == "" {
			v.Interfaces[i].MAC = newMAC()
		}
	}
	if req.CloudInit != nil {
		ci, err := s.writeSeed(ctx, v, *req.CloudInit)
		if err != nil {
			return nil, err
		}
		v.CloudInit = ci
		rev.Add(func(ctx context.Context) { s.deleteSeed(ctx, v.ID, ci) })
	}
	err = s.d.Tx.InTx(ctx, func(ctx context.Context) error {
		if err := s.checkAttachable(ctx, v, nil); err != nil {
			return err
		}
		if err := s.ops.SetTarget(ctx, v.ID); err != nil {
			return err
		}
		return s.d.Repo.Create(ctx, v)
	})
	if err != nil {
		return nil, err
	}
	rev.Add(func(ctx context.Context) { s.logErr("remove VM of a failed create", v.ID, s.d.Repo.Delete(ctx, v.ID)) })
	s.ops.Step(ctx, 3, 3, "defining the domain")
	if err := s.define(ctx, hv, v); err != nil {
		return nil, err
	}
	rev.Add(func(ctx context.Context) {
		s.logErr("undefine VM of a failed create", v.ID, s.call(ctx, func(ctx context.Context) error { return hv.Undefine(ctx, v.ID) }))
	})
	out, err := s.update(context.WithoutCancel(ctx), v.ID, func(_ context.Context, cur *VM) error {
		// Observed now, after the domain exists: a resync that listed the domains before it was defined
		// must not mark it missing.
		cur.observe(driver.DomainState{Power: PowerShutOff}, s.now().UTC())
		return cur.SetStatus(StatusAvailable, "")
	})
	if err != nil {
		return nil, err
	}
	rev.Success()
	return out, nil
}

// createSpec checks a create request and returns its spec, with the default CPU filled in.
func (s *Service) createSpec(req CreateRequest) (spec, error) {
	sp := req.spec()
	if sp.CPU.Mode == "" {
		sp.CPU.Mode, sp.CPU.Model = s.defaultCPU.Mode, s.defaultCPU.Model
	}
	sp.normalize()
	return sp, sp.validate()
}

// assign copies the spec into v; disks must have been resolved to volume ids.
func (sp *spec) assign(v *VM) {
	v.Name, v.Description, v.CPU, v.MemoryBytes = sp.Name, sp.Description, sp.CPU, sp.MemoryBytes
	v.Firmware, v.MachineType, v.Boot = sp.Firmware, sp.MachineType, sp.Boot
	v.Disks = make([]Disk, len(sp.Disks))
	for i, d := range sp.Disks {
		v.Disks[i] = d.disk(d.VolumeID)
	}
	v.CDROMs, v.Interfaces, v.Graphics = sp.CDROMs, sp.Interfaces, sp.Graphics
}

// createVolumes creates the volumes the disk list asks for and rewrites those entries to their ids.
func (s *Service) createVolumes(ctx context.Context, rev *revert.Reverter, disks []DiskRequest) error {
	for i := range disks {
		if disks[i].New == nil {
			continue
		}
		vol, err := s.d.VolumeSvc.Create(ctx, *disks[i].New)
		if err != nil {
			return fmt.Errorf("disks[%d]: %w", i, err)
		}
		rev.Add(func(ctx context.Context) {
			s.logErr("remove volume of a failed VM operation", vol.ID, s.d.VolumeSvc.Delete(ctx, vol.ID))
		})
		disks[i].VolumeID, disks[i].New = vol.ID, nil
	}
	return nil
}

// checkAttachable checks, inside a unit of work, that v may use its volumes and images: each exists and is
// available, a volume belongs to no other VM unless it is shareable. prev is the VM before an edit (its
// volumes and images are already attached).
func (s *Service) checkAttachable(ctx context.Context, v *VM, prev *VM) error {
	for i, d := range v.Disks {
		if prev != nil && prev.HasVolume(d.VolumeID) {
			continue
		}
		vol, err := s.d.Volumes.Get(ctx, d.VolumeID)
		if err != nil {
			return fmt.Errorf("disks[%d]: %w", i, err)
		}
		if err := fsm.Require("volume", vol.ID.String(), "attach", vol.Status, volume.StatusAvailable); err != nil {
			return err
		}
		for _, a := range vol.Attachments {
			if a.VMID == v.ID {
				return errkind.New(errkind.AlreadyExists, "volume", vol.ID.String(), "already attached to this VM")
			}
			if !vol.Shareable {
				return errkind.InUseBy("volume", vol.ID.String(), fmt.Sprintf("attached to VM %q and not shareable", a.VMName),
					[]errkind.Ref{{Kind: "vm", ID: a.VMID.String(), Name: a.VMName}})
			}
		}
	}
	for i, c := range v.CDROMs {
		if prev != nil && prev.HasImage(c.ImageID) {
			continue
		}
		img, err := s.d.Images.Get(ctx, c.ImageID)
		if err != nil {
			return fmt.Errorf("cdroms[%d]: %w", i, err)
		}
		if err := fsm.Require("image", img.ID.String(), "attach", img.Status, image.StatusAvailable); err != nil {
			return err
		}
	}
	return nil
}

// HasImage reports whether the VM uses the image as a cdrom.
func (v *VM) HasImage(id uuid.UUID) bool {
	for _, c := range v.CDROMs {
		if c.ImageID == id {
			return true
		}
	}
	return false
}

// sealPassword encrypts v's graphics password for storage (a password already sealed stays as it is).
func (s *Service) sealPassword(v *VM) error {
	if s.d.Secrets == nil {
		return nil
	}
	sealed, err := s.d.Secrets.Seal(v.Graphics.Password)
	if err != nil {
		return fmt.Errorf("seal the graphics password: %w", err)
	}
	v.Graphics.Password = sealed
	return nil
}

// define builds the domain spec of v and defines it.
func (s *Service) define(ctx context.Context, hv Hypervisor, v *VM) error {
	spec, err := s.domainSpec(ctx, v)
	if err != nil {
		return err
	}
	return s.call(ctx, func(ctx context.Context) error { return hv.Define(ctx, spec) })
}

// domainSpec translates a VM into what the hypervisor needs, locating every disk on its storage.
func (s *Service) domainSpec(ctx context.Context, v *VM) (driver.DomainSpec, error) {
	spec := driver.DomainSpec{ID: v.ID, Name: v.Name, Description: v.Description,
		CPU:         driver.CPUSpec{Sockets: v.CPU.Sockets, Cores: v.CPU.Cores, Threads: v.CPU.Threads, Mode: v.CPU.Mode, Model: v.CPU.Model},
		MemoryBytes: v.MemoryBytes, Firmware: v.Firmware, MachineType: v.MachineType, Boot: v.Boot,
		Graphics: driver.GraphicsSpec{Type: v.Graphics.Type, Listen: v.Graphics.Listen}}
	if s.d.Secrets != nil {
		pw, err := s.d.Secrets.Open(v.Graphics.Password)
		if err != nil {
			return spec, errkind.Wrap(errkind.Invalid, err, "vm", v.ID.String(), "graphics password cannot be read; set it again")
		}
		spec.Graphics.Password = pw
	} else {
		spec.Graphics.Password = v.Graphics.Password
	}
	if spec.Graphics.Type == "none" {
		spec.Graphics = driver.GraphicsSpec{}
	}
	for _, d := range v.Disks {
		vol, err := s.d.Volumes.Get(ctx, d.VolumeID)
		if err != nil {
			return spec, err
		}
		src, err := s.locate(ctx, vol.StorageID, driver.KindVolume, vol.ID)
		if err != nil {
			return spec, err
		}
		spec.Disks = append(spec.Disks, driver.DiskSpec{Device: "disk", Bus: d.Bus, Format: vol.Format, ReadOnly: vol.ReadOnly,
			Source: src, BootOrder: d.BootOrder, ReadIOPS: d.ReadIOPS, WriteIOPS: d.WriteIOPS, ReadBytes: d.ReadBytes, WriteBytes: d.WriteBytes})
	}
	for _, c := range v.CDROMs {
		img, err := s.d.Images.Get(ctx, c.ImageID)
		if err != nil {
			return spec, err
		}
		src, err := s.locate(ctx, img.StorageID, driver.KindImage, img.ID)
		if err != nil {
			return spec, err
		}
		format := driver.FormatRaw
		if img.Format == image.FormatQCOW2 {
			format = driver.FormatQCOW2
		}
		spec.Disks = append(spec.Disks, driver.DiskSpec{Device: "cdrom", Bus: "sata", Format: format, ReadOnly: true, Source: src, BootOrder: c.BootOrder})
	}
	if v.CloudInit != nil {
		d, err := s.seedDisk(ctx, v.CloudInit)
		if err != nil {
			return spec, err
		}
		spec.Disks = append(spec.Disks, d)
	}
	for _, n := range v.Interfaces {
		spec.Interfaces = append(spec.Interfaces, driver.NICSpec{Type: n.Type, Source: n.Source, Model: n.Model, MAC: n.MAC})
	}
	return spec, nil
}

// supported refuses a firmware or graphics type the hypervisor does not declare (ErrUnsupported naming the
// capability).
func supported(info driver.HypervisorInfo, firmware, graphics string) error {
	caps := info.Capabilities
	if firmware == "uefi" && !caps.UEFI {
		return errkind.New(errkind.Unsupported, "vm", "", "hypervisor %s has no UEFI firmware (capability uefi)", info.Name)
	}
	if graphics != "" && graphics != "none" && !slices.Contains(caps.Graphics, graphics) {
		return errkind.New(errkind.Unsupported, "vm", "", "hypervisor %s offers no %s graphics (capability graphics: %v)",
			info.Name, graphics, caps.Graphics)
	}
	return nil
}

func (s *Service) locate(ctx context.Context, storageID uuid.UUID, kind driver.ObjectKind, id uuid.UUID) (driver.DiskSource, error) {
	st, err := s.d.Storages.Get(ctx, storageID)
	if err != nil {
		return driver.DiskSource{}, err
	}
	src, err := s.d.Locator.DiskSource(st.Pool(), kind, id)
	if err == nil && src.Type == "network" && src.Protocol == "nfs" && s.d.Hypervisor != nil && !s.d.Hypervisor.Info().Capabilities.NFSDisks {
		return src, errkind.New(errkind.Unsupported, "storage", storageID.String(),
			"hypervisor %s cannot open disks on NFS storage %q directly (capability nfs_disks)", s.d.Hypervisor.Info().Name, st.Name)
	}
	return src, err
}

// editRequest changes a VM that is shut off. Volumes asked for with New are created; the domain is redefined;
// when a step fails, the VM and its domain stay as they were.
func (s *Service) editRequest(ctx context.Context, id uuid.UUID, req EditRequest) (*VM, error) {
	return s.edit(ctx, id, func(*VM) (EditRequest, error) { return req, nil })
}

// attachVolume attaches an existing volume to a VM that is shut off.
func (s *Service) attachVolume(ctx context.Context, id, volumeID uuid.UUID, bus string) (*VM, error) {
	return s.edit(ctx, id, func(cur *VM) (EditRequest, error) {
		if cur.HasVolume(volumeID) {
			return EditRequest{}, errkind.New(errkind.AlreadyExists, "vm", id.String(), "volume %s is already attached", volumeID)
		}
		disks := append(specOf(cur).Disks, DiskRequest{VolumeID: volumeID, Bus: bus})
		return EditRequest{Disks: &disks}, nil
	})
}

// detachVolume detaches a volume from a VM that is shut off; the volume is kept.
func (s *Service) detachVolume(ctx context.Context, id, volumeID uuid.UUID) (*VM, error) {
	return s.edit(ctx, id, func(cur *VM) (EditRequest, error) {
		if !cur.HasVolume(volumeID) {
			return EditRequest{}, errkind.New(errkind.NotFound, "vm", id.String(), "volume %s is not attached", volumeID)
		}
		disks := []DiskRequest{}
		for _, d := range specOf(cur).Disks {
			if d.VolumeID != volumeID {
				disks = append(disks, d)
			}
		}
		return EditRequest{Disks: &disks}, nil
	})
}

// edit runs an edit whose request is computed from the VM as it is when the edit claims it (so that
// attach and detach never drop a concurrent change).
func (s *Service) edit(ctx context.Context, id uuid.UUID, compute func(cur *VM) (EditRequest, error)) (*VM, error) {
	hv, err := s.hypervisor()
	if err != nil {
		return nil, err
	}
	var (
		prev *VM
		req  EditRequest
	)
	err = s.d.Tx.InTx(ctx, func(ctx context.Context) error {
		cur, err := s.d.Repo.Get(ctx, id)
		if err != nil {
			return err
		}
		if err := requireStopped(cur, "edit"); err != nil {
			return err
		}
		if req, err = compute(cur); err != nil {
			return err
		}
		sp := specOf(cur)
		req.apply(&sp)
		sp.normalize()
		if err := sp.validate(); err != nil {
			return err
		}
		if err := supported(hv.Info(), sp.Firmware, sp.Graphics.Type); err != nil {
			return err
		}
		if err := cur.SetStatus(StatusEditing, ""); err != nil {
			return err
		}
		prev = cur.Clone()
		return s.d.Repo.Update(ctx, cur)
	})
	if err != nil {
		return nil, err
	}
	if err := s.confirmStopped(ctx, hv, id, "edit"); err != nil {
		return nil, err
	}
	rev := &revert.Reverter{}
	defer rev.Fail(ctx)
	// Whatever happens next, the VM leaves editing: as edited on success, as it was otherwise.
	rev.Add(func(ctx context.Context) {
		_, err := s.update(ctx, id, func(_ context.Context, cur *VM) error { return cur.SetStatus(StatusAvailable, "") })
		s.logErr("end a failed edit", id, err)
	})
	sp := specOf(prev)
	req.apply(&sp)
	sp.normalize()
	if err := s.createVolumes(ctx, rev, sp.Disks); err != nil {
		return nil, err
	}
	next := prev.Clone()
	sp.assign(next)
	if err := s.sealPassword(next); err != nil {
		return nil, err
	}
	for i := range next.Interfaces {
		if next.Interfaces[i].MAC == "" {
			next.Interfaces[i].MAC = newMAC()
		}
	}
	if req.CloudInit != nil { // a new seed beside the old one; the old one goes once the edit is done
		ci, err := s.writeSeed(ctx, next, *req.CloudInit)
		if err != nil {
			return nil, err
		}
		next.CloudInit = ci
		rev.Add(func(ctx context.Context) { s.deleteSeed(ctx, id, ci) })
	}
	if err := s.d.Tx.InTx(ctx, func(ctx context.Context) error { return s.checkAttachable(ctx, next, prev) }); err != nil {
		return nil, err
	}
	if err := s.define(ctx, hv, next); err != nil {
		return nil, err
	}
	rev.Add(func(ctx context.Context) {
		s.logErr("restore the domain of a failed edit", id, s.define(ctx, hv, prev))
	})
	out, err := s.update(context.WithoutCancel(ctx), id, func(ctx context.Context, cur *VM) error {
		if err := s.checkAttachable(ctx, next, prev); err != nil {
			return err
		}
		keep := *cur
		*cur = *next.Clone()
		cur.Status, cur.Version = keep.Status, keep.Version
		cur.PowerState, cur.PowerStateReason, cur.PowerStateObservedAt = keep.PowerState, keep.PowerStateReason, keep.PowerStateObservedAt
		return cur.SetStatus(StatusAvailable, "")
	})
	if err != nil {
		return nil, err
	}
	rev.Success()
	if req.CloudInit != nil {
		s.deleteSeed(context.WithoutCancel(ctx), id, prev.CloudInit)
	}
	return out, nil
}

// confirmStopped asks the hypervisor, after the VM was claimed for op, whether its domain really is off (the
// stored power state may lag behind an event). When it runs, the claim is released with the observed power
// state and op is refused.
func (s *Service) confirmStopped(ctx context.Context, hv Hypervisor, id uuid.UUID, op string) error {
	st, err := s.state(ctx, hv, id)
	if err == nil && (st.Power == PowerShutOff || st.Power == PowerCrashed || st.Power == PowerMissing) {
		return nil
	}
	_, uerr := s.update(context.WithoutCancel(ctx), id, func(_ context.Context, cur *VM) error {
		if err == nil {
			cur.observe(st, s.now().UTC())
		}
		return cur.SetStatus(StatusAvailable, "")
	})
	s.logErr("release a refused "+op, id, uerr)
	if err != nil {
		return fmt.Errorf("%s vm %s: checking its power state: %w", op, id, err)
	}
	return errkind.New(errkind.WrongState, "vm", id.String(), "cannot %s: the hypervisor reports it %s; stop it first", op, st.Power)
}

// state asks the hypervisor for a domain's power state, with the operation deadline.
func (s *Service) state(ctx context.Context, hv Hypervisor, id uuid.UUID) (driver.DomainState, error) {
	var st driver.DomainState
	err := s.call(ctx, func(ctx context.Context) (err error) { st, err = hv.State(ctx, id); return err })
	return st, err
}

func requireStopped(v *VM, op string) error {
	if err := fsm.Require("vm", v.ID.String(), op, v.Status, StatusAvailable, StatusError); err != nil {
		return err
	}
	if !v.PowerState.UsesDisks() {
		return nil
	}
	return errkind.New(errkind.WrongState, "vm", v.ID.String(), "cannot %s while power state is %q; stop it first", op, v.PowerState)
}

// delete removes a VM that is shut off: it undefines the domain, detaches its volumes and images and, when
// asked, deletes the volumes no other VM uses. The VM is gone when Delete returns nil; an error about
// volumes that could not be deleted is returned after the VM itself is deleted.
func (s *Service) delete(ctx context.Context, id uuid.UUID, opts DeleteOptions) error {
	hv, err := s.hypervisor()
	if err != nil {
		return err
	}
	var v *VM
	err = s.d.Tx.InTx(ctx, func(ctx context.Context) error {
		cur, err := s.d.Repo.Get(ctx, id)
		if err != nil {
			return err
		}
		if err := requireStopped(cur, "delete"); err != nil {
			return err
		}
		if err := cur.SetStatus(StatusDeleting, ""); err != nil {
			return err
		}
		v = cur
		return s.d.Repo.Update(ctx, cur)
	})
	if err != nil {
		return err
	}
	if err := s.confirmStopped(ctx, hv, id, "delete"); err != nil {
		return err
	}
	if err := s.call(ctx, func(ctx context.Context) error { return hv.Undefine(ctx, id) }); err != nil {
		s.fail(context.WithoutCancel(ctx), id, "delete failed: "+err.Error())
		return fmt.Errorf("undefine vm %q: %w", v.Name, err)
	}
	ctx = context.WithoutCancel(ctx)
	if err := s.d.Repo.Delete(ctx, id); err != nil {
		return err
	}
	s.deleteSeed(ctx, id, v.CloudInit)
	if !opts.DeleteVolumes {
		return nil
	}
	var errs []error
	for _, d := range v.Disks {
		if err := s.d.VolumeSvc.Delete(ctx, d.VolumeID); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", d.VolumeID, err))
		}
	}
	return errors.Join(errs...)
}

// fail leaves the VM in error with reason.
func (s *Service) fail(ctx context.Context, id uuid.UUID, reason string) {
	_, err := s.update(ctx, id, func(_ context.Context, cur *VM) error { return cur.SetStatus(StatusError, reason) })
	s.logErr("record failure: "+reason, id, err)
}

func (s *Service) logErr(what string, id uuid.UUID, err error) {
	if err != nil {
		s.Log.Error("vm: "+what, "id", id, "err", err)
	}
}

// update applies fn to the current VM inside a unit of work and stores it.
func (s *Service) update(ctx context.Context, id uuid.UUID, fn func(ctx context.Context, cur *VM) error) (*VM, error) {
	v, err := uow.Update(ctx, s.d.Tx, s.d.Repo.Get, s.d.Repo.Update, id, func(ctx context.Context, cur *VM) error {
		if err := fn(ctx, cur); err != nil {
			return err
		}
		cur.UpdatedAt = s.now().UTC()
		return nil
	})
	if v != nil {
		s.live.annotate(v)
	}
	return v, err
}
