// Package validate holds the field rules shared by the openvair request types.
package validate

import (
	"regexp"
	"unicode"
	"unicode/utf8"

	"github.com/openvair/openvair/internal/errkind"
)

// MaxNameLen is the longest name any entity may have.
const MaxNameLen = 60

// MaxDescriptionLen is the longest description any entity may have.
const MaxDescriptionLen = 255

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Name checks an entity name: 1..60 characters, letters, digits, '.', '_' and '-', starting with a letter or
// digit.
func Name(v *errkind.Validator, field, name string) {
	switch {
	case name == "":
		v.Add(field, "must not be empty")
	case utf8.RuneCountInString(name) > MaxNameLen:
		v.Add(field, "must be at most %d characters", MaxNameLen)
	case !nameRE.MatchString(name):
		v.Add(field, "may contain only letters, digits, '.', '_' and '-', and must start with a letter or digit")
	}
}

// Description checks a description: at most 255 characters, printable, no control characters.
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
		if unicode.IsControl(r) {
			v.Add(field, "must not contain control characters")
			return
		}
	}
}

// NameAndDescription checks the name and description of an edit, each when given.
func NameAndDescription(v *errkind.Validator, name, description *string) {
	if name != nil {
		Name(v, "name", *name)
	}
	if description != nil {
		Description(v, "description", *description)
	}
}
