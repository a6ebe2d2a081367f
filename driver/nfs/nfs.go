// Package nfs is the storage backend for NFSv3 exports, spoken from Go with github.com/vmware/go-nfs-client
// (no kernel mount). A storage is a directory openvair-<storage id> on the export; volumes are files
// volume-<id> (raw: a sparse file sized with SETATTR; qcow2: written through internal/qcow2 over NFS READ and
// WRITE), images are files image-<id>, uploaded as image-<id>.part and renamed when complete.
//
// Every call is bounded: the caller's context, or a default per-operation timeout when it has none. One
// connection is cached per (server, export), used by one call at a time and redialed after an error; a dead
// server only delays calls on its own exports, and only until their deadlines.
//
// Options (driver.Config.Options): status_timeout (default 3s), op_timeout (30s), rpc_timeout (10s, each
// WRITE of an upload), stale_part_age (5m), uid and gid (credentials sent to the server; default the
// process's), file_mode (octal, default 0644), qcow2_preallocation ("off" or "metadata"), qemu_uid and
// qemu_gid (the owner given to every volume and image file; default the host's libvirt-qemu or qemu user
// and its group when one exists, "none" to leave files to the credentials that created them).
//
// QEMU opens NFS disks with its own NFS client, as the uid and gid of the disk's <identity> (the libvirt
// driver's qemu_uid and qemu_gid, by default the same host user), and a server that enforces uids lets
// it read and write only files that user owns. So the backend creates each file, then gives it to that
// identity with SETATTR: this needs a server that lets the backend's credentials (root by default) change
// owners, such as an export with no_root_squash. No file is made world-writable.
package nfs

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/vmware/go-nfs-client/nfs/rpc"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/hostuser"
	"github.com/openvair/openvair/internal/qcow2"
)

func init() {
	driver.RegisterStorage(Name, func(cfg driver.Config) (driver.StorageBackend, error) { return New(cfg) })
}

// Backend is the NFS storage backend. It is safe for concurrent use.
type Backend struct {
	statusTimeout time.Duration
	opTimeout     time.Duration
	rpcTimeout    time.Duration
	staleAge      time.Duration
	fileMode      os.FileMode
	owner         *[2]uint32 // uid and gid every created file is given; nil: unchanged
	prealloc      string
	auth          rpc.Auth

	mu        sync.Mutex
	mounts    map[mountKey]*mount
	uploading map[string]int       // "<server>\x00<export>\x00<dir>/<part>" → active uploads
	abandoned map[string]time.Time // .part files whose removal failed
}

var _ driver.StorageBackend = (*Backend)(nil)

// New returns a backend configured by cfg.Options (see the package documentation).
func New(cfg driver.Config) (*Backend, error) {
	b := &Backend{
		statusTimeout: 3 * time.Second,
		opTimeout:     30 * time.Second,
		rpcTimeout:    10 * time.Second,
		staleAge:      5 * time.Minute,
		fileMode:      0o644,
		prealloc:      qcow2.PreallocOff,
		mounts:        map[mountKey]*mount{},
		uploading:     map[string]int{},
		abandoned:     map[string]time.Time{},
	}
	durations := map[string]*time.Duration{
		"status_timeout": &b.statusTimeout, "op_timeout": &b.opTimeout,
		"rpc_timeout": &b.rpcTimeout, "stale_part_age": &b.staleAge,
	}
	for k, p := range durations {
		if v, ok := cfg.Options[k]; ok {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return nil, fmt.Errorf("nfs option %s=%q: %w", k, v, driver.ErrInvalid)
			}
			*p = d
		}
	}
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	for k, p := range map[string]*uint32{"uid": &uid, "gid": &gid} {
		if v, ok := cfg.Options[k]; ok {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("nfs option %s=%q: %w", k, v, driver.ErrInvalid)
			}
			*p = uint32(n)
		}
	}
	if v, ok := cfg.Options["file_mode"]; ok {
		n, err := strconv.ParseUint(v, 8, 32)
		if err != nil || n > 0o777 {
			return nil, fmt.Errorf("nfs option file_mode=%q: %w", v, driver.ErrInvalid)
		}
		b.fileMode = os.FileMode(n)
	}
	owner, err := fileOwner(cfg.Options["qemu_uid"], cfg.Options["qemu_gid"])
	if err != nil {
		return nil, err
	}
	b.owner = owner
	if v, ok := cfg.Options["qcow2_preallocation"]; ok {
		if v != qcow2.PreallocOff && v != qcow2.PreallocMetadata {
			return nil, fmt.Errorf("nfs option qcow2_preallocation=%q: %w", v, driver.ErrInvalid)
		}
		b.prealloc = v
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "openvair"
	}
	b.auth = rpc.NewAuthUnix(host, uid, gid).Auth()
	return b, nil
}

// Info names the backend and its capabilities.
func (b *Backend) Info() driver.StorageInfo {
	return driver.StorageInfo{
		Name: Name,
		Capabilities: driver.StorageCapabilities{
			VolumeFormats: []driver.VolumeFormat{driver.FormatQCOW2, driver.FormatRaw},
			Extend:        true,
			RemoteAttach:  true,
		},
	}
}

// Close drops the cached connections, waiting for the call using each one to end. It is idempotent, and
// does nothing where no connection was made or the last one failed. The backend stays usable: later calls
// dial again.
func (b *Backend) Close() error {
	b.closeAll()
	return nil
}

// fileOwner reads the qemu_uid and qemu_gid options: both empty means the host's QEMU user (none when it
// has none), "none" means no owner change.
func fileOwner(uidOpt, gidOpt string) (*[2]uint32, error) {
	if uidOpt == "none" || gidOpt == "none" {
		return nil, nil
	}
	var owner [2]uint32
	if id, ok := hostuser.DefaultQEMU(); ok {
		owner = [2]uint32{uint32(id.UID), uint32(id.GID)}
	} else if uidOpt == "" || gidOpt == "" {
		if uidOpt != "" || gidOpt != "" {
			return nil, fmt.Errorf("nfs options qemu_uid and qemu_gid: give both (no QEMU user on this host): %w", driver.ErrInvalid)
		}
		return nil, nil
	}
	for i, v := range []string{uidOpt, gidOpt} {
		if v == "" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("nfs option %s=%q: %w", []string{"qemu_uid", "qemu_gid"}[i], v, driver.ErrInvalid)
		}
		owner[i] = uint32(n)
	}
	return &owner, nil
}
