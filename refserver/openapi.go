package refserver

import (
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// descriptions are the operations' descriptions, by operation id; an operation that sets its own keeps it.
var descriptions = map[string]string{
	"listStorages": "Lists storages, newest first, a page at a time: pass next_cursor as cursor for the next page. " +
		"Filters combine; an unknown status or a malformed type is 422 (a type no storage has lists nothing).",
	"createStorage": "Creates a storage of one of the server's types (GET /api/v1/storage-types): type names it and " +
		"config is its configuration, checked by its backend (for example localfs: path, a directory created when " +
		"missing, or device, a block device formatted only with format: true; nfs: server and export, NFSv3 spoken " +
		"to directly). The older form, the configuration under a key named after the type (localfs: {...}), is " +
		"still accepted and deprecated. 503 when the storage cannot be reached.",
	"listStorageTypes": "Lists the storage types this server can create, each with its backend's capabilities and the " +
		"JSON Schema of its configuration (also published as the StorageCreate variants of this document).",
	"getStorage":    "Returns one storage with its capacity and free space.",
	"editStorage":   "Changes a storage's name or description; absent fields stay as they are.",
	"deleteStorage": "Deletes a storage that holds no volumes or images (409 in_use otherwise); its files are left in place.",
	"listVolumes": "Lists volumes, newest first, a page at a time: pass next_cursor as cursor for the next page. " +
		"Filters combine; an unknown status is 422.",
	"createVolume": "Creates a qcow2 or raw volume of size bytes on a storage (413 when the storage has no room). With " +
		"source, the volume starts from an image or another volume: copied (converted between raw and qcow2, sparse, " +
		"with progress: use Prefer: respond-async and follow the operation), linked (a qcow2 overlay on the source, " +
		"which then cannot be deleted: 409 naming the linked volumes) or instant (a reflink copy on storages with " +
		"instant_clone). An ISO image is not a volume source (422).",
	"getVolume":  "Returns one volume with the VMs that use it.",
	"editVolume": "Changes a volume's name, description, read_only or shareable; absent fields stay as they are.",
	"extendVolume": "Grows a volume to size bytes: volumes only grow (422 otherwise); a volume used by a VM that is not " +
		"shut off cannot be extended (409).",
	"deleteVolume": "Deletes a volume no VM uses (409 in_use otherwise) and its file.",
	"listImages": "Lists images, newest first, a page at a time: pass next_cursor as cursor for the next page. " +
		"Filters combine; an unknown status is 422.",
	"getImage":    "Returns one image with the VMs that use it as a cdrom.",
	"editImage":   "Changes an image's name or description; absent fields stay as they are.",
	"deleteImage": "Deletes an image no VM uses (409 in_use otherwise) and its file.",
	"listVMs": "Lists VMs, newest first, a page at a time: pass next_cursor as cursor for the next page. Filters " +
		"combine; an unknown status or power_state is 422.",
	"createVM": "Defines a VM: CPU topology and mode, memory, firmware, boot order, disks (existing volumes or new " +
		"ones created with it), images as cdroms, network interfaces and a VNC or SPICE console. The VM is created shut " +
		"off; nothing is left behind when a step fails.",
	"getVM": "Returns one VM with its power state as the hypervisor last reported it.",
	"editVM": "Changes a VM that is shut off: absent fields stay as they are, lists given replace the current ones " +
		"(volumes no longer listed are detached, not deleted).",
	"deleteVM": "Deletes a VM that is shut off; with the query parameter delete_volumes=true also its volumes that " +
		"no other VM uses. A DELETE takes no request body: a request with one is refused with 400.",
	"rebootVM": "Asks a running VM's guest to reboot through ACPI; a guest may ignore it (see reset).",
	"resetVM":  "Resets a running VM at once, like a hardware reset button; the guest is not asked.",
	"stopVM": "Stops a running VM: with force at once, else by asking the guest (ACPI) and waiting up to timeout " +
		"seconds (default 60); when the guest does not stop in time, 504 and the VM keeps running unless " +
		"force_after_timeout. The body is optional.",
	"getVMConsole": "Returns where a running VM's graphical console (VNC or SPICE) listens. The console is control " +
		"of the guest: only role admin may call this (403 for a reader token).",
	"getVMConsoleLog": "Returns the end of what the VM wrote on its serial console (boot messages, a kernel panic), " +
		"kept across boots, as text/plain. It may show what the guest prints to its operator: only role admin may " +
		"call this (403 for a reader token).",
	"attachVolume": "Attaches an existing volume to a VM that is shut off, on bus virtio (default), sata or scsi.",
	"detachVolume": "Detaches a volume from a VM that is shut off; the volume is kept.",
	"healthz":      "200 while the process serves requests; it checks nothing else.",
}

// documentStatuses completes every operation's description and its list of error responses with what
// the server itself may answer besides the handler's errors:
//
//   - every operation: 431 (URL or headers over MaxURLBytes or MaxHeaderBytes);
//   - /api/v1: 401 (no or a wrong token), 422 (a parameter fails its schema or holds a control character);
//   - writes and admin-only reads: 403;
//   - a path parameter: 404 (nothing has that id) and 422;
//   - a JSON request body: 400 (malformed JSON), 413 (over MaxBodyBytes), 415 (not application/json), 422;
//   - DELETE: 400 (a request body).
func documentStatuses(api huma.API) {
	oapi := api.OpenAPI()
	problem := oapi.Components.Schemas.Schema(reflectProblem, true, "Problem")
	for _, item := range oapi.Paths {
		for _, op := range []*huma.Operation{item.Get, item.Post, item.Put, item.Patch, item.Delete} {
			if op == nil {
				continue
			}
			if op.Description == "" {
				op.Description = descriptions[op.OperationID]
			}
			codes := []int{http.StatusRequestHeaderFieldsTooLarge}
			if strings.HasPrefix(op.Path, "/api/v1/") {
				codes = append(codes, http.StatusUnauthorized, http.StatusUnprocessableEntity)
				if op.Method != http.MethodGet || op.Metadata[adminOnly] == true {
					codes = append(codes, http.StatusForbidden)
				}
			}
			if strings.Contains(op.Path, "{") {
				codes = append(codes, http.StatusNotFound, http.StatusUnprocessableEntity)
			}
			if op.RequestBody != nil && op.RequestBody.Content["application/json"] != nil {
				codes = append(codes, http.StatusBadRequest, http.StatusRequestEntityTooLarge,
					http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity)
			}
			if op.Method == http.MethodDelete {
				codes = append(codes, http.StatusBadRequest)
			}
			for _, code := range codes {
				key := strconv.Itoa(code)
				if op.Responses[key] != nil {
					continue
				}
				op.Responses[key] = &huma.Response{Description: http.StatusText(code),
					Content: map[string]*huma.MediaType{"application/problem+json": {Schema: problem}}}
				if !slices.Contains(op.Errors, code) {
					op.Errors = append(op.Errors, code)
				}
			}
		}
	}
}

// documentHeaders declares the headers of the server's cross-cutting features on every operation:
//
//   - every operation: the X-Request-Id request header, and the X-Request-Id header of its 2xx and 3xx
//     responses (every response has it; a problem also repeats it as request_id);
//   - writes through the SDK: Prefer (respond-async), the 202 answer with its operation, and Operation-Id
//     on their answers;
//   - POST writes: Idempotency-Key (409 while the first request runs, 422 for another request), and
//     Idempotent-Replayed on a replayed answer (declared on the 2xx ones; a replayed 4xx has it too);
//   - writes to one entity: If-Match (400 when malformed, 412 when the version differs);
//   - reads of one entity (their 200 has an ETag): If-None-Match and 304.
func documentHeaders(api huma.API) {
	oapi := api.OpenAPI()
	reg := oapi.Components.Schemas
	problem := reg.Schema(reflectProblem, true, "Problem")
	operationSchema := reg.Schema(reflect.TypeFor[Operation](), true, "Operation")
	maxID := 128
	if oapi.Components.Headers == nil {
		oapi.Components.Headers = map[string]*huma.Header{}
	}
	headers := oapi.Components.Headers
	headers[RequestIDHeader] = &huma.Header{Description: "The request's id: the X-Request-Id the request carried when it was " +
		"1 to 128 printable ASCII characters, else one the server made up (a UUIDv7). Problems repeat it as request_id.",
		Schema: &huma.Schema{Type: "string", MaxLength: &maxID}}
	headers[operationIDHeader] = &huma.Header{Description: "The operation the request started: GET /api/v1/operations/{id} " +
		"follows it.", Schema: &huma.Schema{Type: "string", Format: "uuid"}}
	headers[preferenceAppliedHeader] = &huma.Header{Description: "respond-async: the request was accepted for asynchronous execution.",
		Schema: &huma.Schema{Type: "string", Enum: []any{respondAsync}}}
	headers[idempotentReplayedHeader] = &huma.Header{Description: "true: this is the stored answer of the first request with " +
		"this Idempotency-Key, sent again; the request did nothing this time.", Schema: &huma.Schema{Type: "string", Enum: []any{"true"}}}
	ref := func(name string) *huma.Header { return &huma.Header{Ref: "#/components/headers/" + name} }
	problemResponse := func(op *huma.Operation, code int, desc string) {
		key := strconv.Itoa(code)
		if op.Responses[key] == nil {
			op.Responses[key] = &huma.Response{Description: desc,
				Content: map[string]*huma.MediaType{"application/problem+json": {Schema: problem}}}
		}
		if !slices.Contains(op.Errors, code) {
			op.Errors = append(op.Errors, code)
		}
	}
	header := func(resp *huma.Response, name string, h *huma.Header) {
		if resp.Headers == nil {
			resp.Headers = map[string]*huma.Header{}
		}
		if resp.Headers[name] == nil {
			resp.Headers[name] = h
		}
	}
	maxKey := MaxIdempotencyKeyBytes
	minKey := 1

	for _, item := range oapi.Paths {
		for _, op := range []*huma.Operation{item.Get, item.Post, item.Put, item.Patch, item.Delete} {
			if op == nil {
				continue
			}
			if isSDKWrite(op) {
				op.Parameters = append(op.Parameters, &huma.Param{Name: "Prefer", In: "header",
					Description: "respond-async: answer 202 Accepted with the operation at once when the work can run on any " +
						"worker, instead of waiting for it (Preference-Applied says it was); other preferences are ignored. The " +
						"worker checks an If-Match when it first writes the entity: a mismatch fails the operation (precondition_failed).",
					Schema: &huma.Schema{Type: "string", Examples: []any{respondAsync}}})
				for code, resp := range op.Responses {
					if len(code) == 3 && code[0] == '2' {
						header(resp, operationIDHeader, ref(operationIDHeader))
					}
				}
				op.Responses["202"] = &huma.Response{
					Description: "Accepted (Prefer: respond-async): the operation, pending; Location is its URL. Follow it with " +
						"GET /api/v1/operations/{id}/wait.",
					Headers: map[string]*huma.Header{
						"Location":              {Description: "The operation's URL.", Schema: &huma.Schema{Type: "string"}},
						operationIDHeader:       ref(operationIDHeader),
						preferenceAppliedHeader: ref(preferenceAppliedHeader),
					},
					Content: map[string]*huma.MediaType{"application/json": {Schema: operationSchema}},
				}
				if op.Method == http.MethodPost {
					op.Parameters = append(op.Parameters, &huma.Param{Name: IdempotencyKeyHeader, In: "header",
						Description: "Makes the request safe to retry: the first request with the key runs, and a retry with " +
							"the same key and request gets its answer again (Idempotent-Replayed: true) for 24 hours by default. " +
							"The same key with another request is 422; while the first request runs, 409. Keys belong to the token.",
						Schema: &huma.Schema{Type: "string", MinLength: &minKey, MaxLength: &maxKey}})
					for code, resp := range op.Responses {
						if len(code) == 3 && code[0] == '2' {
							header(resp, idempotentReplayedHeader, ref(idempotentReplayedHeader))
						}
					}
					problemResponse(op, http.StatusBadRequest, http.StatusText(http.StatusBadRequest))
					problemResponse(op, http.StatusConflict, http.StatusText(http.StatusConflict))
					problemResponse(op, http.StatusUnprocessableEntity, http.StatusText(http.StatusUnprocessableEntity))
				}
			}
			if isEntityWrite(op) {
				op.Parameters = append(op.Parameters, &huma.Param{Name: "If-Match", In: "header",
					Description: "Change the entity only if it is still at this version: its ETag (\"3\"), or * for any. " +
						"412 precondition_failed when it has another version; 400 when malformed.",
					Schema: &huma.Schema{Type: "string", Examples: []any{`"3"`}}})
				problemResponse(op, http.StatusBadRequest, http.StatusText(http.StatusBadRequest))
				problemResponse(op, http.StatusPreconditionFailed, "Precondition Failed: the entity is not at the version If-Match names.")
			}
			if ok := op.Responses["200"]; op.Method == http.MethodGet && ok != nil && ok.Headers["ETag"] != nil {
				op.Parameters = append(op.Parameters, &huma.Param{Name: "If-None-Match", In: "header",
					Description: "Answer 304 without a body when the entity is still at this version (its ETag, or *).",
					Schema:      &huma.Schema{Type: "string", Examples: []any{`"3"`}}})
				op.Responses["304"] = &huma.Response{Description: "Not Modified: the entity is at the version If-None-Match names.",
					Headers: map[string]*huma.Header{"ETag": ok.Headers["ETag"]}}
			}
			op.Parameters = append(op.Parameters, &huma.Param{Name: RequestIDHeader, In: "header",
				Description: "Names the request in the server's logs, problems, operations and events, and is echoed in the " +
					"response; 1 to 128 printable ASCII characters, else ignored (the server makes one up).",
				Schema: &huma.Schema{Type: "string", MaxLength: &maxID}})
			// Every answer carries X-Request-Id; it is declared on the successful ones (problems repeat it in
			// their request_id, and declaring it on each error response would only bloat generated clients).
			for code, resp := range op.Responses {
				if len(code) == 3 && (code[0] == '2' || code[0] == '3') {
					header(resp, RequestIDHeader, ref(RequestIDHeader))
				}
			}
		}
	}
}
