package uow_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/openvair/openvair/internal/uow"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pages lists 0..n-1 in pages of size, failing at the page that starts at failAt (-1: never).
func pages(n, size, failAt int, calls *int) func(context.Context, string) ([]int, string, error) {
	return func(_ context.Context, cursor string) ([]int, string, error) {
		*calls++
		start := 0
		if cursor != "" {
			start, _ = strconv.Atoi(cursor)
		}
		if start == failAt {
			return nil, "", errors.New("page failed")
		}
		var items []int
		for i := start; i < min(n, start+size); i++ {
			items = append(items, i)
		}
		next := ""
		if start+size < n {
			next = strconv.Itoa(start + size)
		}
		return items, next, nil
	}
}

func TestAll(t *testing.T) {
	ctx := context.Background()
	calls := 0
	var got []int
	require.NoError(t, uow.ForEach(uow.All(ctx, pages(7, 3, -1, &calls)), func(i int) { got = append(got, i) }))
	assert.Equal(t, []int{0, 1, 2, 3, 4, 5, 6}, got)
	assert.Equal(t, 3, calls)

	calls = 0
	for i, err := range uow.All(ctx, pages(7, 3, -1, &calls)) {
		require.NoError(t, err)
		if i == 1 {
			break
		}
	}
	assert.Equal(t, 1, calls, "breaking stops the paging")

	got = nil
	err := uow.ForEach(uow.All(ctx, pages(7, 3, 3, &calls)), func(i int) { got = append(got, i) })
	assert.EqualError(t, err, "page failed")
	assert.Equal(t, []int{0, 1, 2}, got, "the items before the failed page were seen")
}
