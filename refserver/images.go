package refserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path"
	"reflect"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/google/uuid"
	"github.com/openvair/openvair/image"
)

type imageOutput struct {
	Location string `header:"Location" doc:"Set on create."`
	ETag     string `header:"ETag" doc:"The image's version as a strong entity tag (\"3\"), for If-Match and If-None-Match."`
	Body     *Image
}

func imageResp(img *image.Image) *imageOutput {
	return &imageOutput{ETag: etag(img.Version), Body: imageOut(img)}
}

// ImagePage is one page of images; next_cursor is absent on the last page.
type ImagePage struct {
	Items      []*Image `json:"items" nullable:"false"`
	NextCursor string   `json:"next_cursor,omitempty"`
}

type imagePageOutput struct{ Body ImagePage }

type listImagesInput struct {
	Limit     int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Page size, 1 to 1000 (default 100)."`
	Cursor    string `query:"cursor" maxLength:"64" doc:"The next_cursor of the previous page."`
	StorageID string `query:"storage_id" format:"uuid" doc:"Only images on this storage."`
	Status    string `query:"status" enum:"uploading,available,deleting,error" doc:"Only images with this status."`
	Name      string `query:"name" maxLength:"255" doc:"Only images with this name."`
}

type editImageInput struct {
	ID   string `path:"id" format:"uuid" doc:"The entity's id."`
	Body MetaEdit
}

// uploadImageInput has no body field: Huma leaves the request body alone, and the handler streams it.
type uploadImageInput struct {
	StorageID   string `query:"storage_id" format:"uuid" doc:"The storage to upload to (or a storage_id form field before the file part)."`
	Name        string `query:"name" maxLength:"255" doc:"The image's name (or a name form field; default: the file part's file name)."`
	Description string `query:"description" maxLength:"255" doc:"The image's description (or a description form field)."`

	r *http.Request
	w http.ResponseWriter
}

// Resolve keeps the raw request so the handler can stream its body.
func (in *uploadImageInput) Resolve(ctx huma.Context) []error {
	in.r, in.w = humago.Unwrap(ctx)
	return nil
}

// multipartOverhead is what a multipart upload may add to the image size (headers, form fields).
const multipartOverhead = 1 << 20

