package cursor

import (
	"testing"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRoundTrip(t *testing.T) {
	id := uuid.Must(uuid.NewV7())
	got, err := Decode(Encode(id))
	require.NoError(t, err)
	assert.Equal(t, id, got)
	got, err = Decode("")
	require.NoError(t, err)
	assert.Equal(t, uuid.Nil, got, "the empty cursor starts the list")
}

func TestDecodeRefusesForeignCursors(t *testing.T) {
	for _, c := range []string{"not base64!", "AAAA", Encode(uuid.New()) + "AA"} {
		_, err := Decode(c)
		assert.ErrorIs(t, err, errkind.Invalid, c)
	}
}

func TestLimit(t *testing.T) {
	for in, want := range map[int]int{-5: DefaultLimit, 0: DefaultLimit, 1: 1, 500: 500, MaxLimit + 1: MaxLimit} {
		assert.Equal(t, want, Limit(in), "Limit(%d)", in)
	}
}
