package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/cmd/openvair/internal/output"
	"github.com/openvair/openvair/cmd/openvair/internal/units"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// The human views of the entities: a table for lists, fields for one entity. Column order is fixed.

func size(n int64) string { return units.FormatSize(n) }

func idOrDash(id uuid.UUID) string {
	if id == uuid.Nil {
		return ""
	}
	return id.String()
}

func storageTable(all []*storage.Storage) *output.TableView {
	t := output.NewTable("ID", "NAME", "TYPE", "STATUS", "CAPACITY", "AVAILABLE", "LOCATION")
	for _, s := range all {
		t.Add(s.ID.String(), s.Name, string(s.Type), string(s.Status), size(s.Capacity), size(s.Available), s.Location)
	}
	return t
}

func storageFields(s *storage.Storage) output.FieldsView {
	return output.FieldsView{
		{Key: "id", Value: s.ID.String()}, {Key: "name", Value: s.Name}, {Key: "description", Value: s.Description},
		{Key: "type", Value: string(s.Type)}, {Key: "config", Value: compactJSON(s.Config)},
		{Key: "location", Value: s.Location}, {Key: "status", Value: withReason(string(s.Status), s.StatusReason)},
		{Key: "capacity", Value: size(s.Capacity)}, {Key: "available", Value: size(s.Available)},
		{Key: "mount point", Value: s.MountPoint},
		{Key: "created", Value: output.Time(s.CreatedAt)}, {Key: "updated", Value: output.Time(s.UpdatedAt)},
		{Key: "version", Value: strconv.FormatInt(s.Version, 10)},
	}
}

func storageTypeTable(all []client.StorageType) *output.TableView {
	t := output.NewTable("TYPE", "BACKEND", "VOLUME FORMATS", "EXTEND", "INSTANT CLONE", "CONFIG")
	for _, st := range all {
		formats := make([]string, len(st.VolumeFormats))
		for i, f := range st.VolumeFormats {
			formats[i] = string(f)
		}
		t.Add(string(st.Type), st.Backend, strings.Join(formats, ","), yesNo(st.Extend), yesNo(st.InstantClone),
			strings.Join(schemaProps(st.ConfigSchema), ","))
	}
	return t
}

