// Package hostuser finds the identity QEMU runs as on this host, and prepares directories that identity
// can reach without making their content readable by anyone else.
//
// A system libvirtd runs QEMU as its own user (libvirt-qemu on Debian and Ubuntu, qemu on Fedora and RHEL)
// and, with dynamic ownership, gives each disk file to that user while the VM runs. QEMU must still be
// able to traverse every directory above the file. openvair's design: the directories it creates for
// storages are mode 0710, owned by root and by the QEMU user's group. The group may traverse (reach a file
// whose name it knows) but not list; others get nothing.
package hostuser

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
)

// Identity is a uid and gid.
type Identity struct {
	User  string
	UID   int
	GID   int
	Group string
}

// QEMUUsers are the user names system libvirt daemons run QEMU as, in the order they are looked up.
var QEMUUsers = []string{"libvirt-qemu", "qemu"}

// QEMU returns the identity QEMU runs as under this host's system libvirtd: the first of QEMUUsers that
// exists, with its primary group. ok is false when none exists (no system libvirt installed).
func QEMU() (id Identity, ok bool) {
	for _, name := range QEMUUsers {
		if id, err := Lookup(name); err == nil {
			return id, true
		}
	}
	return Identity{}, false
}

// DefaultQEMU is QEMU for a process that can give files to that identity: ok only when this process runs as
// root. A process of another user cannot change a file's group to one it is not in, nor its owner, and
// its QEMU (a session libvirtd) runs as that same user anyway. It is what drivers and the server default to.
func DefaultQEMU() (id Identity, ok bool) {
	if os.Geteuid() != 0 {
		return Identity{}, false
	}
	return QEMU()
}

// Lookup resolves a user name (or a numeric uid) to its identity with its primary group.
func Lookup(name string) (Identity, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr == nil {
			u, err = user.LookupId(name)
		}
		if err != nil {
			return Identity{}, err
		}
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return Identity{}, fmt.Errorf("user %s: %w", name, err)
	}
	id := Identity{User: u.Username, UID: uid, GID: gid}
	if g, err := user.LookupGroupId(u.Gid); err == nil {
		id.Group = g.Name
	}
	return id, nil
}

// LookupGroup resolves a group name (or a numeric gid) to its gid.
func LookupGroup(name string) (int, error) {
	if gid, err := strconv.Atoi(name); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(g.Gid)
}

// TraverseMode is the mode of a directory the QEMU group may traverse but not list.
const TraverseMode os.FileMode = 0o710

// MkdirTraversable creates dir when missing (its parent must exist) and, when gid >= 0, makes it
// traversable by that group only: owner unchanged, group gid, mode 0710. With gid < 0 a new directory is
// 0700 and an existing one is left alone. It does not change the mode of an existing directory whose group
// is already gid and which the group can traverse.
func MkdirTraversable(dir string, gid int) error {
	mode := os.FileMode(0o700)
	if gid >= 0 {
		mode = TraverseMode
	}
	if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if gid < 0 {
		return nil
	}
	return AllowTraverse(dir, gid)
}

// AllowTraverse gives dir to group gid and adds group traverse permission, keeping the rest of its mode.
func AllowTraverse(dir string, gid int) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := os.Chown(dir, -1, gid); err != nil {
		return err
	}
	return os.Chmod(dir, fi.Mode().Perm()|0o010)
}
