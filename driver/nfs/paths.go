package nfs

import (
	"context"
	"encoding/json"
	"path"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/deadline"
	"github.com/openvair/openvair/internal/errkind"
)

const partSuffix = ".part"

// pool is a validated PoolSpec.
type pool struct {
	id  string
	key mountKey
	dir string // openvair-<id>, relative to the export root
}

func parsePool(spec driver.PoolSpec) (pool, error) {
	var n Config
	if err := json.Unmarshal(spec.Config, &n); err != nil || len(spec.Config) == 0 {
		return pool{}, errkind.New(driver.ErrInvalid, "nfs", spec.ID.String(), "pool has no valid NFS configuration")
	}
	switch {
	case spec.ID == uuid.Nil:
		return pool{}, errkind.New(driver.ErrInvalid, "nfs", "", "pool id is empty")
	case n.Server == "" || strings.ContainsAny(n.Server, "/ \t\n\x00"):
		return pool{}, errkind.New(driver.ErrInvalid, "nfs", spec.ID.String(), "invalid NFS server %q", n.Server)
	case !strings.HasPrefix(n.Export, "/") || strings.ContainsRune(n.Export, 0) || path.Clean(n.Export) != n.Export:
		return pool{}, errkind.New(driver.ErrInvalid, "nfs", spec.ID.String(), "NFS export %q must be a clean absolute path", n.Export)
	case n.Version != 0 && n.Version != 3:
		return pool{}, errkind.New(driver.ErrUnsupported, "nfs", spec.ID.String(), "NFS version %d not supported (3 only)", n.Version)
	}
	return pool{id: spec.ID.String(), key: mountKey{n.Server, n.Export}, dir: "openvair-" + spec.ID.String()}, nil
}

func volumeName(id uuid.UUID) string { return "volume-" + id.String() }
func imageName(id uuid.UUID) string  { return "image-" + id.String() }

func (p pool) file(name string) string { return p.dir + "/" + name }

// DiskSource tells a hypervisor where to find an object: a network disk with protocol nfs whose name is
// /<export>/openvair-<storage id>/<file> (QEMU mounts everything before the last "/").
func (b *Backend) DiskSource(spec driver.PoolSpec, kind driver.ObjectKind, id uuid.UUID) driver.DiskSource {
	name := volumeName(id)
	if kind == driver.KindImage {
		name = imageName(id)
	}
	var n Config
	_ = json.Unmarshal(spec.Config, &n) // a bad configuration gives an empty source, which no disk opens
	server, export := n.Server, n.Export
	return driver.DiskSource{
		Type:     "network",
		Protocol: "nfs",
		Host:     server,
		Name:     path.Join("/", export, "openvair-"+spec.ID.String(), name),
	}
}

// run bounds ctx with the default timeout d (when ctx has no sooner deadline), runs fn on the pool's mount
// and maps the error to an error kind.
func (b *Backend) run(ctx context.Context, p pool, d timeoutKind, what string, fn func(s *sess) error) error {
	ctx, cancel := deadline.Ensure(ctx, b.timeout(d))
	defer cancel()
	err := b.with(ctx, p.key, fn)
	return b.mapErr(ctx, err, p, what)
}

type timeoutKind int

const (
	opTimeout timeoutKind = iota
	statusTimeout
	rpcTimeout
)

func (b *Backend) timeout(k timeoutKind) (d time.Duration) {
	switch k {
	case statusTimeout:
		return b.statusTimeout
	case rpcTimeout:
		return b.rpcTimeout
	}
	return b.opTimeout
}

// logical returns an error produced by the driver itself, which keeps the connection.
func logical(kind error, p pool, format string, args ...any) error {
	return errkind.Wrap(kind, errLogical, "nfs", p.id, format, args...)
}
