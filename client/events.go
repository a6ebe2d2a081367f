package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/openvair/openvair"
)

// EventOptions selects the events Events follows; zero filters match everything.
type EventOptions struct {
	// Since is where the stream starts: -1 from now on; otherwise after the event with this id (0: every
	// event the server still keeps).
	Since int64
	// Resource keeps only events about this kind of entity: storage, volume, image, vm or operation.
	Resource string
	// ResourceID keeps only events about this entity.
	ResourceID uuid.UUID
	// Types keeps only events of these types (<resource>.<created|updated|deleted>).
	Types []string
}

// maxEventBackoff caps the wait between two reconnections of an event stream.
const maxEventBackoff = 5 * time.Second

// maxEventLine is the longest line of an event stream the client reads (an event carries its entity).
const maxEventLine = 16 << 20

// Events follows the server's change log (GET /api/v1/events, Server-Sent Events) and yields every event
// that passes opts, in commit order. An event's Data is the changed entity as the API shows it (it decodes
// into the SDK's entity types: storage.Storage, volume.Volume, image.Image, vm.VM, Operation), null for a
// delete.
//
// When the stream breaks (a network error, the server restarting or answering 5xx) it reconnects with
// Last-Event-ID set to the last id seen, waiting Config.Backoff and doubling up to 5 s, so that no event is
// lost or repeated. The only errors it yields are those that reconnecting will not cure, after which the
// sequence ends: an *Error for an answer 400, 401, 403, 404, 422 or 410 (the resume id is older than the
// server's retention: list the entities again), a line over 16 MiB, and ctx's error when ctx ends. A
// message whose data is not an event is yielded as an error too, and the sequence goes on after it.
// Heartbeats are ignored.
//
// With Since -1 the stream starts at the server's "now", which the server names in the Event-Cursor header:
// a reconnection before any event arrived resumes after it, so nothing made in between is missed.
func (c *Client) Events(ctx context.Context, opts EventOptions) iter.Seq2[openvair.Event, error] {
	return func(yield func(openvair.Event, error) bool) {
		last := opts.Since
		if last < -1 {
			last = -1
		}
		wait := c.backoff
		for {
			res, err := c.openEvents(ctx, opts, last)
			switch {
			case ctx.Err() != nil:
				if res != nil {
					_ = res.Body.Close()
				}
				yield(openvair.Event{}, fmt.Errorf("client: events: %w", ctx.Err()))
				return
			case err != nil:
				var e *Error
				if errors.As(err, &e) && permanent(e.Status) {
					yield(openvair.Event{}, err)
					return
				}
			default:
				if last < 0 {
					// Where the server's "now" was: a reconnection before any event resumes there.
					if n, err := strconv.ParseInt(res.Header.Get("Event-Cursor"), 10, 64); err == nil && n >= 0 {
						last = n
					}
				}
				got, more := readEvents(res, &last, yield)
				_ = res.Body.Close()
				if !more {
					return
				}
				if ctx.Err() != nil {
					yield(openvair.Event{}, fmt.Errorf("client: events: %w", ctx.Err()))
					return
				}
				if got {
					wait = c.backoff // the connection worked: start the backoff again
				}
			}
			select {
			case <-ctx.Done():
				yield(openvair.Event{}, fmt.Errorf("client: events: %w", ctx.Err()))
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, maxEventBackoff)
		}
	}
}

// permanent reports whether an answer with this status will not change when the request is sent again.
func permanent(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

// openEvents opens the event stream after event last (-1: from now).
func (c *Client) openEvents(ctx context.Context, opts EventOptions, last int64) (*http.Response, error) {
	q := url.Values{}
	if opts.Resource != "" {
		q.Set("resource", opts.Resource)
	}
	if opts.ResourceID != uuid.Nil {
		q.Set("resource_id", opts.ResourceID.String())
	}
	if len(opts.Types) > 0 {
		q.Set("type", strings.Join(opts.Types, ","))
	}
	q.Set("since", strconv.FormatInt(last, 10))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+"/api/v1/events?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("client: events: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if last >= 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(last, 10))
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: events: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, c.decode(res, nil)
	}
	return res, nil
}

// readEvents yields the events of one stream, recording the id of each in last. got reports whether any
// event arrived; more is false when yield asked to stop.
func readEvents(res *http.Response, last *int64, yield func(openvair.Event, error) bool) (got, more bool) {
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
	var id string
	var data bytes.Buffer
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 { // the end of a message
			if data.Len() > 0 {
				e, err := decodeEvent(id, data.Bytes())
				if err == nil {
					*last = e.ID
					got = true
				} else if n, perr := strconv.ParseInt(id, 10, 64); perr == nil {
					*last = n // the next connection resumes after the bad event
				}
				if !yield(e, err) {
					return got, false
				}
			}
			id = ""
			data.Reset()
			continue
		}
		if line[0] == ':' { // a comment: the heartbeat
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			id = string(value)
		case "data":
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.Write(value)
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		// The same message would come again on every reconnection.
		yield(openvair.Event{}, fmt.Errorf("client: events: a line of the stream after event %d is over %d bytes: %w",
			*last, maxEventLine, sc.Err()))
		return got, false
	}
	return got, true // the stream ended or broke: reconnect
}

// decodeEvent decodes one message's data; the message's id wins over the data's.
func decodeEvent(id string, data []byte) (openvair.Event, error) {
	var e openvair.Event
	if err := json.Unmarshal(data, &e); err != nil {
		return openvair.Event{}, fmt.Errorf("client: event %s: %w", id, err)
	}
	if n, err := strconv.ParseInt(id, 10, 64); err == nil {
		e.ID = n
	}
	return e, nil
}
