package deadline

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestEnsure(t *testing.T) {
	ctx, cancel := Ensure(context.Background(), time.Minute)
	defer cancel()
	dl, ok := ctx.Deadline()
	assert.True(t, ok, "a context without deadline gets one")
	assert.WithinDuration(t, time.Now().Add(time.Minute), dl, 5*time.Second)

	short, cancelShort := context.WithTimeout(context.Background(), time.Second)
	defer cancelShort()
	ctx2, cancel2 := Ensure(short, time.Hour)
	defer cancel2()
	dl2, _ := ctx2.Deadline()
	want, _ := short.Deadline()
	assert.Equal(t, want, dl2, "an earlier deadline is kept")

	long, cancelLong := context.WithTimeout(context.Background(), time.Hour)
	defer cancelLong()
	ctx3, cancel3 := Ensure(long, time.Second)
	defer cancel3()
	dl3, _ := ctx3.Deadline()
	assert.True(t, dl3.Before(time.Now().Add(2*time.Second)), "a later deadline is shortened")
}
