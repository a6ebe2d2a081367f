// Package fsmtest checks a status machine against an independently written list of legal transitions:
// every pair of statuses, legal or refused.
package fsmtest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Check tries every transition between the statuses in legal (its keys): move(from, to) must return to and
// no error when legal lists it, and errkind.WrongState with from unchanged otherwise; can(from, to) must
// agree.
func Check[S ~string](t *testing.T, legal map[S][]S, can func(from, to S) bool, move func(from, to S) (S, error)) {
	t.Helper()
	for from := range legal {
		for to := range legal {
			want := slices.Contains(legal[from], to)
			t.Run(fmt.Sprintf("%s->%s", from, to), func(t *testing.T) {
				assert.Equal(t, want, can(from, to))
				got, err := move(from, to)
				if want {
					require.NoError(t, err)
					assert.Equal(t, to, got)
				} else {
					assert.ErrorIs(t, err, errkind.WrongState)
					assert.Equal(t, from, got, "a refused transition changes nothing")
				}
			})
		}
	}
}
