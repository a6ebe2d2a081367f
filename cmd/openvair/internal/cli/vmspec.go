package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/cmd/openvair/internal/exitcode"
	"github.com/openvair/openvair/cmd/openvair/internal/units"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// kv is one key=value of a --disk or --nic value, in order.
type kv struct{ k, v string }

// parseKV reads "k=v,k=v"; keys must be among allowed.
func parseKV(flag, s string, allowed ...string) ([]kv, error) {
	var out []kv
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, exitcode.Usagef("--%s %q: %q is not key=value", flag, s, part)
		}
		found := false
		for _, a := range allowed {
			found = found || a == k
		}
		if !found {
			return nil, exitcode.Usagef("--%s %q: unknown key %q (want %s)", flag, s, k, strings.Join(allowed, ", "))
		}
		out = append(out, kv{k, strings.TrimSpace(v)})
	}
	return out, nil
}

// diskSpec is a --disk value before names are resolved.
type diskSpec struct {
	Volume string // an existing volume (id or name); empty for a new one
	New    *newDiskSpec
	Bus    string
	Boot   int
}

// newDiskSpec is the new volume of a --disk new:... value.
type newDiskSpec struct {
	Name, Storage, Format, FromImage, FromVolume, Mode string
	Size                                               int64
}

// parseDisk reads a --disk value:
//
//	VOLUME | volume=VOLUME[,bus=virtio|sata|scsi][,boot=N]
//	new:storage=STORAGE,size=SIZE[,format=qcow2|raw][,name=NAME][,from-image=IMAGE|from-volume=VOLUME][,mode=copy|linked|instant][,bus=..][,boot=N]
func parseDisk(s string) (diskSpec, error) {
	var d diskSpec
	isNew := strings.HasPrefix(s, "new:")
	if !isNew && !strings.Contains(s, "=") {
		if s == "" {
			return d, exitcode.Usagef("--disk: empty value")
		}
		return diskSpec{Volume: s}, nil
	}
	keys := []string{"volume", "bus", "boot"}
	body := s
	if isNew {
		body = strings.TrimPrefix(s, "new:")
		keys = []string{"storage", "size", "format", "name", "from-image", "from-volume", "mode", "bus", "boot"}
		d.New = &newDiskSpec{}
	}
	pairs, err := parseKV("disk", body, keys...)
	if err != nil {
		return d, err
	}
	for _, p := range pairs {
		switch p.k {
		case "volume":
			d.Volume = p.v
		case "bus":
			d.Bus = p.v
		case "boot":
			n, err := strconv.Atoi(p.v)
			if err != nil || n < 1 {
				return d, exitcode.Usagef("--disk %q: boot=%q: want a boot order from 1", s, p.v)
			}
			d.Boot = n
		case "storage":
			d.New.Storage = p.v
		case "size":
			n, err := units.ParseSize(p.v)
			if err != nil {
				return d, exitcode.Usagef("--disk %q: %v", s, err)
			}
			d.New.Size = n
		case "format":
			d.New.Format = p.v
		case "name":
			d.New.Name = p.v
		case "from-image":
			d.New.FromImage = p.v
		case "from-volume":
			d.New.FromVolume = p.v
		case "mode":
			d.New.Mode = p.v
		}
	}
	switch {
	case isNew && d.New.FromImage != "" && d.New.FromVolume != "":
		return d, exitcode.Usagef("--disk %q: give from-image or from-volume, not both", s)
	case isNew && d.New.FromImage == "" && d.New.FromVolume == "" && (d.New.Storage == "" || d.New.Size == 0):
		return d, exitcode.Usagef("--disk %q: a new blank disk needs storage= and size=", s)
	case !isNew && d.Volume == "":
		return d, exitcode.Usagef("--disk %q: want volume=VOLUME or new:storage=...,size=...", s)
	}
	return d, nil
}

// request resolves the disk's names into a disk request; vmName and index name a new volume by default.
func (d diskSpec) request(ctx context.Context, c *client.Client, vmName string, index int) (vm.DiskRequest, error) {
	r := vm.DiskRequest{Bus: d.Bus, BootOrder: d.Boot}
	if d.New == nil {
		id, err := resolveArg(ctx, c, kindVolume, d.Volume)
		if err != nil {
			return r, err
		}
		r.VolumeID = id
		return r, nil
	}
	n := d.New
	req := &volume.CreateRequest{Name: n.Name, Format: volume.Format(n.Format), Size: n.Size}
	if req.Name == "" {
		req.Name = fmt.Sprintf("%s-disk%d", vmName, index)
	}
	if n.Storage != "" {
		id, err := resolveArg(ctx, c, kindStorage, n.Storage)
		if err != nil {
			return r, err
		}
		req.StorageID = id
	}
	switch {
	case n.FromImage != "":
		id, err := resolveArg(ctx, c, kindImage, n.FromImage)
		if err != nil {
			return r, err
		}
		req.Source = &volume.Source{ImageID: id, Mode: volume.CloneMode(n.Mode)}
	case n.FromVolume != "":
		id, err := resolveArg(ctx, c, kindVolume, n.FromVolume)
		if err != nil {
			return r, err
		}
		req.Source = &volume.Source{VolumeID: id, Mode: volume.CloneMode(n.Mode)}
	case req.Format == "":
		req.Format = volume.FormatQCOW2
	}
	r.New = req
	return r, nil
}

// parseNIC reads a --nic value: network=NAME or bridge=NAME, with optional model= and mac=.
func parseNIC(s string) (vm.Interface, error) {
	var n vm.Interface
	pairs, err := parseKV("nic", s, "network", "bridge", "model", "mac")
	if err != nil {
		return n, err
	}
	for _, p := range pairs {
		switch p.k {
		case "network", "bridge":
			if n.Type != "" {
				return n, exitcode.Usagef("--nic %q: give network= or bridge=, once", s)
			}
			n.Type, n.Source = p.k, p.v
		case "model":
			n.Model = p.v
		case "mac":
			n.MAC = p.v
		}
	}
	if n.Type == "" || n.Source == "" {
		return n, exitcode.Usagef("--nic %q: want network=NAME or bridge=NAME", s)
	}
	return n, nil
}
