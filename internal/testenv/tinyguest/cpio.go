package tinyguest

import (
	"fmt"
	"io"
	"strings"
)

// File type bits of a cpio mode (the same as struct stat's st_mode).
const (
	cpioDir  = 0o040000
	cpioReg  = 0o100000
	cpioChar = 0o020000
)

// cpioWriter writes a cpio archive in the "newc" format (the format the Linux kernel unpacks as an
// initramfs): a 110-byte ASCII header of hex fields, the NUL-terminated name padded to 4 bytes, then the data
// padded to 4 bytes, ending with a TRAILER!!! entry. Timestamps and owners are zero, so the output is
// reproducible.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	err error
}

func newCPIOWriter(w io.Writer) *cpioWriter { return &cpioWriter{w: w} }

// Dir adds a directory.
func (c *cpioWriter) Dir(name string, perm uint32) error {
	return c.entry(name, cpioDir|perm&0o7777, 2, 0, 0, nil)
}

// File adds a regular file.
func (c *cpioWriter) File(name string, perm uint32, data []byte) error {
	return c.entry(name, cpioReg|perm&0o7777, 1, 0, 0, data)
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm, major, minor uint32) error {
	return c.entry(name, cpioChar|perm&0o7777, 1, major, minor, nil)
}

// Close writes the trailer entry. It does not close the underlying writer.
func (c *cpioWriter) Close() error {
	if c.err != nil {
		return c.err
	}
	c.ino = 0
	err := c.raw("TRAILER!!!", 0, 1, 0, 0, nil)
	c.err = fmt.Errorf("tinyguest: cpio archive already closed")
	return err
}

func (c *cpioWriter) entry(name string, mode, nlink, rmajor, rminor uint32, data []byte) error {
	if c.err != nil {
		return c.err
	}
	name = strings.TrimPrefix(name, "/")
	if name == "" || name == "TRAILER!!!" || strings.Contains(name, "\x00") {
		return fmt.Errorf("tinyguest: bad cpio entry name %q", name)
	}
	if uint64(len(data)) > 0xffffffff {
		return fmt.Errorf("tinyguest: cpio entry %s too large (%d bytes)", name, len(data))
	}
	c.ino++
	return c.raw(name, mode, nlink, rmajor, rminor, data)
}

func (c *cpioWriter) raw(name string, mode, nlink, rmajor, rminor uint32, data []byte) error {
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+4+len(data)+3)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	buf = append(buf, data...)
	buf = pad4(buf)
	if _, err := c.w.Write(buf); err != nil {
		c.err = fmt.Errorf("tinyguest: write cpio entry %s: %w", name, err)
	}
	return c.err
}

// pad4 appends NUL bytes up to a multiple of 4 (entries start 4-aligned, so the length is the offset).
func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
