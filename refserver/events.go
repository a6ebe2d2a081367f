package refserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/google/uuid"

	"github.com/openvair/openvair/internal/event"
	"github.com/openvair/openvair/vm"
)

// Event is one change, the data of a message of GET /api/v1/events: the changed entity as the REST
// endpoints return it, and where the change came from.
type Event struct {
	ID          int64      `json:"id" doc:"The event's id. Ids grow in commit order: resume after the last one seen with since or Last-Event-ID."`
	Type        string     `json:"type" enum:"storage.created,storage.updated,storage.deleted,volume.created,volume.updated,volume.deleted,image.created,image.updated,image.deleted,vm.created,vm.updated,vm.deleted,operation.created,operation.updated,operation.deleted" doc:"<resource>.<created|updated|deleted>."`
	Resource    string     `json:"resource" enum:"storage,volume,image,vm,operation" doc:"The kind of entity that changed."`
	ResourceID  uuid.UUID  `json:"resource_id" format:"uuid" doc:"The entity that changed."`
	Version     int64      `json:"version" doc:"The entity's version after the change (its last version for a delete)."`
	OperationID *uuid.UUID `json:"operation_id,omitempty" format:"uuid" doc:"The operation that made the change; absent for changes made outside an operation (monitors)."`
	RequestID   string     `json:"request_id,omitempty" doc:"The X-Request-Id of the request that started the change."`
	Requester   string     `json:"requester,omitempty" doc:"The name of the token whose request started the change."`
	Time        time.Time  `json:"time" doc:"When the change was made."`
	Data        EventData  `json:"data" doc:"The entity after the change, as GET returns it; null for a delete."`
}

// EventData is the entity of an event: a Storage, Volume, Image, VM or Operation, or null.
type EventData struct{ v any }

// MarshalJSON writes the entity (null for none).
func (d EventData) MarshalJSON() ([]byte, error) { return json.Marshal(d.v) }

// Schema implements huma.SchemaProvider: one of the entities, or null.
func (EventData) Schema(r huma.Registry) *huma.Schema {
	one := func(t reflect.Type, name string) *huma.Schema { return r.Schema(t, true, name) }
	return &huma.Schema{
		Description: "The entity after the change, as GET returns it (a VM never shows its graphics password); null for a delete.",
		OneOf: []*huma.Schema{
			one(reflect.TypeFor[Storage](), "Storage"), one(reflect.TypeFor[Volume](), "Volume"),
			one(reflect.TypeFor[Image](), "Image"), one(reflect.TypeFor[VM](), "VM"),
			one(reflect.TypeFor[Operation](), "Operation"), {Type: "null"},
		},
	}
}

// eventResources are the kinds of entity events are about, and eventVerbs what happened to them.
var (
	eventResources = []string{"storage", "volume", "image", "vm", "operation"}
	eventVerbs     = []string{"created", "updated", "deleted"}
)

// eventWriteTimeout bounds one write of an event stream: a client that does not read for that long is
// cut off.
const eventWriteTimeout = time.Minute

type eventsInput struct {
	Resource    string `query:"resource" enum:"storage,volume,image,vm,operation" doc:"Only events about this kind of entity."`
	ResourceID  string `query:"resource_id" format:"uuid" doc:"Only events about this entity."`
	Type        string `query:"type" maxLength:"1024" pattern:"^ *(storage|volume|image|vm|operation)\\.(created|updated|deleted) *(, *(storage|volume|image|vm|operation)\\.(created|updated|deleted) *)*$" patternDescription:"comma-separated event types" doc:"Only events of these types, comma-separated: <resource>.<created|updated|deleted>, for example volume.created,vm.updated."`
	Since       string `query:"since" pattern:"^(-1|[0-9]{1,19})$" patternDescription:"an event id, or -1" doc:"Resume after this event id: every later event is sent, then the stream follows live. Absent or -1: only events from now on. Last-Event-ID wins over it."`
	LastEventID string `header:"Last-Event-ID" maxLength:"19" doc:"The id of the last event received, as EventSource sends it when it reconnects: resume after it (wins over since)."`
}

