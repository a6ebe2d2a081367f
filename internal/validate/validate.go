// Package validate holds the field rules shared by the openvair request types.
package validate

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/openvair/openvair/internal/errkind"
)

// MaxNameLen is the longest name any entity may have, in characters (Unicode code points, after NFC).
const MaxNameLen = 255

// MaxDescriptionLen is the longest description any entity may have, in characters.
const MaxDescriptionLen = 255

// NormalizeName puts a name in the form it is stored and compared in: NFC, without leading or trailing
// white space. Two names that differ only in that are the same name.
func NormalizeName(name *string) {
	if name != nil {
		*name = norm.NFC.String(strings.TrimSpace(*name))
	}
}

// Name checks a name that NormalizeName has normalized. Names are data: files and domains are named by
// id, so any printable text in any script is accepted, up to MaxNameLen characters. Refused are empty names,
// control and format characters (and other non-graphic ones), '/' and '\' (names appear in CLI arguments and
// paths), and the names "." and "..".
func Name(v *errkind.Validator, field, name string) {
	switch {
	case name == "":
		v.Add(field, "must not be empty")
	case !utf8.ValidString(name):
		v.Add(field, "must be valid UTF-8")
	case utf8.RuneCountInString(name) > MaxNameLen:
		v.Add(field, "must be at most %d characters", MaxNameLen)
	case name == "." || name == "..":
		v.Add(field, "must not be %q", name)
	case strings.ContainsAny(name, `/\`):
		v.Add(field, `must not contain '/' or '\'`)
	case strings.IndexFunc(name, func(r rune) bool { return !unicode.IsGraphic(r) }) >= 0:
		v.Add(field, "must not contain control, format or other non-printable characters")
	}
}

// Description checks a description: at most MaxDescriptionLen characters, valid UTF-8, no control or
// format characters (new lines included).
func Description(v *errkind.Validator, field, d string) {
	if utf8.RuneCountInString(d) > MaxDescriptionLen {
		v.Add(field, "must be at most %d characters", MaxDescriptionLen)
		return
	}
	if !utf8.ValidString(d) {
		v.Add(field, "must be valid UTF-8")
		return
	}
	for _, r := range d {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			v.Add(field, "must not contain control or format characters")
			return
		}
	}
}

// NameAndDescription normalizes and checks the name and description of an edit, each when given.
func NameAndDescription(v *errkind.Validator, name, description *string) {
	if name != nil {
		NormalizeName(name)
		Name(v, "name", *name)
	}
	if description != nil {
		Description(v, "description", *description)
	}
}

// Filter checks a string filter of a list request (a name, a cursor): see PlainText.
func Filter(v *errkind.Validator, field, s string) {
	if msg := PlainText(s); msg != "" {
		v.Add(field, "%s", msg)
	}
}

// PlainText says what keeps s from being plain text that any store accepts ("" when nothing does):
// invalid UTF-8, or a control character.
func PlainText(s string) string {
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return "must not contain control characters"
	}
	return ""
}

// Known checks that a filter value, when given, is one of the known values.
func Known[T ~string](v *errkind.Validator, field string, value T, known ...T) {
	if value == "" {
		return
	}
	for _, k := range known {
		if value == k {
			return
		}
	}
	v.Add(field, "unknown value %q", string(value))
}

// ListFilters normalizes the name filter of a list request like a stored name and checks the name and
// cursor filters and the status filter, whose known values are the statuses of the transition table.
func ListFilters[S ~string](v *errkind.Validator, name *string, cursor string, status S, table map[S][]S) {
	NormalizeName(name)
	Filter(v, "name", *name)
	Filter(v, "cursor", cursor)
	if _, known := table[status]; status != "" && !known {
		v.Add("status", "unknown value %q", string(status))
	}
}
