package errkind

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestErrorMatchesItsKindAndCause(t *testing.T) {
	cause := errors.New("disk on fire")
	err := fmt.Errorf("extend: %w", Wrap(Unavailable, cause, "volume", "42", "storage %s unreachable", "s1"))
	assert.ErrorIs(t, err, Unavailable)
	assert.ErrorIs(t, err, cause)
	assert.NotErrorIs(t, err, NotFound)
	assert.Equal(t, "extend: volume 42: storage s1 unreachable: disk on fire", err.Error())
	assert.Equal(t, Unavailable, KindOf(err))
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "volume", e.Entity)
	assert.Nil(t, KindOf(cause))
	assert.Equal(t, "not found", New(NotFound, "", "", "").Error(), "the kind names an error without a message")
}

func TestValidatorReportsEveryField(t *testing.T) {
	v := &Validator{Entity: "vm"}
	require.NoError(t, v.Err())
	v.Check(true, "name", "fine")
	v.Check(false, "cpu", "must be %d or more", 1)
	v.Add("memory", "too small")
	err := v.Err()
	assert.ErrorIs(t, err, Invalid)
	assert.Equal(t, Invalid, KindOf(err))
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, []FieldError{{"cpu", "must be 1 or more"}, {"memory", "too small"}}, ve.Fields)
	assert.Equal(t, "invalid vm: cpu: must be 1 or more; memory: too small", err.Error())
}
