package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/google/uuid"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/internal/urlfetch"
	"github.com/openvair/openvair/internal/validate"
)

// OpImport is the operation kind of an image downloaded from a URL.
const OpImport = "image.import"

// ImportRequest asks for a new image downloaded from a URL: http or https, to a public address unless the
// configuration allows private ranges or hosts (see WithFetcher).
type ImportRequest struct {
	Name        string    `json:"name,omitempty"` // default: the last segment of the URL's path
	Description string    `json:"description,omitempty"`
	StorageID   uuid.UUID `json:"storage_id"`
	URL         string    `json:"url"`
	// SHA256, when set, is the expected hex SHA-256 of the content: a download that does not match is
	// refused and leaves nothing.
	SHA256 string `json:"sha256,omitempty"`
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate reports every bad field at once; it fills in the name from the URL when there is none.
func (r *ImportRequest) Validate() error {
	v := &errkind.Validator{Entity: "image"}
	u, err := url.Parse(r.URL)
	switch {
	case r.URL == "":
		v.Add("url", "is required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		v.Add("url", "must be an http or https URL")
	case r.Name == "":
		r.Name = path.Base(u.Path)
		if r.Name == "/" || r.Name == "." {
			r.Name = u.Hostname()
		}
	}
	r.SHA256 = strings.ToLower(r.SHA256)
	v.Check(r.SHA256 == "" || sha256RE.MatchString(r.SHA256), "sha256", "must be 64 hex digits")
	validate.NormalizeName(&r.Name)
	validate.Name(v, "name", r.Name)
	validate.Description(v, "description", r.Description)
	v.Check(r.StorageID != uuid.Nil, "storage_id", "is required")
	return v.Err()
}

// WithFetcher lets the service import images from URLs through f, whose configuration is the SSRF guard
// (the ranges and hosts it allows besides public addresses). Without it, Import is ErrUnsupported.
func WithFetcher(f *urlfetch.Fetcher) Option {
	return func(s *Service) { s.fetcher = f }
}

// Import downloads an image from a URL into an available storage (an image.import operation, which a
// worker may run: ImportAsync). The URL is checked before anything is recorded or queued: a scheme other
// than http and https, or a host that resolves to a loopback, private, link-local or otherwise refused
// address, is ErrInvalid naming url and the reason; every redirect is checked again, and the connection
// goes to the address that was checked. The content is stored as an upload is (format detected, SHA-256
// computed, MaxSize and the storage's free space enforced); with req.SHA256 a download that does not match
// is refused (ErrInvalid naming sha256). Progress counts the bytes received against Content-Length; a
// cancelled import leaves nothing.
func (s *Service) Import(ctx context.Context, req ImportRequest) (*Image, error) {
	if err := s.checkImport(ctx, &req); err != nil {
		return nil, err
	}
	return operation.Do(ctx, s.ops, opSpec(OpImport, uuid.Nil, true, req), func(ctx context.Context) (*Image, error) {
		return s.importURL(ctx, req)
	})
}

// ImportAsync starts Import as an operation that a worker runs, and returns it at once.
func (s *Service) ImportAsync(ctx context.Context, req ImportRequest) (*operation.Operation, error) {
	return operation.Async(ctx, s.ops, func(ctx context.Context) error { _, err := s.Import(ctx, req); return err })
}

// checkImport validates the request and checks the URL's first hop with the SSRF guard.
func (s *Service) checkImport(ctx context.Context, req *ImportRequest) error {
	if err := req.Validate(); err != nil {
		return err
	}
	if s.fetcher == nil {
		return errkind.New(errkind.Unsupported, "image", "", "imports from URLs are not configured")
	}
	return s.fetcher.Check(ctx, req.URL)
}

// importURL downloads req.URL, which Import checked (Open checks every hop again), and stores it through
// the upload path.
func (s *Service) importURL(ctx context.Context, req ImportRequest) (*Image, error) {
	resp, err := s.fetcher.Open(ctx, req.URL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var content io.Reader = resp.Body
	if req.SHA256 != "" {
		content = &verifyingReader{r: resp.Body, h: sha256.New(), want: req.SHA256}
	}
	length := resp.ContentLength
	if length < 0 {
		length = 0
	}
	img, err := s.create(ctx, CreateRequest{Name: req.Name, Description: req.Description, StorageID: req.StorageID,
		ContentLength: length}, content)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", urlfetch.Redact(resp.URL), err)
	}
	return img, nil
}

// verifyingReader passes r through and, at its end, fails instead of reporting io.EOF when the content's
// SHA-256 is not want, so that the upload path discards what it wrote.
type verifyingReader struct {
	r    io.Reader
	h    hash.Hash
	want string
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			return n, errkind.Field("image", "sha256", "the download's SHA-256 is %s, not the expected %s", got, v.want)
		}
	}
	return n, err
}