type eventsOutput struct {
	Cursor string `header:"Event-Cursor" doc:"The id the stream starts after: the newest event at the time of the request when neither since nor Last-Event-ID was given. A client that loses the stream before any event arrived resumes after it, so it misses nothing."`
	Body   func(huma.Context)
}

// eventsDescription is the description of GET /api/v1/events.
const eventsDescription = "Follows every change of storages, volumes, images, VMs and operations as Server-Sent Events " +
	"(text/event-stream), in commit order. Each message has `id` (the event id), `event` (the event type, " +
	"<resource>.<created|updated|deleted>) and `data` (the Event as JSON, with the entity as GET returns it). " +
	"A comment line (`: ping`) is sent whenever the stream was idle for the server's heartbeat interval " +
	"(15 s by default). Without since or Last-Event-ID the stream starts now; with one of them it first sends " +
	"every event after that id, exactly once, so a client that reconnects with the last id it received " +
	"misses nothing. Events are kept for a limited time (7 days by default): a resume from an id whose " +
	"successors are gone, or from an id this server never handed out, is 410 (gone): list the entities " +
	"again and follow from now. Filters combine. Role reader may follow the stream."

// registerEvents registers GET /api/v1/events.
func (s *server) registerEvents(api huma.API) {
	op := s.op(http.MethodGet, "/api/v1/events", "streamEvents", "Follow changes (Server-Sent Events)", "events",
		http.StatusGone, http.StatusServiceUnavailable)
	op.Description = eventsDescription
	op.Responses = map[string]*huma.Response{"200": {
		Description: "The stream of events, until the client goes away or the server shuts down.",
		Content:     map[string]*huma.MediaType{"text/event-stream": {Schema: eventStreamSchema(api)}},
	}}
	huma.Register(api, op, func(ctx context.Context, in *eventsInput) (*eventsOutput, error) {
		svc := s.sys.Events
		if svc == nil {
			return nil, newProblem(http.StatusServiceUnavailable, "unavailable", "this server records no events")
		}
		f, since, p := in.parse()
		if p != nil {
			return nil, p
		}
		if since < 0 {
			// "Now" is before the answer starts: a change the client makes once it has the answer's
			// headers is in the stream.
			last, err := svc.Last(ctx)
			if err != nil {
				return nil, s.problemOf(ctx, err)
			}
			since = last
		} else if err := svc.Resumable(ctx, since); err != nil {
			return nil, s.problemOf(ctx, err)
		}
		return &eventsOutput{Cursor: strconv.FormatInt(since, 10),
			Body: func(hctx huma.Context) { s.streamEvents(hctx, svc, since, f) }}, nil
	})
}

// eventStreamSchema documents the stream: a sequence of messages whose data is an Event.
func eventStreamSchema(api huma.API) *huma.Schema {
	ev := api.OpenAPI().Components.Schemas.Schema(reflect.TypeFor[Event](), true, "Event")
	return &huma.Schema{
		Title: "Server-Sent Events",
		Description: "The stream, as UTF-8 text in the Server-Sent Events format: messages of `id`, `event` and `data` " +
			"lines ending with an empty line, and heartbeat comments (`: ping`). Each item is one message.",
		Type: huma.TypeArray,
		Items: &huma.Schema{
			Title:       "EventMessage",
			Description: "One message.",
			Type:        huma.TypeObject,
			Properties: map[string]*huma.Schema{
				"id":    {Type: huma.TypeInteger, Format: "int64", Description: "The event id (the last one received is the client's Last-Event-ID)."},
				"event": {Type: huma.TypeString, Description: "The event type, as the data's type."},
				"data":  ev,
			},
			Required: []string{"id", "event", "data"},
		},
	}
}

