package output

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type entity struct {
	ID    string            `json:"id"`
	Name  string            `json:"name"`
	Size  int64             `json:"size"`
	Tags  []string          `json:"tags"`
	Extra map[string]string `json:"extra,omitempty"`
}

func TestTable(t *testing.T) {
	tb := NewTable("ID", "NAME", "SIZE")
	tb.Add("1", "alpha", "1 GiB")
	tb.Add("22", "", "512 MiB")
	var b bytes.Buffer
	require.NoError(t, tb.Render(&b))
	assert.Equal(t, "ID  NAME   SIZE\n1   alpha  1 GiB\n22  -      512 MiB\n", b.String())
}

func TestFields(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, FieldsView{{"id", "x"}, {"description", ""}}.Render(&b))
	assert.Equal(t, "id:          x\ndescription: -\n", b.String())
}

func TestYAMLKeepsAPIOrder(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteYAML(&b, entity{ID: "01", Name: "disk: one", Size: 5, Tags: []string{}}))
	assert.Equal(t, "id: \"01\"\nname: 'disk: one'\nsize: 5\ntags: []\n", b.String())
}

func TestJSON(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, Print(&b, JSON, []entity{{ID: "a<b"}}, nil))
	assert.Equal(t, "[\n  {\n    \"id\": \"a<b\",\n    \"name\": \"\",\n    \"size\": 0,\n    \"tags\": null\n  }\n]\n", b.String())
}

func TestParseFormat(t *testing.T) {
	for _, s := range []string{"table", "json", "YAML"} {
		_, err := ParseFormat(s)
		require.NoError(t, err)
	}
	_, err := ParseFormat("xml")
	require.Error(t, err)
}

func TestTime(t *testing.T) {
	assert.Empty(t, Time(time.Time{}))
	assert.Equal(t, "2026-12-02 05:02:41 UTC", Time(time.Date(2026, 12, 2, 8, 2, 41, 9, time.FixedZone("x", 3*3600))))
}
