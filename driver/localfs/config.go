package localfs

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
)

// Type is the storage type of localfs storages (the name the backend registers under).
const Type = Name

// Config is the configuration of a localfs storage: a directory (Path), or a block device (Device) that
// Prepare formats with FSType when Format is set, or whose filesystem it mounts as it is with
// ReuseFilesystem, under the backend's data directory.
type Config struct {
	Path            string `json:"path,omitempty"`
	Device          string `json:"device,omitempty"`
	FSType          string `json:"fs_type,omitempty"`
	Format          bool   `json:"format,omitempty"`
	ReuseFilesystem bool   `json:"reuse_filesystem,omitempty"`
	// Wipe, with Format, lets Prepare format a device that is not blank: one holding data no filesystem
	// claims, a signature (partition table, LVM, RAID, ...) or a filesystem. Everything on it is destroyed.
	// Without it, Format refuses any device with a signature or non-zero bytes near its start or end.
	Wipe bool `json:"wipe,omitempty"`
}

// State is what the backend keeps with a localfs storage (driver.PoolSpec.State): what CheckConfig and
// Prepare learned, which later calls need.
type State struct {
	// RealPath is Path (or Device) with every symbolic link resolved, found by CheckConfig. Storages are
	// told apart by it, and a directory-mode backend works in it (so a symbolic link changed later does not
	// move the storage).
	RealPath string `json:"real_path,omitempty"`
	// FSUUID is the UUID of a device-mode storage's filesystem, found by Prepare: a device that comes back
	// under another name is found again by it.
	FSUUID string `json:"fs_uuid,omitempty"`
	// CreatedDir says that Prepare created the storage directory (directory mode): Teardown removes it
	// then, and only when empty. A directory that existed before is never removed.
	CreatedDir bool `json:"created_dir,omitempty"`
}

// spec is a storage's configuration and state together.
type spec struct {
	Config
	State
}

// configSchema is the JSON Schema of Config.
const configSchema = `{
  "type": "object",
  "description": "A local directory (path), or a block device (device) that openvair formats (format) or whose filesystem it mounts (reuse_filesystem).",
  "properties": {
    "path": {"type": "string", "description": "Absolute, clean path of a directory; created when missing (its parent must exist). Not a system directory."},
    "device": {"type": "string", "description": "Block device under /dev, for device mode."},
    "fs_type": {"type": "string", "enum": ["ext4", "xfs", "btrfs"], "description": "Filesystem of a device (default ext4 when formatting)."},
    "format": {"type": "boolean", "description": "Device mode: make a new filesystem on a blank device."},
    "reuse_filesystem": {"type": "boolean", "description": "Device mode: mount the filesystem the device holds."},
    "wipe": {"type": "boolean", "description": "With format: destroy whatever the device holds first."}
  },
  "additionalProperties": false
}`

// ConfigSchema returns the JSON Schema of Config.
func (b *Backend) ConfigSchema() json.RawMessage { return json.RawMessage(configSchema) }

// Fields of the configuration that errors name.
const (
	fieldPath   = "config.path"
	fieldDevice = "config.device"
)

// checkFields checks the configuration itself, without looking at the host.
func checkFields(c Config) error {
	var v driver.ConfigChecker
	switch {
	case c.Path != "" && c.Device != "":
		v.Add("", "give either path (a directory) or device (a block device), not both")
	case c.Path == "" && c.Device == "":
		v.Add("", "give path (a directory) or device (a block device)")
	case c.Path != "":
		v.Check(checkDirPath(c.Path) == nil, "path", "must be a clean absolute directory path other than /")
		v.Check(c.FSType == "" && !c.Format && !c.ReuseFilesystem && !c.Wipe, "", "fs_type, format, reuse_filesystem and wipe apply to device mode only")
	default:
		v.Check(checkDevicePath(c.Device) == nil, "device", "must be a clean absolute path under /dev/")
		v.Check(c.FSType == "" || slices.Contains(fsTypes, c.FSType), "fs_type", "must be one of %s", strings.Join(fsTypes, ", "))
		v.Check(c.Format != c.ReuseFilesystem, "", "set exactly one of format (make a new filesystem on a blank device) and reuse_filesystem")
		v.Check(!c.Wipe || c.Format, "wipe", "applies only with format (it lets format destroy what the device holds)")
	}
	return v.Err()
}

// CheckConfig checks the configuration of a new storage as Prepare would, and finds its location: the
// directory (directory mode: not a system directory, inside allowed_dirs if set, an existing directory or
// a new name in an existing one) or the device (a block device under /dev), with every symbolic link
// resolved (State.RealPath). It creates nothing. The location is "dir:<real path>" or "dev:<real path>",
// so two names of one directory are one storage. Errors in the configuration are *driver.ValidationError
// naming config.path, config.device, ...
func (b *Backend) CheckConfig(ctx context.Context, raw json.RawMessage) (driver.CheckedConfig, error) {
	var c Config
	if err := driver.DecodeConfig(raw, &c); err != nil {
		return driver.CheckedConfig{}, err
	}
	if err := checkFields(c); err != nil {
		return driver.CheckedConfig{}, err
	}
	if err := checkCtx(ctx, ""); err != nil {
		return driver.CheckedConfig{}, err
	}
	var st State
	var err error
	prefix := "dir:"
	if c.Device != "" {
		if b.dataDir == "" {
			return driver.CheckedConfig{}, errkind.New(errkind.Unavailable, "storage", "", "localfs backend has no data directory for device mounts")
		}
		prefix = "dev:"
		st.RealPath, err = checkNewDevice(c.Device)
	} else {
		st.RealPath, err = b.checkNewDir(c.Path)
	}
	if err != nil {
		return driver.CheckedConfig{}, err
	}
	if c.Device != "" && c.FSType == "" && c.Format {
		c.FSType = "ext4"
	}
	return driver.CheckedConfig{Config: driver.MustJSON(c), State: driver.MustJSON(st), Location: prefix + st.RealPath}, nil
}

// decodeSpec reads a stored configuration and state. It is lenient with unknown fields (a newer openvair
// may have stored more) but not with malformed JSON.
func decodeSpec(pool driver.PoolSpec) (spec, error) {
	var s spec
	if len(pool.Config) == 0 {
		return s, errkind.New(errkind.Invalid, "storage", pool.ID.String(), "localfs storage without a configuration")
	}
	if err := json.Unmarshal(pool.Config, &s.Config); err != nil {
		return s, errkind.Wrap(errkind.Invalid, err, "storage", pool.ID.String(), "localfs configuration")
	}
	if err := driver.DecodeState(pool.State, &s.State); err != nil {
		return s, errkind.Wrap(errkind.Invalid, err, "storage", pool.ID.String(), "localfs state")
	}
	return s, nil
}

// withState returns ps with the state of s as its State.
func withState(ps driver.PoolState, s spec) driver.PoolState {
	ps.State = driver.MustJSON(s.State)
	return ps
}

// Pool returns the PoolSpec of a localfs storage with configuration c and state st, as openvair hands it
// to the backend; for programs and tests that drive the backend directly.
func Pool(id uuid.UUID, c Config, st State) driver.PoolSpec {
	return driver.PoolSpec{ID: id, Type: Name, Config: driver.MustJSON(c), State: driver.MustJSON(st)}
}
