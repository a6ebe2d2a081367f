// Package output prints what the CLI shows: human tables and key/value views (text/tabwriter, stable
// column order), or the entities as the API returns them in JSON or YAML for scripts.
package output

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"
)

// Format is an output format.
type Format string

// The formats.
const (
	// Table is for people: a table for lists, key/value lines for one entity.
	Table Format = "table"
	// JSON is the entity (or a JSON array of them) as the API returns it, indented.
	JSON Format = "json"
	// YAML is the same data as YAML, keys in the API's order.
	YAML Format = "yaml"
)

// Formats lists the valid formats, for help and completion.
var Formats = []string{string(Table), string(JSON), string(YAML)}

// ParseFormat checks a format name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(s)); f {
	case Table, JSON, YAML:
		return f, nil
	}
	return "", fmt.Errorf("output format %q: want table, json or yaml", s)
}

// Renderer writes a human view.
type Renderer interface {
	Render(w io.Writer) error
}

// Print writes v in format f; for Table it writes human, which must not be nil.
func Print(w io.Writer, f Format, v any, human Renderer) error {
	switch f {
	case JSON:
		return WriteJSON(w, v)
	case YAML:
		return WriteYAML(w, v)
	}
	return human.Render(w)
}

// WriteJSON writes v as indented JSON followed by a newline.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// WriteJSONLine writes v as compact JSON on one line (JSON lines).
func WriteJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// WriteYAML writes v as YAML: v is encoded as JSON (so field names and omissions are the API's), then
// that document is written in YAML block style with its key order kept.
func WriteYAML(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return err
	}
	blockStyle(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// blockStyle clears the flow style JSON input gives every mapping and sequence; strings keep quotes only
// where YAML needs them.
func blockStyle(n *yaml.Node) {
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		n.Style &^= yaml.FlowStyle
		if len(n.Content) == 0 {
			n.Style |= yaml.FlowStyle // {} and [] stay readable
		}
	}
	if n.Kind == yaml.ScalarNode && n.Style == yaml.DoubleQuotedStyle {
		n.Style = 0
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// TableView is rows under a header, aligned in columns.
type TableView struct {
	Header []string
	Rows   [][]string
}

// NewTable returns a table with the header.
func NewTable(header ...string) *TableView { return &TableView{Header: header} }

// Add appends a row.
func (t *TableView) Add(cols ...string) { t.Rows = append(t.Rows, cols) }

// Render writes the table, two spaces between columns.
func (t *TableView) Render(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	writeRow(tw, t.Header)
	for _, r := range t.Rows {
		writeRow(tw, r)
	}
	return tw.Flush()
}

func writeRow(w io.Writer, cols []string) {
	for i, c := range cols {
		c = strings.NewReplacer("\t", " ", "\n", " ").Replace(c)
		if c == "" {
			c = "-"
		}
		if i > 0 {
			_, _ = io.WriteString(w, "\t")
		}
		_, _ = io.WriteString(w, c)
	}
	_, _ = io.WriteString(w, "\n")
}

// Field is one line of a key/value view.
type Field struct{ Key, Value string }

// FieldsView is one entity as aligned "key: value" lines.
type FieldsView []Field

// Render writes the lines; empty values print as "-".
func (f FieldsView) Render(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	for _, kv := range f {
		v := kv.Value
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", kv.Key, v)
	}
	return tw.Flush()
}

// Time prints a time in UTC to the second, "" for the zero time.
func Time(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}
