package nfs

// Stand-in for internal/imagefmt (being written by another helper) with the same API: Copy streams an
// image while hashing, limiting and checking it; Detect names a format from the first bytes. To be
// replaced by internal/imagefmt when it lands.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/qcow2"
)

const headSize = 64 << 10

// detectFormat names the format of an image from its first bytes (up to 64 KiB).
func detectFormat(head []byte) driver.ImageFormat {
	switch {
	case bytes.HasPrefix(head, qcow2Magic):
		return driver.ImageQCOW2
	case len(head) >= 0x8001+5 && string(head[0x8001:0x8001+5]) == "CD001":
		return driver.ImageISO
	}
	return driver.ImageRaw
}

// copyImage copies r to w, refusing more than maxSize bytes (0: no limit) and qcow2 images with a backing
// or external data file, and reports size, SHA-256 and format.
func copyImage(ctx context.Context, w io.Writer, r io.Reader, maxSize int64) (driver.ImageInfo, error) {
	h := sha256.New()
	head := make([]byte, headSize)
	n, err := io.ReadFull(r, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return driver.ImageInfo{}, err
	}
	head = head[:n]
	info := driver.ImageInfo{Format: detectFormat(head)}
	if info.Format == driver.ImageQCOW2 {
		hdr, err := qcow2.ReadHeader(bytes.NewReader(head))
		if err != nil {
			return info, errkind.Wrap(errkind.Invalid, err, "image", "", "invalid qcow2 image")
		}
		if hdr.BackingFile != "" || hdr.HasDataFile() {
			return info, errkind.New(errkind.Invalid, "image", "", "qcow2 images with a backing or external data file are refused")
		}
	}
	buf := make([]byte, 1<<20)
	chunk := head
	for {
		if err := ctx.Err(); err != nil {
			return info, err
		}
		if len(chunk) > 0 {
			info.Size += int64(len(chunk))
			if maxSize > 0 && info.Size > maxSize {
				return info, errkind.New(errkind.TooLarge, "image", "", "image larger than the limit of %d bytes", maxSize)
			}
			h.Write(chunk)
			if _, err := w.Write(chunk); err != nil {
				return info, err
			}
		}
		n, err := r.Read(buf)
		chunk = buf[:n]
		if errors.Is(err, io.EOF) {
			if n == 0 {
				break
			}
			continue
		}
		if err != nil {
			return info, err
		}
	}
	info.SHA256 = hex.EncodeToString(h.Sum(nil))
	return info, nil
}
