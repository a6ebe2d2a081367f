package revert

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestFailUndoesInReverseOrderEvenWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var order []int
	r := &Reverter{}
	for i := range 3 {
		r.Add(func(ctx context.Context) {
			assert.NoError(t, ctx.Err(), "undo runs with a live context")
			_, ok := ctx.Deadline()
			assert.True(t, ok, "and a deadline")
			order = append(order, i)
		})
	}
	r.Fail(ctx)
	r.Fail(ctx)
	assert.Equal(t, []int{2, 1, 0}, order, "once, newest first")
}

func TestSuccessKeepsEverything(t *testing.T) {
	r := &Reverter{}
	undone := false
	r.Add(func(context.Context) { undone = true })
	r.Success()
	r.Fail(context.Background())
	assert.False(t, undone)
}
