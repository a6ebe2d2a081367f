package localfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
)

// TODO: temporary stand-in until internal/imagefmt lands; replace with imagefmt.Copy and imagefmt.Detect.

func copyImage(ctx context.Context, w io.Writer, r io.Reader, maxSize int64) (driver.ImageInfo, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var n int64
	var head []byte
	for {
		if err := ctx.Err(); err != nil {
			return driver.ImageInfo{}, err
		}
		m, err := r.Read(buf)
		if m > 0 {
			n += int64(m)
			if maxSize > 0 && n > maxSize {
				return driver.ImageInfo{}, errkind.New(errkind.TooLarge, "image", "", "larger than %d bytes", maxSize)
			}
			if len(head) < detectHead {
				head = append(head, buf[:min(m, detectHead-len(head))]...)
			}
			h.Write(buf[:m])
			if _, werr := w.Write(buf[:m]); werr != nil {
				return driver.ImageInfo{}, werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return driver.ImageInfo{}, err
		}
	}
	return driver.ImageInfo{Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Format: detectImage(head)}, nil
}

func detectImage(head []byte) driver.ImageFormat {
	switch {
	case len(head) >= 4 && string(head[:4]) == "QFI\xfb":
		return driver.ImageQCOW2
	case len(head) >= 32774 && string(head[32769:32774]) == "CD001":
		return driver.ImageISO
	}
	return driver.ImageRaw
}
