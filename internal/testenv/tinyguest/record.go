package tinyguest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/openvair/openvair/internal/qcow2"
	"github.com/openvair/openvair/internal/testenv/tinyguest/guestrec"
)

// Record is what the guest writes on its disk at every boot: the boot count and, when it read a NoCloud
// seed on that boot, meta-data's instance-id and local-hostname and the user-data's marker (the value of a
// "tinyguest-marker:" line; see package guestrec for the convention and the on-disk format).
type Record = guestrec.Record

// ParseRecord reads a record from the start of b (RecordSize bytes read at the record's offset); ok is false
// when there is none.
func ParseRecord(b []byte) (rec Record, ok bool) { return guestrec.Parse(b) }

// UserDataMarker returns the marker the guest takes from a user-data document: the value of its first
// "tinyguest-marker:" line (at column 0, or after '#' in a script), "" when there is none.
func UserDataMarker(userData string) string { return guestrec.UserDataMarker(userData) }

// UserDataMarkerLine returns the line that gives the guest the marker m in a #cloud-config user-data (a
// top-level key; in a #! script, put "# " before it): "tinyguest-marker: m\n". m must be one line.
func UserDataMarkerLine(m string) string { return guestrec.UserDataKey + ": " + m + "\n" }

// qcow2Magic starts every qcow2 image.
var qcow2Magic = []byte{'Q', 'F', 'I', 0xfb}

// ReadRecord reads the guest's record at byte offset off (ISORecordOffset or DiskRecordOffset) of the disk
// file at path: a raw image, or a qcow2 image read through its backing chain (internal/qcow2's
// NewReaderWithBacking; a relative backing name resolves against the directory of the image that names it, as
// QEMU does), so a linked clone reads what it holds over its base. ok is false when there is no record there.
func ReadRecord(path string, off int64) (rec Record, ok bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return Record{}, false, err
	}
	defer f.Close()
	var r io.ReaderAt = f
	magic := make([]byte, 4)
	if _, err := f.ReadAt(magic, 0); err == nil && bytes.Equal(magic, qcow2Magic) {
		dir := filepath.Dir(path)
		q, err := qcow2.NewReaderWithBacking(f, func(name string) (io.ReaderAt, error) {
			if !filepath.IsAbs(name) {
				name = filepath.Join(dir, name)
			}
			dir = filepath.Dir(name) // the next level's names are relative to this file
			return os.Open(name)
		})
		if err != nil {
			return Record{}, false, fmt.Errorf("tinyguest: %s: %w", path, err)
		}
		defer q.Close()
		r = q
	}
	area := make([]byte, RecordSize)
	n, err := r.ReadAt(area, off)
	if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
		return Record{}, false, fmt.Errorf("tinyguest: read %s at %d: %w", path, off, err)
	}
	rec, ok = guestrec.Parse(area[:n])
	return rec, ok, nil
}
