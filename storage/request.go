package storage

import (
	"net"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/validate"
)

// CreateRequest asks for a new storage. Exactly one of LocalFS and NFS is set, matching Type.
type CreateRequest struct {
	Name        string       `json:"name"`
	Description string       `json:"description,omitempty"`
	Type        Type         `json:"type"`
	LocalFS     *LocalFSSpec `json:"localfs,omitempty"`
	NFS         *NFSSpec     `json:"nfs,omitempty"`
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// Validate reports every bad field at once.
func (r *CreateRequest) Validate() error {
	v := &errkind.Validator{Entity: "storage"}
	validate.NormalizeName(&r.Name)
	validate.Name(v, "name", r.Name)
	validate.Description(v, "description", r.Description)
	switch r.Type {
	case TypeLocalFS:
		v.Check(r.NFS == nil, "nfs", "must be empty for a localfs storage")
		if r.LocalFS == nil {
			v.Add("localfs", "is required for a localfs storage")
			break
		}
		validateLocalFS(v, r.LocalFS)
	case TypeNFS:
		v.Check(r.LocalFS == nil, "localfs", "must be empty for an nfs storage")
		if r.NFS == nil {
			v.Add("nfs", "is required for an nfs storage")
			break
		}
		validateNFS(v, r.NFS)
	default:
		v.Add("type", "must be %q or %q", TypeLocalFS, TypeNFS)
	}
	return v.Err()
}

func cleanAbs(p string) bool {
	return filepath.IsAbs(p) && filepath.Clean(p) == p && !strings.ContainsAny(p, "\x00\n")
}

func validateLocalFS(v *errkind.Validator, l *LocalFSSpec) {
	switch {
	case l.Path != "" && l.Device != "":
		v.Add("localfs", "give either path (a directory) or device (a block device), not both")
	case l.Path == "" && l.Device == "":
		v.Add("localfs", "give path (a directory) or device (a block device)")
	case l.Path != "":
		v.Check(cleanAbs(l.Path) && l.Path != "/", "localfs.path", "must be a clean absolute directory path other than /")
		v.Check(l.FSType == "" && !l.Format && !l.ReuseFilesystem && !l.Wipe, "localfs", "fs_type, format, reuse_filesystem and wipe apply to device mode only")
	default:
		v.Check(cleanAbs(l.Device) && strings.HasPrefix(l.Device, "/dev/"), "localfs.device", "must be a clean absolute path under /dev/")
		v.Check(l.FSType == "ext4" || l.FSType == "xfs", "localfs.fs_type", "must be ext4 or xfs")
		v.Check(l.Format != l.ReuseFilesystem, "localfs", "set exactly one of format (make a new filesystem on a blank device) and reuse_filesystem")
		v.Check(!l.Wipe || l.Format, "localfs.wipe", "applies only with format (it lets format destroy what the device holds)")
	}
	v.Check(l.FSUUID == "", "localfs.fs_uuid", "is set by openvair, not by the caller")
	v.Check(l.RealPath == "", "localfs.real_path", "is set by openvair, not by the caller")
}

func validateNFS(v *errkind.Validator, n *NFSSpec) {
	if net.ParseIP(n.Server) == nil && (len(n.Server) > 253 || !hostnameRE.MatchString(n.Server)) {
		v.Add("nfs.server", "must be an IP address or a host name")
	}
	v.Check(cleanAbs(n.Export), "nfs.export", "must be a clean absolute path")
	v.Check(n.Version == 0 || n.Version == 3, "nfs.version", "only NFS version 3 is supported")
}

// EditRequest changes a storage's metadata; nil fields stay as they are.
type EditRequest struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
}

// Validate reports every bad field at once.
func (r *EditRequest) Validate() error {
	v := &errkind.Validator{Entity: "storage"}
	validate.NameAndDescription(v, r.Name, r.Description)
	return v.Err()
}

// ListOptions filters and pages a list of storages.
type ListOptions struct {
	Limit  int    // 1..1000, default 100
	Cursor string // from the previous page's NextCursor
	Status Status // "" for any
	Type   Type   // "" for any
	Name   string // exact name, "" for any
}

// validate checks the filters (ErrInvalid naming each bad one) and normalizes the name filter.
func (o *ListOptions) validate() error {
	v := &errkind.Validator{Entity: "storage list"}
	validate.ListFilters(v, &o.Name, o.Cursor, o.Status, transitions)
	validate.Known(v, "type", o.Type, TypeLocalFS, TypeNFS)
	return v.Err()
}

// Page is one page of storages; NextCursor is empty on the last page.
type Page struct {
	Items      []*Storage `json:"items"`
	NextCursor string     `json:"next_cursor,omitempty"`
}
