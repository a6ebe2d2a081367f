package localfs

import "github.com/openvair/openvair/internal/imagefmt"

// The image pipeline: imagefmt streams with SHA-256, size limit and qcow2 checks, and names formats.
var (
	copyImage   = imagefmt.CopyAt
	detectImage = imagefmt.Detect
)
