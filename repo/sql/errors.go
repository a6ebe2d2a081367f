package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/uptrace/bun/driver/pgdriver"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// constraintRule says what a violated constraint means to a caller.
type constraintRule struct {
	entity string // the entity the message is about
	msg    string // for a unique violation, or for a foreign key violated by an insert or update
	inUse  string // for a foreign key violated by a delete
}

// constraints maps constraint names (PostgreSQL's, and the same names derived from SQLite's messages) to
// their meaning. The repositories check these rules before writing, with precise messages; these are the
// messages of the racing writer that lost.
var constraints = map[string]constraintRule{
	"storages_pkey":               {entity: "storage", msg: "a storage with this id exists"},
	"storages_name_key":           {entity: "storage", msg: "a storage with this name exists"},
	"storages_location_key":       {entity: "storage", msg: "another storage already uses this location"},
	"volumes_pkey":                {entity: "volume", msg: "a volume with this id exists"},
	"volumes_storage_id_name_key": {entity: "volume", msg: "a volume with this name exists on this storage"},
	"volumes_storage_id_fkey":     {entity: "storage", msg: "storage not found", inUse: "the storage still holds volumes"},
	"images_pkey":                 {entity: "image", msg: "an image with this id exists"},
	"images_storage_id_name_key":  {entity: "image", msg: "an image with this name exists on this storage"},
	"images_storage_id_fkey":      {entity: "storage", msg: "storage not found", inUse: "the storage still holds images"},
	"vms_pkey":                    {entity: "vm", msg: "a VM with this id exists"},
	"vms_name_key":                {entity: "vm", msg: "a VM with this name exists"},
	"vm_disks_pkey":               {entity: "vm", msg: "a volume is attached twice"},
	"vm_disks_vm_id_fkey":         {entity: "vm", msg: "vm not found"},
	"vm_disks_volume_id_fkey":     {entity: "volume", msg: "volume not found", inUse: "the volume is attached to a VM"},
	"vm_cdroms_pkey":              {entity: "vm", msg: "an image is attached twice"},
	"vm_cdroms_vm_id_fkey":        {entity: "vm", msg: "vm not found"},
	"vm_cdroms_image_id_fkey":     {entity: "image", msg: "image not found", inUse: "the image is used as a cdrom by a VM"},
	"vm_interfaces_pkey":          {entity: "vm", msg: "an interface is listed twice"},
	"vm_interfaces_vm_id_fkey":    {entity: "vm", msg: "vm not found"},
	"vm_interfaces_mac_key":       {entity: "vm", msg: "a MAC address is used twice (by this VM or another)"},
}

// violation kinds.
const (
	violUnique = iota + 1
	violFK
)

// classified is what mapErr learned about a driver error.
type classified struct {
	retry      bool   // a serialization failure or deadlock: run the unit of work again
	busy       bool   // SQLite's lock stayed taken (by another process) for the whole busy timeout
	violation  int    // violUnique or violFK
	constraint string // the violated constraint, when known
	fkOnDelete bool   // the foreign key was violated by a delete (the row is still referenced)
}

// classify inspects a driver error.
func classify(err error) classified {
	var pe pgdriver.Error
	if errors.As(err, &pe) {
		c := classified{constraint: pe.Field('n')}
		switch code := pe.Field('C'); code {
		case "40001", "40P01", "55P03":
			c.retry = true
		case "23505":
			c.violation = violUnique
		case "23503":
			c.violation = violFK
			c.fkOnDelete = strings.HasPrefix(pe.Field('M'), "update or delete on table")
		}
		return c
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		var c classified
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			c.violation = violUnique
			c.constraint = sqliteConstraint(se.Error(), se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			c.violation = violFK
		default:
			// ON DELETE RESTRICT reports SQLITE_CONSTRAINT_TRIGGER.
			if se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT && strings.Contains(se.Error(), "FOREIGN KEY constraint failed") {
				c.violation = violFK
			}
		}
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			c.busy = true
		}
		return c
	}
	return classified{}
}

// sqliteConstraint derives the constraint name from "UNIQUE constraint failed: volumes.storage_id,
// volumes.name" the way the PostgreSQL schema names it: volumes_storage_id_name_key (or volumes_pkey).
func sqliteConstraint(msg string, pk bool) string {
	i := strings.LastIndex(msg, "constraint failed: ")
	if i < 0 {
		return ""
	}
	cols := msg[i+len("constraint failed: "):]
	if j := strings.Index(cols, " ("); j >= 0 {
		cols = cols[:j]
	}
	var table string
	var names []string
	for _, tc := range strings.Split(cols, ",") {
		t, c, ok := strings.Cut(strings.TrimSpace(tc), ".")
		if !ok {
			return ""
		}
		table = t
		names = append(names, strings.TrimSpace(c))
	}
	if pk {
		return table + "_pkey"
	}
	return table + "_" + strings.Join(names, "_") + "_key"
}

// mapErr turns a database error into an error wrapping one errkind kind: a unique violation is
// AlreadyExists, a foreign key violation NotFound (insert, update) or InUse (delete), a serialization
// failure or busy database Conflict, an unreachable database or an expired context Unavailable. Errors that
// already carry a kind pass through; anything else is an internal error.
func (s *Store) mapErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var ke *errkind.Error
	var ve *errkind.ValidationError
	if errors.As(err, &ke) || errors.As(err, &ve) {
		return err
	}
	if errors.Is(err, sql.ErrNoRows) {
		return errkind.Wrap(errkind.NotFound, err, "", "", "not found")
	}
	c := classify(err)
	switch {
	case c.violation == violUnique:
		r, ok := constraints[c.constraint]
		if !ok {
			r = constraintRule{msg: "violates a uniqueness rule"}
		}
		return errkind.Wrap(errkind.AlreadyExists, err, r.entity, "", "%s", r.msg)
	case c.violation == violFK:
		r, ok := constraints[c.constraint]
		if c.fkOnDelete {
			if !ok || r.inUse == "" {
				r.inUse = "still referenced"
			}
			return errkind.Wrap(errkind.InUse, err, r.entity, "", "%s", r.inUse)
		}
		if !ok {
			r.msg = "refers to a storage, volume, image or VM that does not exist"
		}
		return errkind.Wrap(errkind.NotFound, err, r.entity, "", "%s", r.msg)
	case c.retry:
		return errkind.Wrap(errkind.Conflict, err, "database", "", "conflicting concurrent unit of work")
	case c.busy:
		return errkind.Wrap(errkind.Conflict, err, "database", "", "the database file stayed locked by another writer")
	}
	if cerr := ctx.Err(); cerr != nil {
		if !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return errkind.Wrap(errkind.Unavailable, err, "database", "", "no answer within the deadline")
	}
	if unreachable(err) {
		return errkind.Wrap(errkind.Unavailable, err, "database", "", "unreachable")
	}
	return fmt.Errorf("database: %w", err)
}

// unreachable reports errors that mean the database cannot be used now (down, network, disk).
func unreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var pe pgdriver.Error
	if errors.As(err, &pe) {
		code := pe.Field('C')
		return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "53") || strings.HasPrefix(code, "57P") ||
			code == "57014" || code == "3D000" || code == "28000" || code == "28P01"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT,
			sqlite3.SQLITE_FULL, sqlite3.SQLITE_PERM, sqlite3.SQLITE_READONLY:
			return true
		}
	}
	return strings.HasPrefix(err.Error(), "pgdriver: SSL is not enabled")
}
