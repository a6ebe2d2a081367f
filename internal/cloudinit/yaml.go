package cloudinit

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// parseMapping parses s as a single YAML document whose root is a mapping. It returns the document node
// and the root mapping; both are nil when s holds no document or an empty (null) one. A failure is returned
// as a message fit for a field error: it names the line and never quotes the content (user_data is secret).
func parseMapping(s string) (doc, root *yaml.Node, msg string) {
	dec := yaml.NewDecoder(strings.NewReader(s))
	var d yaml.Node
	if err := dec.Decode(&d); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, ""
		}
		return nil, nil, yamlError(s, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, nil, yamlError(s, err)
	default:
		return nil, nil, fmt.Sprintf("must be a single YAML document, a second one starts at line %d", extra.Line)
	}
	if d.Kind != yaml.DocumentNode || len(d.Content) != 1 {
		return nil, nil, ""
	}
	r := d.Content[0]
	switch {
	case r.Kind == yaml.ScalarNode && r.Tag == "!!null":
		return nil, nil, ""
	case r.Kind != yaml.MappingNode:
		return nil, nil, fmt.Sprintf("must be a YAML mapping, not %s (line %d)", kindName(r), r.Line)
	}
	return &d, r, ""
}

// yamlLinePrefix is the line yaml.v3 puts before its syntax errors.
var yamlLinePrefix = regexp.MustCompile(`^line \d+: `)

// yamlError describes a syntax error of s: "invalid YAML: line 4: did not find expected key". The problem is
// yaml.v3's, the line is errorLine's: yaml.v3 reports the line where the enclosing block started, counted
// from 0, for most parser errors (a bad item on line 4 of a mapping opened on line 2 is reported on
// "line 1").
func yamlError(s string, err error) string {
	problem := yamlLinePrefix.ReplaceAllString(strings.TrimPrefix(err.Error(), "yaml: "), "")
	return fmt.Sprintf("invalid YAML: line %d: %s", errorLine(s), problem)
}

// errorLine returns the line (from 1) that makes s, which does not parse, stop parsing: the first lines
// up to the one before it parse, up to it they do not. It bisects on prefixes of whole lines, so it costs
// a few parses of s.
func errorLine(s string) int {
	ends := []int{0} // ends[k] is the length of the first k lines
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			ends = append(ends, i+1)
		}
	}
	if ends[len(ends)-1] != len(s) {
		ends = append(ends, len(s))
	}
	ok, bad := 0, len(ends)-1 // the first ok lines parse, the first bad lines do not
	for bad-ok > 1 {
		mid := (ok + bad) / 2
		if parses(s[:ends[mid]]) {
			ok = mid
		} else {
			bad = mid
		}
	}
	return bad
}

// parses reports whether every YAML document of s is well-formed.
func parses(s string) bool {
	dec := yaml.NewDecoder(strings.NewReader(s))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			return errors.Is(err, io.EOF)
		}
	}
}

// kindName names the kind of a YAML node for messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a sequence"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	default:
		return "a scalar"
	}
}

// lookup returns the value of key in mapping m, or nil. With duplicate keys the last one wins, as in
// cloud-init's YAML loader.
func lookup(m *yaml.Node, key string) *yaml.Node {
	var v *yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			v = m.Content[i+1]
		}
	}
	return v
}

// isNull reports whether n is a null scalar ("key:" with no value, "~", "null").
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// quoted returns a double-quoted string scalar: values the SDK writes are quoted so that no YAML 1.1 reader
// (cloud-init uses PyYAML) takes a host name such as "no" or "0x1f" for a boolean or a number.
func quoted(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s, Style: yaml.DoubleQuotedStyle}
}

// plainKey returns a plain string scalar for a mapping key.
func plainKey(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}