// parse checks the input: the filter, and the id to resume after (-1: from now).
func (in *eventsInput) parse() (event.Filter, int64, *Problem) {
	var f event.Filter
	var bad []*huma.ErrorDetail
	f.Resource = in.Resource
	if in.ResourceID != "" {
		id, err := uuid.Parse(in.ResourceID)
		if err != nil {
			return f, 0, invalidUUID("query", "resource_id", in.ResourceID)
		}
		f.ResourceID = id
	}
	for t := range strings.SplitSeq(in.Type, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		resource, verb, _ := strings.Cut(t, ".")
		if !slices.Contains(eventResources, resource) || !slices.Contains(eventVerbs, verb) {
			bad = append(bad, &huma.ErrorDetail{Location: "query.type", Value: t,
				Message: "an event type is <resource>.<verb>: resource storage, volume, image, vm or operation; verb created, updated or deleted"})
			continue
		}
		f.Types = append(f.Types, t)
	}
	since := int64(-1)
	if in.Since != "" {
		n, err := strconv.ParseInt(in.Since, 10, 64)
		if err != nil || n < -1 {
			bad = append(bad, &huma.ErrorDetail{Location: "query.since", Value: in.Since, Message: "must be an event id or -1"})
		}
		since = n
	}
	if in.LastEventID != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(in.LastEventID), 10, 64)
		if err != nil || n < 0 {
			bad = append(bad, &huma.ErrorDetail{Location: "header.Last-Event-ID", Value: in.LastEventID, Message: "must be an event id"})
		}
		since = n
	}
	if len(bad) > 0 {
		p := newProblem(http.StatusUnprocessableEntity, "invalid", "invalid event filter or resume id")
		p.Errors = bad
		return f, 0, p
	}
	return f, since, nil
}

