package validate

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/openvair/openvair/internal/errkind"
)

// TestNamesAreData: names in any script, with shell and XML metacharacters, are accepted (files and domains
// use ids); only what would break a CLI argument, a path or a terminal is refused.
func TestNamesAreData(t *testing.T) {
	cases := []struct {
		in, stored string
		ok         bool
	}{
		{"web-01", "web-01", true},
		{"хранилище-1", "хранилище-1", true},
		{"ボリューム", "ボリューム", true},
		{"数据盘 2", "数据盘 2", true},
		{"🚀 launch", "🚀 launch", true},
		{`$(rm -rf ~); <x a="&">'`, `$(rm -rf ~); <x a="&">'`, true},
		{"  padded\t", "padded", true},
		{"e\u0301te\u0301", "été", true}, // decomposed é becomes the composed form
		{strings.Repeat("я", MaxNameLen), strings.Repeat("я", MaxNameLen), true},
		{strings.Repeat("я", MaxNameLen+1), "", false},
		{"", "", false},
		{"   ", "", false},
		{".", "", false},
		{"..", "", false},
		{"a/b", "", false},
		{`a\b`, "", false},
		{"a\x00b", "", false},
		{"a\nb", "", false},
		{"a\u200bb", "", false}, // zero-width space, a format character
		{"a\u202eb", "", false}, // right-to-left override
		{"\xff", "", false},
	}
	for _, c := range cases {
		name := c.in
		NormalizeName(&name)
		v := &errkind.Validator{Entity: "x"}
		Name(v, "name", name)
		if !c.ok {
			assert.Error(t, v.Err(), "%q must be refused", c.in)
			continue
		}
		assert.NoError(t, v.Err(), "%q", c.in)
		assert.Equal(t, c.stored, name, "%q is stored normalized", c.in)
	}
}

func TestDescription(t *testing.T) {
	for _, c := range []struct {
		in string
		ok bool
	}{{"any text, ünïcödé, <b>&</b>", true}, {"two\nlines", false}, {"bidi\u202e", false}, {strings.Repeat("x", MaxDescriptionLen+1), false}} {
		v := &errkind.Validator{Entity: "x"}
		Description(v, "description", c.in)
		assert.Equal(t, c.ok, v.Err() == nil, "%q", c.in)
	}
}
