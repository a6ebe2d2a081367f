package vm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/cloudinit"
	"github.com/openvair/openvair/internal/errkind"
)

// CloudInitConfig is what a VM's cloud-init (NoCloud) reads: user_data (a #cloud-config document, a #!
// script or MIME multipart), meta_data, network_config, ssh_authorized_keys and hostname.
type CloudInitConfig = cloudinit.Config

// CloudInit is a VM's cloud-init configuration and its seed: the NoCloud ISO (volume label cidata) that
// openvair builds on the storage of the VM's first disk and attaches as a read-only cdrom. The seed is
// rebuilt when the configuration is edited and removed with the VM.
type CloudInit struct {
	cloudinit.Config
	SeedStorageID uuid.UUID `json:"seed_storage_id"`
	SeedID        uuid.UUID `json:"seed_id"`
}

// MarshalJSON encodes the configuration with user_data and network_config redacted, as events and
// non-admin readers see it: they may carry secrets.
func (c CloudInit) MarshalJSON() ([]byte, error) {
	type plain CloudInit
	p := plain(c)
	p.Config = c.Config.Redacted()
	return json.Marshal(p)
}

// clone returns a deep copy.
func (c *CloudInit) clone() *CloudInit {
	if c == nil {
		return nil
	}
	d := *c
	d.SSHAuthorizedKeys = append([]string(nil), c.SSHAuthorizedKeys...)
	return &d
}

// Seeds keeps cloud-init seeds on storages. openvair implements it with the storage backends: a seed is
// stored like an image file that no image row names.
type Seeds interface {
	// WriteSeed stores the ISO iso as the object id on the storage.
	WriteSeed(ctx context.Context, storageID, id uuid.UUID, iso []byte) error
	// DeleteSeed removes the seed; a missing seed is not an error.
	DeleteSeed(ctx context.Context, storageID, id uuid.UUID) error
}

// seedStorage picks where a VM's seed lives: the storage of its first disk, else of its first cdrom.
func (s *Service) seedStorage(ctx context.Context, v *VM) (uuid.UUID, error) {
	if len(v.Disks) > 0 {
		vol, err := s.d.Volumes.Get(ctx, v.Disks[0].VolumeID)
		if err != nil {
			return uuid.Nil, err
		}
		return vol.StorageID, nil
	}
	if len(v.CDROMs) > 0 {
		img, err := s.d.Images.Get(ctx, v.CDROMs[0].ImageID)
		if err != nil {
			return uuid.Nil, err
		}
		return img.StorageID, nil
	}
	return uuid.Nil, errkind.Field("vm", "cloud_init", "needs a disk or a cdrom: its seed is kept on the storage of the VM's first disk")
}

// writeSeed builds the NoCloud ISO of cfg for v (instance-id: the VM's id) and stores it as a new object on
// the storage of v's first disk; it returns where.
func (s *Service) writeSeed(ctx context.Context, v *VM, cfg cloudinit.Config) (*CloudInit, error) {
	if s.d.Seeds == nil {
		return nil, errkind.New(errkind.Unsupported, "vm", v.ID.String(), "cloud-init seeds are not configured")
	}
	storageID, err := s.seedStorage(ctx, v)
	if err != nil {
		return nil, err
	}
	files, err := cfg.Seed(v.ID.String())
	if err != nil {
		return nil, err
	}
	var iso bytes.Buffer
	if err := cloudinit.WriteISO(&iso, files); err != nil {
		return nil, fmt.Errorf("build the cloud-init seed: %w", err)
	}
	ci := &CloudInit{Config: cfg, SeedStorageID: storageID, SeedID: uuid.Must(uuid.NewV7())}
	if err := s.call(ctx, func(ctx context.Context) error { return s.d.Seeds.WriteSeed(ctx, storageID, ci.SeedID, iso.Bytes()) }); err != nil {
		return nil, fmt.Errorf("store the cloud-init seed: %w", err)
	}
	return ci, nil
}

// deleteSeed removes a seed, logging a failure (a leftover ISO file is harmless).
func (s *Service) deleteSeed(ctx context.Context, id uuid.UUID, ci *CloudInit) {
	if ci == nil || s.d.Seeds == nil {
		return
	}
	s.logErr("remove a cloud-init seed", id, s.call(ctx, func(ctx context.Context) error {
		return s.d.Seeds.DeleteSeed(ctx, ci.SeedStorageID, ci.SeedID)
	}))
}

// seedDisk is the read-only cdrom of a VM's seed.
func (s *Service) seedDisk(ctx context.Context, ci *CloudInit) (driver.DiskSpec, error) {
	src, err := s.locate(ctx, ci.SeedStorageID, driver.KindImage, ci.SeedID)
	if err != nil {
		return driver.DiskSpec{}, err
	}
	return driver.DiskSpec{Device: "cdrom", Bus: "sata", Format: driver.FormatRaw, ReadOnly: true, Source: src}, nil
}
