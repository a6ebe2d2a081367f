package cloudinit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"regexp"
	"slices"

	"github.com/kdomanski/iso9660"

	"github.com/openvair/openvair/internal/errkind"
)

// VolumeID is the volume identifier of a seed image: cloud-init's NoCloud datasource looks for a
// filesystem labelled "cidata" (or "CIDATA").
const VolumeID = "cidata"

// isoFileName is a file name WriteISO accepts: one that github.com/kdomanski/iso9660 records unchanged.
// That library writes plain ISO 9660 (no Joliet, no Rock Ridge); it lower-cases names, replaces characters
// outside the d1 set with '_', keeps at most 30 characters with the ";1" version, and joins extra dots with
// '_'. Names of lower-case letters, digits, '-' and '_' with at most one dot and 28 characters pass through
// as they are, and every reader shows them as given: Linux's isofs (default map=normal) lower-cases and
// drops the trailing ";1", as do xorriso and the library's own reader.
var isoFileName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*(\.[a-z0-9_-]{1,8})?$`)

// maxISOFileName is the longest name isoFileName may match: 30 characters less the ";1" version.
const maxISOFileName = 28

// isoEpoch is the recording time of every directory record and volume date: a fixed time makes the image
// depend on its files only. ECMA-119 9.1.5 (years since 1900, month, day, hour, minute, second, offset).
var isoEpoch = [7]byte{70, 1, 1, 0, 0, 0, 0}

// isoEpochVD is isoEpoch as a volume descriptor date (ECMA-119 8.4.26.1).
var isoEpochVD = append([]byte("1970010100000000"), 0)

// sectorSize is the ISO 9660 logical block size the library writes.
const sectorSize = 2048

// WriteISO writes a NoCloud seed image to w: an ISO 9660 filesystem labelled VolumeID holding files (a
// name → contents map, such as Seed returns) in its root directory. The image is the same bytes for the same
// files: the library's timestamps (the time of writing in the volume descriptor, a zero time, shown as 2049,
// in the directory records) are replaced with 1970-01-01 00:00:00 UTC.
//
// File names must be lower-case letters, digits, '-' and '_', with at most one dot, 28 characters at most,
// so that ISO 9660 records them unchanged (no Joliet or Rock Ridge is needed for "user-data",
// "meta-data" and "network-config"). Other names are refused with errkind.Invalid. The library stages the
// files in a temporary directory (os.TempDir), removed before WriteISO returns; the image is built in
// memory (a seed is a few hundred KiB at most) and written to w at once. WriteISO may be called
// concurrently.
func WriteISO(w io.Writer, files map[string][]byte) error {
	names := make([]string, 0, len(files))
	for name := range files {
		if len(name) > maxISOFileName || !isoFileName.MatchString(name) {
			return errkind.New(errkind.Invalid, "", "", "cannot put %q in a cloud-init seed image: names must be at most %d lower-case letters, digits, '-' and '_', with at most one dot", name, maxISOFileName)
		}
		names = append(names, name)
	}
	slices.Sort(names)

	iw, err := iso9660.NewWriter()
	if err != nil {
		return fmt.Errorf("cloud-init seed image: %w", err)
	}
	defer func() { _ = iw.Cleanup() }()
	for _, name := range names {
		if err := iw.AddFile(bytes.NewReader(files[name]), name); err != nil {
			return fmt.Errorf("cloud-init seed image: staging %s: %w", name, err)
		}
	}
	var img bytes.Buffer
	if err := iw.WriteTo(&img, VolumeID); err != nil {
		return fmt.Errorf("cloud-init seed image: %w", err)
	}
	if err := fixTimes(img.Bytes()); err != nil {
		return fmt.Errorf("cloud-init seed image: %w", err)
	}
	if _, err := w.Write(img.Bytes()); err != nil {
		return fmt.Errorf("cloud-init seed image: %w", err)
	}
	return nil
}

// fixTimes sets the dates of the primary volume descriptor and of the root directory's records of img to
// isoEpoch (the seed has no subdirectories).
func fixTimes(img []byte) error {
	const pvdOffset = 16 * sectorSize
	if len(img) < pvdOffset+sectorSize || img[pvdOffset] != 1 || string(img[pvdOffset+1:pvdOffset+6]) != "CD001" {
		return fmt.Errorf("no primary volume descriptor where ISO 9660 puts it")
	}
	pvd := img[pvdOffset : pvdOffset+sectorSize]
	for _, off := range []int{813, 830, 864} { // creation, modification, effective; expiration stays unset
		copy(pvd[off:off+17], isoEpochVD)
	}
	root := pvd[156:190]
	copy(root[18:25], isoEpoch[:])
	loc := int64(binary.LittleEndian.Uint32(root[2:6])) * sectorSize
	size := int64(binary.LittleEndian.Uint32(root[10:14]))
	if loc < pvdOffset || loc+size > int64(len(img)) || size%sectorSize != 0 {
		return fmt.Errorf("root directory extent out of the image")
	}
	dir := img[loc : loc+size]
	for off := 0; off < len(dir); {
		n := int(dir[off])
		if n == 0 { // records do not cross sectors: the rest of this one is padding
			off = (off/sectorSize + 1) * sectorSize
			continue
		}
		if n < 33 || off+n > len(dir) {
			return fmt.Errorf("bad directory record at offset %d", loc+int64(off))
		}
		copy(dir[off+18:off+25], isoEpoch[:])
		off += n
	}
	return nil
}
