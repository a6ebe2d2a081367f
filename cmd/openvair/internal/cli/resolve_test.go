package cli

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/cmd/openvair/internal/exitcode"
)

func TestResolve(t *testing.T) {
	a := uuid.MustParse("01a23522-2cd3-7daa-a03f-d5b8db1f56ff")
	b := uuid.MustParse("01a23522-357b-727a-8802-9d842063b1fd")
	c := uuid.MustParse("7f000000-0000-7000-8000-000000000001")
	all := []candidate{{ID: a, Name: "web", Where: "storage s1"}, {ID: b, Name: "web", Where: "storage s2"}, {ID: c, Name: "db"}}
	calls := 0
	list := func(context.Context) ([]candidate, error) { calls++; return all, nil }

	for _, tc := range []struct {
		name, arg string
		want      uuid.UUID
		code      int
		listed    bool
	}{
		{name: "full id, no listing", arg: c.String(), want: c},
		{name: "unknown full id is taken as is", arg: uuid.Nil.String(), want: uuid.Nil},
		{name: "unique name", arg: "db", want: c, listed: true},
		{name: "ambiguous name", arg: "web", code: exitcode.Usage, listed: true},
		{name: "missing name", arg: "nope", code: exitcode.NotFound, listed: true},
		{name: "id prefix", arg: "7f000000-00", want: c, listed: true},
		{name: "ambiguous id prefix", arg: "01a23522", code: exitcode.Usage, listed: true},
		{name: "short prefix is a name", arg: "7f00", code: exitcode.NotFound, listed: true},
		{name: "names are exact", arg: "WEB", code: exitcode.NotFound, listed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls = 0
			got, err := resolve(t.Context(), "volume", tc.arg, list)
			assert.Equal(t, tc.listed, calls == 1, "listed")
			if tc.code != 0 {
				require.Error(t, err)
				assert.Equal(t, tc.code, exitcode.Of(err), "%v", err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// An ambiguous name lists every candidate with where it is.
func TestResolveAmbiguousListsCandidates(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	_, err := resolve(t.Context(), "image", "iso", func(context.Context) ([]candidate, error) {
		return []candidate{{ID: a, Name: "iso", Where: "storage x"}, {ID: b, Name: "iso", Where: "storage y"}}, nil
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), a.String()+" (storage x)")
	assert.Contains(t, err.Error(), b.String()+" (storage y)")
	assert.Contains(t, err.Error(), `"iso" names 2 images`)
	assert.True(t, errors.Is(notFound(errors.New("x")), openvair.ErrNotFound))
}

// A failed listing is the listing's error.
func TestResolveListError(t *testing.T) {
	boom := errors.New("boom")
	_, err := resolve(t.Context(), "vm", "x", func(context.Context) ([]candidate, error) { return nil, boom })
	require.ErrorIs(t, err, boom)
}