func (s *server) registerImages(api huma.API) {
	const tag = "images"
	svc := s.sys.Images

	huma.Register(api, s.op(http.MethodGet, "/api/v1/images", "listImages", "List images", tag),
		func(ctx context.Context, in *listImagesInput) (*imagePageOutput, error) {
			sid, err := optionalID("storage_id", in.StorageID)
			if err != nil {
				return nil, err
			}
			page, err := svc.List(ctx, image.ListOptions{Limit: in.Limit, Cursor: in.Cursor, StorageID: sid,
				Status: image.Status(in.Status), Name: in.Name})
			if err != nil {
				return nil, s.problemOf(ctx, locateFields(err, inQuery))
			}
			out := &imagePageOutput{Body: ImagePage{Items: make([]*Image, 0, len(page.Items)), NextCursor: page.NextCursor}}
			for _, i := range page.Items {
				out.Body.Items = append(out.Body.Items, imageOut(i))
			}
			return out, nil
		})

	up := created(s.op(http.MethodPost, "/api/v1/images", "uploadImage",
		"Upload an image: the request body is the image (or a multipart/form-data file part), streamed into the storage", tag,
		http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusRequestEntityTooLarge,
		http.StatusUnprocessableEntity, http.StatusServiceUnavailable, http.StatusGatewayTimeout))
	up.Metadata[streamedBody] = true // its Idempotency-Key fingerprint does not read the body
	up.Description = fmt.Sprintf("The content is streamed into the storage as it arrives (never buffered whole) and identified by its bytes "+
		"(ISO 9660, qcow2, or raw). The limit is %d bytes (413 beyond it). With an Idempotency-Key, the body is not "+
		"read to recognise a retry: the same key names the same request when the path, the query (storage_id, name, "+
		"description), Content-Length and Content-Type are the same; put the name fields in the query rather than in "+
		"a multipart form to have them count.", s.cfg.MaxImageSize)
	// Only the binary content type is declared before Register: a declared object schema would make Huma
	// read and parse the body itself. The multipart form is added to the document afterwards.
	up.RequestBody = &huma.RequestBody{
		Required: true,
		Content: map[string]*huma.MediaType{
			"application/octet-stream": {Schema: &huma.Schema{Type: "string", Format: "binary"}},
		},
	}
	huma.Register(api, up, func(ctx context.Context, in *uploadImageInput) (*imageOutput, error) {
		img, err := s.upload(ctx, in)
		if err != nil {
			var p *Problem
			if errors.As(err, &p) {
				return nil, p
			}
			return nil, s.fail(ctx, err)
		}
		out := imageResp(img)
		out.Location = s.location("images", img.ID)
		return out, nil
	})
	if item := api.OpenAPI().Paths["/api/v1/images"]; item != nil && item.Post != nil {
		item.Post.RequestBody.Content["multipart/form-data"] = &huma.MediaType{Schema: &huma.Schema{Type: "object",
			Properties: map[string]*huma.Schema{
				"storage_id":  {Type: "string", Format: "uuid"},
				"name":        {Type: "string"},
				"description": {Type: "string"},
				"file":        {Type: "string", Format: "binary", Description: "The image; the last part."},
			}, Required: []string{"file"}}}
		// A JSON body imports the image from a URL instead.
		item.Post.RequestBody.Content["application/json"] = &huma.MediaType{Schema: api.OpenAPI().Components.Schemas.Schema(
			reflect.TypeFor[ImageImport](), true, "ImageImport")}
	}

	huma.Register(api, s.op(http.MethodGet, "/api/v1/images/{id}", "getImage", "Get an image", tag, http.StatusNotFound),
		func(ctx context.Context, in *idInput) (*imageOutput, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*imageOutput, error) {
				img, err := svc.Get(ctx, id)
				if err != nil {
					return nil, err
				}
				return imageResp(img), nil
			})
		})

	huma.Register(api, s.op(http.MethodPatch, "/api/v1/images/{id}", "editImage", "Rename or describe an image", tag,
		http.StatusBadRequest, http.StatusNotFound, http.StatusConflict),
		func(ctx context.Context, in *editImageInput) (*imageOutput, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*imageOutput, error) {
				img, err := svc.Edit(ctx, id, image.EditRequest{Name: in.Body.Name, Description: in.Body.Description})
				if err != nil {
					return nil, err
				}
				return imageResp(img), nil
			})
		})

	huma.Register(api, noContent(s.op(http.MethodDelete, "/api/v1/images/{id}", "deleteImage",
		"Delete an image no VM uses", tag, http.StatusNotFound, http.StatusConflict, http.StatusServiceUnavailable,
		http.StatusGatewayTimeout)),
		func(ctx context.Context, in *idInput) (*struct{}, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*struct{}, error) {
				if err := svc.Delete(ctx, id); err != nil {
					return nil, err
				}
				return nil, nil
			})
		})
}

