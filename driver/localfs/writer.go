package localfs

import (
	"errors"
	"io"
	"sync"
)

// Upload pipeline sizing: writes are gathered into chunkSize buffers, at most chunks of them in flight.
const (
	chunkSize = 1 << 20
	chunks    = 4
)

// errWriterClosed is returned by Write after Close.
var errWriterClosed = errors.New("localfs: write after close")

// asyncWriter overlaps the file writes of an upload with the hashing done by the caller: Write copies the
// data into a buffer and returns, a goroutine writes full buffers to the file in order. The first write error
// is kept (Err) and returned by every later Write and by Close, so a full disk is recognised however the
// caller wraps errors. Close must be called exactly once; it flushes and waits for the goroutine.
type asyncWriter struct {
	w    io.Writer
	cur  []byte
	full chan []byte
	free chan []byte
	done chan struct{}

	mu     sync.Mutex
	err    error
	closed bool
}

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{
		w:    w,
		full: make(chan []byte, chunks),
		free: make(chan []byte, chunks),
		done: make(chan struct{}),
	}
	for range chunks {
		a.free <- make([]byte, 0, chunkSize)
	}
	go a.run()
	return a
}

func (a *asyncWriter) run() {
	defer close(a.done)
	for buf := range a.full {
		if a.Err() == nil {
			if _, err := a.w.Write(buf); err != nil {
				a.setErr(err)
			}
		}
		a.free <- buf[:0]
	}
}

func (a *asyncWriter) setErr(err error) {
	a.mu.Lock()
	if a.err == nil {
		a.err = err
	}
	a.mu.Unlock()
}

// Err returns the first write error.
func (a *asyncWriter) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// Write queues p for writing; it blocks only while every buffer is in flight.
func (a *asyncWriter) Write(p []byte) (int, error) {
	if a.closed {
		return 0, errWriterClosed
	}
	n := 0
	for len(p) > 0 {
		if err := a.Err(); err != nil {
			return n, err
		}
		if a.cur == nil {
			a.cur = <-a.free
		}
		c := copy(a.cur[len(a.cur):cap(a.cur)], p)
		a.cur = a.cur[:len(a.cur)+c]
		n += c
		p = p[c:]
		if len(a.cur) == cap(a.cur) {
			a.full <- a.cur
			a.cur = nil
		}
	}
	return n, nil
}

// Close writes what is buffered, waits for the writes and returns the first error.
func (a *asyncWriter) Close() error {
	if a.closed {
		return errWriterClosed
	}
	a.closed = true
	if len(a.cur) > 0 {
		a.full <- a.cur
		a.cur = nil
	}
	close(a.full)
	<-a.done
	return a.Err()
}