// schemaProps lists a JSON Schema's properties, the required ones marked with '*'.
func schemaProps(schema map[string]any) []string {
	props, _ := schema["properties"].(map[string]any)
	req := map[string]bool{}
	if r, ok := schema["required"].([]any); ok {
		for _, n := range r {
			if s, ok := n.(string); ok {
				req[s] = true
			}
		}
	}
	names := make([]string, 0, len(props))
	for n := range props {
		if req[n] {
			n += "*"
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// volumeTable shows volumes; storages, when known, name their storage.
func volumeTable(all []*volume.Volume, storages map[uuid.UUID]string) *output.TableView {
	t := output.NewTable("ID", "NAME", "STORAGE", "FORMAT", "SIZE", "ALLOCATED", "STATUS", "USED BY")
	for _, v := range all {
		t.Add(v.ID.String(), v.Name, nameOr(storages, v.StorageID), string(v.Format), size(v.Size), size(v.Allocated),
			string(v.Status), attachments(v.Attachments))
	}
	return t
}

func nameOr(names map[uuid.UUID]string, id uuid.UUID) string {
	if n, ok := names[id]; ok {
		return n
	}
	return idOrDash(id)
}

func attachments(as []volume.Attachment) string {
	names := make([]string, len(as))
	for i, a := range as {
		names[i] = a.VMName
	}
	return strings.Join(names, ",")
}

func volumeFields(v *volume.Volume) output.FieldsView {
	f := output.FieldsView{
		{Key: "id", Value: v.ID.String()}, {Key: "name", Value: v.Name}, {Key: "description", Value: v.Description},
		{Key: "storage", Value: v.StorageID.String()}, {Key: "format", Value: string(v.Format)},
		{Key: "size", Value: size(v.Size)}, {Key: "allocated", Value: size(v.Allocated)},
		{Key: "read only", Value: yesNo(v.ReadOnly)}, {Key: "shareable", Value: yesNo(v.Shareable)},
		{Key: "status", Value: withReason(string(v.Status), v.StatusReason)},
		{Key: "used by", Value: attachments(v.Attachments)},
	}
	if v.Backing != nil {
		f = append(f, output.Field{Key: "backing", Value: string(v.Backing.Kind) + " " + v.Backing.ID.String()})
	}
	if len(v.Linked) > 0 {
		names := make([]string, len(v.Linked))
		for i, l := range v.Linked {
			names[i] = l.VolumeName
		}
		f = append(f, output.Field{Key: "linked", Value: strings.Join(names, ", ")})
	}
	return append(f, output.Field{Key: "created", Value: output.Time(v.CreatedAt)},
		output.Field{Key: "updated", Value: output.Time(v.UpdatedAt)},
		output.Field{Key: "version", Value: strconv.FormatInt(v.Version, 10)})
}

func snapshotTable(all []*volume.Snapshot) *output.TableView {
	t := output.NewTable("ID", "NAME", "VOLUME", "SIZE", "ALLOCATED", "STATUS", "CREATED")
	for _, s := range all {
		t.Add(s.ID.String(), s.Name, s.VolumeID.String(), size(s.Size), size(s.Allocated), string(s.Status), output.Time(s.CreatedAt))
	}
	return t
}

func snapshotFields(s *volume.Snapshot) output.FieldsView {
	return output.FieldsView{
		{Key: "id", Value: s.ID.String()}, {Key: "name", Value: s.Name}, {Key: "description", Value: s.Description},
		{Key: "volume", Value: s.VolumeID.String()}, {Key: "storage", Value: s.StorageID.String()},
		{Key: "format", Value: string(s.Format)}, {Key: "size", Value: size(s.Size)},
		{Key: "allocated", Value: size(s.Allocated)}, {Key: "status", Value: withReason(string(s.Status), s.StatusReason)},
		{Key: "created", Value: output.Time(s.CreatedAt)},
	}
}

func imageTable(all []*image.Image, storages map[uuid.UUID]string) *output.TableView {
	t := output.NewTable("ID", "NAME", "STORAGE", "FORMAT", "SIZE", "STATUS", "USED BY")
	for _, i := range all {
		used := make([]string, 0, len(i.Attachments)+len(i.Linked))
		for _, a := range i.Attachments {
			used = append(used, a.VMName)
		}
		for _, l := range i.Linked {
			used = append(used, l.VolumeName)
		}
		t.Add(i.ID.String(), i.Name, nameOr(storages, i.StorageID), string(i.Format), size(i.Size), string(i.Status), strings.Join(used, ","))
	}
	return t
}

func imageFields(i *image.Image) output.FieldsView {
	vms := make([]string, len(i.Attachments))
	for n, a := range i.Attachments {
		vms[n] = a.VMName
	}
	linked := make([]string, len(i.Linked))
	for n, l := range i.Linked {
		linked[n] = l.VolumeName
	}
	return output.FieldsView{
		{Key: "id", Value: i.ID.String()}, {Key: "name", Value: i.Name}, {Key: "description", Value: i.Description},
		{Key: "storage", Value: i.StorageID.String()}, {Key: "format", Value: string(i.Format)},
		{Key: "size", Value: size(i.Size)}, {Key: "sha256", Value: i.SHA256},
		{Key: "status", Value: withReason(string(i.Status), i.StatusReason)},
		{Key: "cdrom of", Value: strings.Join(vms, ",")}, {Key: "linked volumes", Value: strings.Join(linked, ",")},
		{Key: "created", Value: output.Time(i.CreatedAt)}, {Key: "updated", Value: output.Time(i.UpdatedAt)},
		{Key: "version", Value: strconv.FormatInt(i.Version, 10)},
	}
}

func vmTable(all []*vm.VM) *output.TableView {
	t := output.NewTable("ID", "NAME", "STATUS", "POWER", "VCPUS", "MEMORY", "DISKS", "CDROMS", "NICS")
	for _, v := range all {
		t.Add(v.ID.String(), v.Name, string(v.Status), power(v), strconv.Itoa(v.CPU.VCPUs()), size(v.MemoryBytes),
			strconv.Itoa(len(v.Disks)), strconv.Itoa(len(v.CDROMs)), strconv.Itoa(len(v.Interfaces)))
	}
	return t
}

func power(v *vm.VM) string {
	p := string(v.PowerState)
	if v.PowerStateStale {
		p += " (stale)"
	}
	return p
}

// vmFields shows a VM; names, when known, name its volumes and images.
func vmFields(v *vm.VM, names map[uuid.UUID]string) output.FieldsView {
	cpu := fmt.Sprintf("%d (%d sockets x %d cores x %d threads), %s", v.CPU.VCPUs(), v.CPU.Sockets, v.CPU.Cores, v.CPU.Threads, v.CPU.Mode)
	if v.CPU.Model != "" {
		cpu += " " + v.CPU.Model
	}
	f := output.FieldsView{
		{Key: "id", Value: v.ID.String()}, {Key: "name", Value: v.Name}, {Key: "description", Value: v.Description},
		{Key: "status", Value: withReason(string(v.Status), v.StatusReason)},
		{Key: "power", Value: withReason(power(v), string(v.PowerStateReason))},
		{Key: "cpu", Value: cpu}, {Key: "memory", Value: size(v.MemoryBytes)},
		{Key: "firmware", Value: v.Firmware}, {Key: "machine", Value: v.MachineType},
		{Key: "boot", Value: strings.Join(v.Boot, ",")},
	}
	for i, d := range v.Disks {
		f = append(f, output.Field{Key: fmt.Sprintf("disk %d", i), Value: named(names, d.VolumeID) + ", " + d.Bus})
	}
	for i, c := range v.CDROMs {
		f = append(f, output.Field{Key: fmt.Sprintf("cdrom %d", i), Value: named(names, c.ImageID)})
	}
	for i, n := range v.Interfaces {
		f = append(f, output.Field{Key: fmt.Sprintf("nic %d", i), Value: fmt.Sprintf("%s %s, %s, %s", n.Type, n.Source, n.Model, n.MAC)})
	}
	g := v.Graphics.Type
	if v.Graphics.Listen != "" {
		g += " on " + v.Graphics.Listen
	}
	f = append(f, output.Field{Key: "graphics", Value: g})
	if v.CloudInit != nil {
		f = append(f, output.Field{Key: "cloud-init seed", Value: v.CloudInit.SeedID.String()})
	}
	return append(f, output.Field{Key: "created", Value: output.Time(v.CreatedAt)},
		output.Field{Key: "updated", Value: output.Time(v.UpdatedAt)},
		output.Field{Key: "version", Value: strconv.FormatInt(v.Version, 10)})
}

func operationTable(all []*client.Operation) *output.TableView {
	t := output.NewTable("ID", "KIND", "TARGET", "STATUS", "PROGRESS", "CREATED")
	for _, o := range all {
		t.Add(o.ID.String(), o.Kind, idOrDash(o.TargetID), opStatus(o), progress(o.Progress), output.Time(o.CreatedAt))
	}
	return t
}

func opStatus(o *client.Operation) string {
	s := string(o.Status)
	if o.Error != nil {
		s += " (" + o.Error.Kind + ")"
	}
	return s
}

func progress(p operation.Progress) string {
	switch {
	case p.BytesTotal > 0:
		return fmt.Sprintf("%s/%s", size(p.BytesDone), size(p.BytesTotal))
	case p.BytesDone > 0:
		return size(p.BytesDone)
	case p.Steps > 0:
		return fmt.Sprintf("%d/%d", p.Step, p.Steps)
	}
	return p.Message
}

func operationFields(o *client.Operation) output.FieldsView {
	f := output.FieldsView{
		{Key: "id", Value: o.ID.String()}, {Key: "kind", Value: o.Kind},
		{Key: "target", Value: strings.TrimSpace(o.TargetType + " " + idOrDash(o.TargetID))},
		{Key: "status", Value: string(o.Status)}, {Key: "progress", Value: progress(o.Progress)},
		{Key: "requester", Value: o.Requester}, {Key: "request id", Value: o.RequestID},
		{Key: "cancellable", Value: yesNo(o.Cancellable)},
	}
	if o.Error != nil {
		f = append(f, output.Field{Key: "error", Value: o.Error.Kind + ": " + o.Error.Message})
	}
	if o.Result != nil {
		f = append(f, output.Field{Key: "result", Value: fmt.Sprintf("%s (version %d)", o.Result.ID, o.Result.Version)})
	}
	f = append(f, output.Field{Key: "created", Value: output.Time(o.CreatedAt)})
	if o.StartedAt != nil {
		f = append(f, output.Field{Key: "started", Value: output.Time(*o.StartedAt)})
	}
	if o.FinishedAt != nil {
		f = append(f, output.Field{Key: "finished", Value: output.Time(*o.FinishedAt)})
	}
	return f
}

func networkTable(all []vm.Network) *output.TableView {
	t := output.NewTable("NAME", "TYPE", "ACTIVE", "BRIDGE")
	for _, n := range all {
		t.Add(n.Name, n.Type, yesNo(n.Active), n.Bridge)
	}
	return t
}

func hostFields(h *client.Host) output.FieldsView {
	var modes []string
	for _, m := range h.CPUModes {
		if m.Supported {
			modes = append(modes, m.Mode)
		}
	}
	var nets []string
	for _, n := range h.Networks {
		nets = append(nets, n.Name)
	}
	return output.FieldsView{
		{Key: "hostname", Value: h.Hostname}, {Key: "arch", Value: h.Arch},
		{Key: "cpus", Value: strconv.Itoa(h.CPUs)}, {Key: "memory", Value: size(h.Memory)},
		{Key: "libvirt", Value: h.LibvirtVersion}, {Key: "hypervisor", Value: h.HypervisorVersion},
		{Key: "domain types", Value: strings.Join(h.DomainTypes, ",")}, {Key: "default domain type", Value: h.DefaultDomainType},
		{Key: "cpu modes", Value: strings.Join(modes, ",")}, {Key: "firmware", Value: strings.Join(h.Firmware, ",")},
		{Key: "machine types", Value: plural(len(h.MachineTypes), "machine type")},
		{Key: "networks", Value: strings.Join(nets, ",")}, {Key: "bridges", Value: strings.Join(h.Bridges, ",")},
	}
}

// named prints "name (id)" when the name is known, else the id.
func named(names map[uuid.UUID]string, id uuid.UUID) string {
	if n, ok := names[id]; ok {
		return n + " (" + id.String() + ")"
	}
	return id.String()
}

func withReason(s, reason string) string {
	if reason == "" {
		return s
	}
	return s + " (" + reason + ")"
}

func compactJSON(b json.RawMessage) string {
	if len(b) == 0 {
		return ""
	}
	return string(b)
}