// streamEvents writes the events of svc after since that match f until the client goes away, the
// server shuts down, or the subscription fails.
func (s *server) streamEvents(hctx huma.Context, svc *event.Service, since int64, f event.Filter) {
	r, w := humago.Unwrap(hctx)
	rc := http.NewResponseController(w)
	// An event stream lasts: no read deadline (when one expires net/http cancels the request), and a
	// deadline for each write instead of one for the whole response.
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	ctx, cancel := context.WithCancel(hctx.Context())
	defer cancel()
	shutdown := serverShutdown(r) // before the client sees an answer: a Shutdown from then on ends the stream

	hctx.SetHeader("Content-Type", "text/event-stream")
	hctx.SetHeader("Cache-Control", "no-cache")
	hctx.SetHeader("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	hctx.SetStatus(http.StatusOK)
	bw := hctx.BodyWriter()
	write := func(b []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		if _, err := bw.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	// Counted before the client sees the answer, so a scrape made once it has the headers counts it.
	s.metrics.subscribers.Inc()
	defer s.metrics.subscribers.Dec()
	if err := rc.Flush(); err != nil {
		s.log.WarnContext(ctx, "event stream: cannot flush", "err", err)
		return
	}

	// The subscription runs in its own goroutine, so that heartbeats go out while it waits.
	type item struct {
		e   event.Event
		err error
	}
	items := make(chan item)
	go func() {
		defer close(items)
		for e, err := range svc.Subscribe(ctx, since, f) {
			select {
			case items <- item{e, err}:
			case <-ctx.Done():
				return
			}
		}
	}()

	heartbeat := time.NewTimer(s.cfg.EventHeartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-shutdown:
			return
		case <-heartbeat.C:
			if write([]byte(": ping\n\n")) != nil {
				return
			}
		case it, ok := <-items:
			if !ok {
				return
			}
			if it.err != nil {
				if !errors.Is(it.err, context.Canceled) {
					s.log.WarnContext(ctx, "event stream ended", "err", it.err)
				}
				return
			}
			msg, err := s.eventMessage(&it.e)
			if err != nil {
				s.log.ErrorContext(ctx, "event stream: cannot encode an event", "id", it.e.ID, "err", err)
				return
			}
			if write(msg) != nil {
				return
			}
		}
		heartbeat.Reset(s.cfg.EventHeartbeat)
	}
}

// messageCache keeps the rendered messages of recent events: every stream sends the same bytes for an
// event, so with many subscribers each event is decoded and encoded once, not once per subscriber.
type messageCache struct {
	mu   sync.Mutex
	msgs map[int64][]byte
	ring [1024]int64
	next int
}

func (c *messageCache) get(id int64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.msgs[id]
	return m, ok
}

func (c *messageCache) put(id int64, msg []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.msgs == nil {
		c.msgs = map[int64][]byte{}
	}
	if _, ok := c.msgs[id]; ok {
		return
	}
	delete(c.msgs, c.ring[c.next])
	c.ring[c.next] = id
	c.next = (c.next + 1) % len(c.ring)
	c.msgs[id] = msg
}

// eventMessage renders e as one Server-Sent Events message (the bytes are shared: do not modify them).
func (s *server) eventMessage(e *event.Event) ([]byte, error) {
	if msg, ok := s.messages.get(e.ID); ok {
		return msg, nil
	}
	msg, err := s.renderEvent(e)
	if err == nil {
		s.messages.put(e.ID, msg)
	}
	return msg, err
}

// renderEvent renders e as one Server-Sent Events message.
func (s *server) renderEvent(e *event.Event) ([]byte, error) {
	out := Event{ID: e.ID, Type: e.Type, Resource: e.Resource, ResourceID: e.ResourceID, Version: e.Version,
		RequestID: e.RequestID, Requester: e.Requester, Time: e.Time}
	if e.OperationID != uuid.Nil {
		id := e.OperationID
		out.OperationID = &id
	}
	data, err := eventData(e)
	if err != nil {
		// The entity cannot be read (a format this server does not know): the event is still sent, so
		// that the client knows the entity changed and can GET it.
		s.log.Warn("event stream: cannot decode an event's entity", "id", e.ID, "resource", e.Resource, "err", err)
	}
	out.Data = EventData{data}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	// JSON never holds a raw newline, so the data is one line; the type is checked by the Log's writers.
	msg := make([]byte, 0, len(b)+64)
	msg = fmt.Appendf(msg, "id: %d\nevent: %s\ndata: ", e.ID, strings.Map(dropNewline, e.Type))
	msg = append(msg, b...)
	return append(msg, "\n\n"...), nil
}

// dropNewline removes line breaks from a field of a message.
func dropNewline(r rune) rune {
	if r == '\n' || r == '\r' {
		return -1
	}
	return r
}

// eventData decodes the entity of e (as the SDK encoded it) and converts it to the API's representation,
// the one its GET returns: nil for a delete or a resource this server does not know, whose data is never
// passed on as it is.
func eventData(e *event.Event) (any, error) {
	if len(e.Data) == 0 || string(e.Data) == "null" {
		return nil, nil
	}
	switch e.Resource {
	case "storage":
		return decodeAs(e.Data, storageOut)
	case "volume":
		return decodeAs(e.Data, volumeOut)
	case "image":
		return decodeAs(e.Data, imageOut)
	case "vm":
		return decodeVM(e.Data)
	case "operation":
		return decodeAs(e.Data, operationOut)
	}
	return nil, fmt.Errorf("unknown resource %q", e.Resource)
}

// decodeAs decodes data into a T and converts it with out.
func decodeAs[T, O any](data json.RawMessage, out func(*T) O) (any, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return out(&v), nil
}

// decodeVM converts a VM's event data; the password itself is never in it, only whether one is set.
func decodeVM(data json.RawMessage) (any, error) {
	var v struct {
		vm.VM
		Graphics struct {
			PasswordSet bool `json:"password_set"`
		} `json:"graphics"`
	}
	if err := json.Unmarshal(data, &v.VM); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	out := vmOut(&v.VM)
	out.Graphics.PasswordSet = v.Graphics.PasswordSet
	return out, nil
}

// shutdowns holds, for each http.Server that serves event streams, a channel closed when it shuts down:
// http.Server.Shutdown does not cancel the requests in progress, it waits for them, and an event stream
// never ends by itself.
var shutdowns sync.Map // *http.Server -> chan struct{}

// serverShutdown returns a channel closed when the http.Server serving r shuts down (nil, never closed,
// when r does not say which server serves it).
func serverShutdown(r *http.Request) <-chan struct{} {
	hs, ok := r.Context().Value(http.ServerContextKey).(*http.Server)
	if !ok || hs == nil {
		return nil
	}
	if ch, ok := shutdowns.Load(hs); ok {
		return ch.(chan struct{})
	}
	ch := make(chan struct{})
	actual, loaded := shutdowns.LoadOrStore(hs, ch)
	if !loaded {
		hs.RegisterOnShutdown(func() {
			shutdowns.Delete(hs)
			close(ch)
		})
	}
	return actual.(chan struct{})
}
