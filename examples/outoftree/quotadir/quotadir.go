// Package quotadir is a storage backend written outside the openvair SDK, against its public driver
// contract only (package driver, the standard library and golang.org/x/sys/unix): it shows that an
// embedding program can define its own storage type and register it, with no change to openvair.
//
// A quotadir storage is a local directory, Root, with a quota in bytes, Quota, which is the storage's
// capacity. Its configuration, as a user gives it when creating the storage, is
//
//	{"root": "/srv/q", "quota": 10737418240}
//
// Root must be a clean absolute path: an existing directory, or a new name in an existing directory that
// Prepare creates (and Teardown removes again when it is empty). Volumes are sparse raw files
// volume-<id>, images are files image-<id> (uploaded through image-<id>.part), both directly in the
// directory. Besides the contract, the backend implements the optional driver.UploadSweeper and
// driver.VolumeCloner (a copy that keeps holes, or FICLONE where the filesystem shares blocks; it does not
// declare InstantClone).
//
// The quota follows one simple rule: the sum of the virtual sizes of the volumes and of the sizes of the
// images never exceeds it. CreateVolume, ExtendVolume, CloneVolume and WriteImage refuse what would break it
// with driver.ErrTooLarge. Sparse volumes allocate less than their virtual size, so the rule is strict (the
// storage is never overcommitted) rather than a measure of the disk. It is checked and applied under an
// advisory lock (flock) of the directory, so concurrent calls, other instances of the backend and other
// processes sharing the directory never break it together; checking it stats every file of the directory,
// a cost that grows with the number of objects (no count is kept that could go stale). Status reports Capacity = Quota and Available =
// Quota minus the bytes the files directly in the directory allocate (st_blocks × 512), at least 0. The
// quota is not checked against the free space of the filesystem holding the directory: a full filesystem
// still fails writes (driver.ErrTooLarge, "the storage is full").
//
// The package registers itself under the name "quotadir" when it is imported:
//
//	import "github.com/openvair/openvair/examples/outoftree/quotadir"
//
//	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "q", Type: quotadir.Name,
//		Config: quotadir.Config{Root: "/srv/q", Quota: 10 << 30}})
package quotadir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
)

// Name is the storage type, and the backend name the package registers (driver.RegisterStorage).
const Name = "quotadir"

func init() {
	driver.RegisterStorage(Name, func(cfg driver.Config) (driver.StorageBackend, error) { return New(cfg), nil })
}

// Config is the configuration of a quotadir storage (storage.CreateRequest.Config, driver.PoolSpec.Config).
type Config struct {
	// Root is the storage directory: a clean absolute path, an existing directory or a new name in an
	// existing directory.
	Root string `json:"root"`
	// Quota is the storage's capacity in bytes, greater than 0.
	Quota int64 `json:"quota"`
}

// State is what the backend keeps with a quotadir storage (driver.PoolSpec.State).
type State struct {
	// RealRoot is Root with the symbolic links of its existing part resolved, found by CheckConfig: the
	// backend works in it, so a symbolic link changed later does not move the storage (nor put two storages
	// in one directory).
	RealRoot string `json:"real_root,omitempty"`
	// CreatedDir says that Prepare created the directory: Teardown removes it then, and only when empty. A
	// directory that existed before is never removed.
	CreatedDir bool `json:"created_dir,omitempty"`
}

// File modes of what the backend creates. The hypervisor reaches the files through the directory; libvirt
// gives each file to QEMU when a VM uses it (dynamic ownership).
const (
	dirMode  = 0o755
	fileMode = 0o660
)

// Backend is the quotadir storage backend. It keeps nothing open: every call works on the directory named
// by its PoolSpec, so any number of instances (and processes) may share a storage.
type Backend struct{}

// New returns a quotadir backend. It needs no data directory and no option; options meant for other
// backends (driver.Config.Options is shared) are ignored.
func New(driver.Config) *Backend { return &Backend{} }