// upload streams the request body (or its multipart file part) into sys.Images.Create.
func (s *server) upload(ctx context.Context, in *uploadImageInput) (*image.Image, error) {
	r := in.r
	req := image.CreateRequest{Name: in.Name, Description: in.Description}
	sid := in.StorageID
	// The fields come from query parameters, or from form fields of a multipart body, or the file part's
	// file name: the problem names them where the client put them.
	fromQuery := map[string]bool{"name": in.Name != "", "description": in.Description != "", "storage_id": in.StorageID != ""}
	mediaType, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediaType == "application/json" {
		return s.importImage(ctx, in)
	}
	limit := s.cfg.MaxImageSize
	if mediaType == "multipart/form-data" {
		limit += multipartOverhead
	}
	if r.ContentLength > limit {
		return nil, newProblem(http.StatusRequestEntityTooLarge, "too_large",
			fmt.Sprintf("the image is %d bytes; the limit is %d bytes", r.ContentLength, s.cfg.MaxImageSize))
	}
	body := http.MaxBytesReader(in.w, r.Body, limit)
	defer body.Close()

	var content io.Reader = body
	if mediaType != "multipart/form-data" && r.ContentLength > 0 {
		req.ContentLength = r.ContentLength // the total of the upload operation's progress
	}
	if mediaType == "multipart/form-data" {
		part, err := s.filePart(multipart.NewReader(body, params["boundary"]), &req, &sid)
		if err != nil {
			return nil, err
		}
		content = part
	}
	if sid != "" {
		id, err := uuid.Parse(sid)
		if err != nil {
			return nil, invalidUUID("query", "storage_id", sid)
		}
		req.StorageID = id
	}
	img, err := s.sys.Images.Create(ctx, req, content)
	return img, locateFields(err, func(f string) string {
		if fromQuery[f] || mediaType != "multipart/form-data" {
			return "query." + f
		}
		return "body." + f
	})
}

// ImageImport is the JSON body of an image import: POST /api/v1/images with Content-Type application/json.
type ImageImport struct {
	Name        string    `json:"name,omitempty" maxLength:"255" doc:"Default: the last segment of the URL's path."`
	Description string    `json:"description,omitempty" maxLength:"255"`
	StorageID   uuid.UUID `json:"storage_id" format:"uuid"`
	URL         string    `json:"url" maxLength:"4096" doc:"http or https; a host that resolves to a loopback, private, link-local or other non-public address is refused (422) unless the server allows it (import_allow)."`
	SHA256      string    `json:"sha256,omitempty" pattern:"^[0-9a-fA-F]{64}$" doc:"The expected SHA-256 of the content: a download that does not match is refused (422) and leaves nothing."`
}

// importImage reads an ImageImport body and downloads the image (an image.import operation: with Prefer:
// respond-async the answer is 202 and the operation shows the bytes received).
func (s *server) importImage(ctx context.Context, in *uploadImageInput) (*image.Image, error) {
	body := http.MaxBytesReader(in.w, in.r.Body, 64<<10)
	defer body.Close()
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	var req ImageImport
	if err := dec.Decode(&req); err != nil {
		return nil, newProblem(http.StatusBadRequest, "invalid", "malformed import request: "+err.Error())
	}
	img, err := s.sys.Images.Import(ctx, image.ImportRequest{Name: req.Name, Description: req.Description,
		StorageID: req.StorageID, URL: req.URL, SHA256: req.SHA256})
	return img, err
}

// filePart reads the form fields up to the first file part and returns that part, unread.
func (s *server) filePart(mr *multipart.Reader, req *image.CreateRequest, sid *string) (*multipart.Part, error) {
	bad := func(msg string) error { return newProblem(http.StatusBadRequest, "invalid", msg) }
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil, bad("the multipart body has no file part")
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, err
			}
			return nil, bad("malformed multipart body: " + err.Error())
		}
		if part.FileName() != "" || part.FormName() == "file" {
			if req.Name == "" && part.FileName() != "" {
				req.Name = path.Base(strings.ReplaceAll(part.FileName(), "\\", "/"))
			}
			return part, nil
		}
		v, err := io.ReadAll(io.LimitReader(part, 64<<10))
		if err != nil {
			return nil, bad("malformed multipart body: " + err.Error())
		}
		switch part.FormName() {
		case "storage_id":
			if *sid == "" {
				*sid = string(v)
			}
		case "name":
			if req.Name == "" {
				req.Name = string(v)
			}
		case "description":
			if req.Description == "" {
				req.Description = string(v)
			}
		}
	}
}