// Info names the backend: raw volumes only, which it can extend.
func (b *Backend) Info() driver.StorageInfo {
	return driver.StorageInfo{Name: Name, Capabilities: driver.StorageCapabilities{
		VolumeFormats: []driver.VolumeFormat{driver.FormatRaw},
		Extend:        true,
	}}
}

// Close does nothing: the backend keeps nothing open. It is idempotent.
func (b *Backend) Close() error { return nil }

// configSchema is the JSON Schema of Config.
const configSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "quotadir storage",
  "description": "A local directory with a quota: the sum of the virtual sizes of its volumes and of the sizes of its images never exceeds the quota.",
  "type": "object",
  "properties": {
    "root": {
      "type": "string",
      "description": "Clean absolute path of the storage directory: an existing directory, or a new name in an existing directory (created by Prepare, removed by Teardown when empty)."
    },
    "quota": {
      "type": "integer",
      "minimum": 1,
      "description": "Capacity of the storage in bytes."
    }
  },
  "required": ["root", "quota"],
  "additionalProperties": false
}`

// ConfigSchema returns the JSON Schema (2020-12) of Config.
func (b *Backend) ConfigSchema() json.RawMessage { return json.RawMessage(configSchema) }

// rawConfig is Config as CheckConfig decodes it, telling a missing field from a zero one.
type rawConfig struct {
	Root  *string `json:"root"`
	Quota *int64  `json:"quota"`
}

// CheckConfig checks the configuration of a new storage: root is a clean absolute path other than "/",
// an existing directory or a new name in an existing directory; quota is given and greater than 0. It
// creates nothing. The location key is "quotadir:" followed by root with the symbolic links of its existing
// part resolved (State.RealRoot), so two names of one directory are one storage. Bad fields are reported
// together in a *driver.ValidationError naming config.root and config.quota; a host that cannot be
// asked is driver.ErrUnavailable.
func (b *Backend) CheckConfig(ctx context.Context, raw json.RawMessage) (driver.CheckedConfig, error) {
	var rc rawConfig
	if err := driver.DecodeConfig(raw, &rc); err != nil {
		return driver.CheckedConfig{}, err
	}
	if err := ctx.Err(); err != nil {
		return driver.CheckedConfig{}, ctxErr("check configuration", err)
	}
	var v driver.ConfigChecker
	var c Config
	switch {
	case rc.Quota == nil:
		v.Add("quota", "is required: the capacity of the storage in bytes")
	case *rc.Quota <= 0:
		v.Add("quota", "must be greater than 0 bytes, not %d", *rc.Quota)
	default:
		c.Quota = *rc.Quota
	}
	var real string
	if rc.Root == nil {
		v.Add("root", "is required: the storage directory")
	} else {
		c.Root = *rc.Root
		var err error
		real, err = checkRoot(c.Root, &v)
		if err != nil {
			return driver.CheckedConfig{}, err
		}
	}
	if err := v.Err(); err != nil {
		return driver.CheckedConfig{}, err
	}
	return driver.CheckedConfig{
		Config:   driver.MustJSON(c),
		State:    driver.MustJSON(State{RealRoot: real}),
		Location: Name + ":" + real,
	}, nil
}

// checkRoot checks the root of a new storage, recording what is wrong with it in v, and returns it with its
// symbolic links resolved. The error is set only when the host cannot be asked.
func checkRoot(root string, v *driver.ConfigChecker) (string, error) {
	if err := checkPath(root); err != nil {
		v.Add("root", "%v", err)
		return "", nil
	}
	real, err := resolveExisting(root)
	if err != nil {
		return "", fmt.Errorf("quotadir: resolve %s: %w: %w", root, driver.ErrUnavailable, err)
	}
	if real == "/" {
		v.Add("root", "%s resolves to /, which cannot be a storage", root)
		return "", nil
	}
	fi, err := os.Stat(real)
	switch {
	case errors.Is(err, os.ErrNotExist):
		parent := filepath.Dir(real)
		if pfi, perr := os.Stat(parent); perr != nil || !pfi.IsDir() {
			v.Add("root", "%s does not exist, nor does its parent directory %s", root, parent)
		}
	case err != nil:
		return "", fmt.Errorf("quotadir: stat %s: %w: %w", root, driver.ErrUnavailable, err)
	case !fi.IsDir():
		v.Add("root", "%s is not a directory", root)
	}
	return real, nil
}

// checkPath accepts clean absolute paths other than "/".
func checkPath(p string) error {
	switch {
	case p == "":
		return errors.New("must not be empty")
	case strings.ContainsRune(p, 0):
		return errors.New("must not contain a NUL byte")
	case !filepath.IsAbs(p):
		return fmt.Errorf("%s is not an absolute path", p)
	case filepath.Clean(p) != p:
		return fmt.Errorf("%s is not clean (no '..', '.', '//' or trailing '/'; %s is)", p, filepath.Clean(p))
	case p == "/":
		return errors.New("/ cannot be a storage")
	}
	return nil
}

// resolveExisting resolves the symbolic links of the longest existing prefix of the clean absolute path p
// and appends the rest.
func resolveExisting(p string) (string, error) {
	rest := ""
	for cur := p; ; cur = filepath.Dir(cur) {
		real, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, os.ErrNotExist) || cur == "/" {
			return "", err
		}
		rest = filepath.Join(filepath.Base(cur), rest)
	}
}

// pool is a decoded PoolSpec.
type pool struct {
	id    uuid.UUID
	dir   string // where the files live: State.RealRoot, or Config.Root for a spec CheckConfig never saw
	quota int64
	state State
}

// resolve decodes a PoolSpec. It touches no file. It is lenient with unknown fields (a newer version of
// the backend may have stored more) but not with malformed JSON or bad values: driver.ErrInvalid.
func resolve(spec driver.PoolSpec) (*pool, error) {
	if spec.Type != "" && spec.Type != Name {
		return nil, fmt.Errorf("quotadir: storage %s has type %q: %w", spec.ID, spec.Type, driver.ErrInvalid)
	}
	var c Config
	if err := json.Unmarshal(spec.Config, &c); err != nil {
		return nil, fmt.Errorf("quotadir: storage %s: configuration: %w: %w", spec.ID, driver.ErrInvalid, err)
	}
	p := &pool{id: spec.ID, dir: c.Root, quota: c.Quota}
	if err := driver.DecodeState(spec.State, &p.state); err != nil {
		return nil, fmt.Errorf("quotadir: storage %s: %w", spec.ID, err)
	}
	if p.state.RealRoot != "" {
		p.dir = p.state.RealRoot
	}
	if err := checkPath(p.dir); err != nil {
		return nil, fmt.Errorf("quotadir: storage %s: root: %v: %w", spec.ID, err, driver.ErrInvalid)
	}
	if p.quota <= 0 {
		return nil, fmt.Errorf("quotadir: storage %s: quota %d is not positive: %w", spec.ID, p.quota, driver.ErrInvalid)
	}
	return p, nil
}

// path is the file of a volume or image.
func (p *pool) path(kind driver.ObjectKind, id uuid.UUID) string {
	return filepath.Join(p.dir, string(kind)+"-"+id.String())
}

// Prepare creates the storage directory when it is missing (its parent must exist) and reports the
// storage's capacity; State.CreatedDir records that the directory is the backend's. It is idempotent, and
// removes the partial files that uploads interrupted by a crash left behind.
func (b *Backend) Prepare(ctx context.Context, spec driver.PoolSpec) (driver.PoolState, error) {
	p, err := resolve(spec)
	if err != nil {
		return driver.PoolState{}, err
	}
	if err := ctx.Err(); err != nil {
		return driver.PoolState{}, ctxErr("prepare storage "+p.id.String(), err)
	}
	created := false
	fi, err := os.Stat(p.dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		err := os.Mkdir(p.dir, dirMode)
		switch {
		case err == nil:
			created = true
		case errors.Is(err, os.ErrExist): // a concurrent Prepare: status checks it is a directory
		default:
			return driver.PoolState{}, fmt.Errorf("quotadir: storage %s: create %s: %w: %w", p.id, p.dir, driver.ErrUnavailable, err)
		}
	case err != nil:
		return driver.PoolState{}, fmt.Errorf("quotadir: storage %s: %w: %w", p.id, driver.ErrUnavailable, err)
	case !fi.IsDir():
		return driver.PoolState{}, fmt.Errorf("quotadir: storage %s: %s is not a directory: %w", p.id, p.dir, driver.ErrUnavailable)
	}
	state, err := status(ctx, p)
	if err != nil {
		if created {
			_ = os.Remove(p.dir)
		}
		return driver.PoolState{}, err
	}
	p.state.CreatedDir = p.state.CreatedDir || created // once the backend's, always the backend's
	state.State = driver.MustJSON(p.state)
	_ = sweep(ctx, p.dir, 0) // best effort: the image service sweeps again (SweepUploads) and reports
	return state, nil
}

// Teardown removes the storage directory when Prepare created it (State.CreatedDir) and it is empty. A
// directory that existed before Prepare, or that holds files, stays; Teardown succeeds then too.
func (b *Backend) Teardown(ctx context.Context, spec driver.PoolSpec) error {
	p, err := resolve(spec)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return ctxErr("tear down storage "+p.id.String(), err)
	}
	if !p.state.CreatedDir {
		return nil
	}
	fi, err := os.Lstat(p.dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("quotadir: storage %s: %w: %w", p.id, driver.ErrUnavailable, err)
	case !fi.IsDir():
		return nil // replaced by a file or a symbolic link: not the directory Prepare made
	}
	err = unix.Rmdir(p.dir)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST),
		errors.Is(err, unix.EBUSY):
		return nil // gone, or it holds files, or something is mounted on it: it stays
	}
	return fmt.Errorf("quotadir: storage %s: remove %s: %w: %w", p.id, p.dir, driver.ErrUnavailable, err)
}

// Status reports the quota as capacity and what the files leave of it as available space. It fails with
// driver.ErrUnavailable when the directory is missing, not a directory or not writable.
func (b *Backend) Status(ctx context.Context, spec driver.PoolSpec) (driver.PoolState, error) {
	p, err := resolve(spec)
	if err != nil {
		return driver.PoolState{}, err
	}
	return status(ctx, p)
}

// status checks that the storage directory is usable and measures it.
func status(ctx context.Context, p *pool) (driver.PoolState, error) {
	if err := ready(ctx, p); err != nil {
		return driver.PoolState{}, err
	}
	if err := unix.Access(p.dir, unix.W_OK|unix.X_OK); err != nil {
		return driver.PoolState{}, fmt.Errorf("quotadir: storage %s: %s is not writable: %w: %w", p.id, p.dir, driver.ErrUnavailable, err)
	}
	u, err := measure(ctx, p.dir)
	if err != nil {
		return driver.PoolState{}, fmt.Errorf("quotadir: storage %s: %w", p.id, err)
	}
	return driver.PoolState{Capacity: p.quota, Available: max(0, p.quota-u.allocated)}, nil
}

// ready checks, before any work in the storage, that ctx is alive and that the directory is there: objects
// are never created in, nor reported missing from, a storage that is not reachable.
func ready(ctx context.Context, p *pool) error {
	if err := ctx.Err(); err != nil {
		return ctxErr("storage "+p.id.String(), err)
	}
	var st unix.Stat_t
	if err := unix.Stat(p.dir, &st); err != nil {
		return fmt.Errorf("quotadir: storage %s: directory %s unreachable: %w: %w", p.id, p.dir, driver.ErrUnavailable, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("quotadir: storage %s: %s is not a directory: %w", p.id, p.dir, driver.ErrUnavailable)
	}
	return nil
}

// usage is what the files of a storage directory hold.
type usage struct {
	committed int64 // virtual sizes of the volumes plus sizes of the images: what the quota bounds
	allocated int64 // bytes every file directly in the directory allocates (st_blocks × 512)
}

// measure reads the directory's usage; it honours ctx between batches of entries.
func measure(ctx context.Context, dir string) (usage, error) {
	var u usage
	d, err := os.Open(dir)
	if err != nil {
		return u, fmt.Errorf("open %s: %w: %w", dir, driver.ErrUnavailable, err)
	}
	defer d.Close()
	for {
		if err := ctx.Err(); err != nil {
			return u, ctxErr("measure "+dir, err)
		}
		names, rerr := d.Readdirnames(1024)
		for _, name := range names {
			var st unix.Stat_t
			if err := unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue // removed meanwhile
				}
				return u, fmt.Errorf("stat %s: %w: %w", filepath.Join(dir, name), driver.ErrUnavailable, err)
			}
			if st.Mode&unix.S_IFMT != unix.S_IFREG {
				continue
			}
			u.allocated = addSat(u.allocated, st.Blocks*512)
			if isObject(name) {
				u.committed = addSat(u.committed, st.Size)
			}
		}
		if errors.Is(rerr, io.EOF) {
			return u, nil
		}
		if rerr != nil {
			return u, fmt.Errorf("read %s: %w: %w", dir, driver.ErrUnavailable, rerr)
		}
	}
}

// isObject reports whether name is the file of a volume or an image (not a partial upload).
func isObject(name string) bool {
	for _, kind := range []driver.ObjectKind{driver.KindVolume, driver.KindImage} {
		if rest, ok := strings.CutPrefix(name, string(kind)+"-"); ok {
			id, err := uuid.Parse(rest)
			return err == nil && id.String() == rest
		}
	}
	return false
}

// addSat adds two non-negative sizes, saturating at the largest int64.
func addSat(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return 1<<63 - 1
}

// checkQuota refuses to commit more bytes when the storage's commitments would exceed the quota. It must
// run under lockDir, with `release` bytes already counted in u that the operation gives back (the current
// size of a volume being extended).
func checkQuota(p *pool, u usage, release, more int64, what string) error {
	after := addSat(u.committed-release, more)
	if after > p.quota {
		left := max(0, p.quota-(u.committed-release))
		return fmt.Errorf("quotadir: storage %s: %s needs %d bytes, the quota of %d bytes has %d left: %w",
			p.id, what, more, p.quota, left, driver.ErrTooLarge)
	}
	return nil
}

// lockDir takes the advisory lock of the storage directory (flock, exclusive) that makes checking the
// quota and committing bytes one step, for every instance and process; the returned function releases it.
// It waits for the lock as long as ctx lets it.
func lockDir(ctx context.Context, p *pool) (func(), error) {
	d, err := os.Open(p.dir)
	if err != nil {
		return nil, fmt.Errorf("quotadir: storage %s: %w: %w", p.id, driver.ErrUnavailable, err)
	}
	delay := 100 * time.Microsecond
	for {
		err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = d.Close() }, nil // closing the descriptor releases the lock
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			_ = d.Close()
			return nil, fmt.Errorf("quotadir: storage %s: lock %s: %w: %w", p.id, p.dir, driver.ErrUnavailable, err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			_ = d.Close()
			return nil, ctxErr("storage "+p.id.String()+": wait for its lock", ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 10*time.Millisecond)
	}
}

// syncDir makes the directory's entries durable (a new, renamed or removed file).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// ctxErr reports that ctx ended while doing what: a deadline is driver.ErrTimeout, and the context's error
// stays in the chain (errors.Is(err, context.Canceled)).
func ctxErr(what string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("quotadir: %s: %w: %w", what, driver.ErrTimeout, err)
	}
	return fmt.Errorf("quotadir: %s: %w", what, err)
}

// fileErr maps a file-system error of an object to an error kind: a missing file is driver.ErrNotFound, a
// full disk driver.ErrTooLarge, anything else driver.ErrUnavailable.
func fileErr(err error, what string) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("quotadir: %s: %w: %w", what, driver.ErrNotFound, err)
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT), errors.Is(err, unix.EFBIG):
		return fmt.Errorf("quotadir: %s: the storage is full: %w: %w", what, driver.ErrTooLarge, err)
	default:
		return fmt.Errorf("quotadir: %s: %w: %w", what, driver.ErrUnavailable, err)
	}
}
