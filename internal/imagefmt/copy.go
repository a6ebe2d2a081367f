package imagefmt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/qcow2"
)

// BufferSize is the size of the buffers Copy reads, hashes and writes. It is at least the largest qcow2
// cluster, so the first buffer holds the whole qcow2 header area (extensions and backing file name).
const BufferSize = 2 << 20

// maxEmptyReads bounds how many (0, nil) reads in a row are tolerated before giving up.
const maxEmptyReads = 100

var bufPool = sync.Pool{New: func() any { b := make([]byte, BufferSize); return &b }}

// Copy streams r into w in large buffers (1 MiB or more, reused via sync.Pool), computing SHA-256 as it goes,
// detecting the format from the content, refusing a qcow2 whose header has a backing file or an external data
// file (errkind.Invalid) as soon as the header has arrived, enforcing maxSize (0 = no limit; errkind.TooLarge as
// soon as one byte more than maxSize is read), and checking ctx between buffers (ctx.Err()). It returns
// driver.ImageInfo{Size, SHA256 (hex), Format}. It never removes anything: the caller deletes the partial file on error.
//
// Nothing is written before the first buffer (BufferSize bytes, or the whole input when shorter) has been
// read and checked, so a refused qcow2 or an over-limit small input leaves w untouched.
func Copy(ctx context.Context, w io.Writer, r io.Reader, maxSize int64) (driver.ImageInfo, error) {
	return copyLoop(ctx, r, maxSize, func(p []byte, _ int64) error {
		n, err := w.Write(p)
		if err == nil && n < len(p) {
			err = io.ErrShortWrite
		}
		return err
	})
}

// CopyAt is Copy for a destination written at offsets (an NFS file): the i-th byte of r goes to offset i.
func CopyAt(ctx context.Context, w io.WriterAt, r io.Reader, maxSize int64) (driver.ImageInfo, error) {
	return copyLoop(ctx, r, maxSize, func(p []byte, off int64) error {
		n, err := w.WriteAt(p, off)
		if err == nil && n < len(p) {
			err = io.ErrShortWrite
		}
		return err
	})
}

// copyLoop reads r buffer by buffer and hands each buffer, with its offset in the stream, to a second
// goroutine that hashes and sinks it while the next buffer is being read. It returns only after that
// goroutine has finished, so nothing is written after Copy returns.
func copyLoop(ctx context.Context, r io.Reader, maxSize int64, sink func(p []byte, off int64) error) (driver.ImageInfo, error) {
	var info driver.ImageInfo
	if maxSize < 0 {
		return info, errkind.New(errkind.Invalid, "image", "", "negative size limit %d", maxSize)
	}
	p := newPipeline(sink)
	total, err := readChunks(ctx, r, maxSize, p, &info)
	if werr := p.close(); err == nil {
		err = werr
	}
	if err != nil {
		return info, err
	}
	info.Size = total
	info.SHA256 = hex.EncodeToString(p.hash.Sum(nil))
	return info, nil
}

// readChunks is the reading side of copyLoop: it fills buffers, checks the first one and passes them on.
func readChunks(ctx context.Context, r io.Reader, maxSize int64, p *pipeline, info *driver.ImageInfo) (int64, error) {
	var total int64
	for first := true; ; first = false {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		bp, err := p.buffer()
		if err != nil {
			return total, err
		}
		buf := *bp
		if maxSize > 0 {
			// Never read more than one byte past the limit.
			buf = buf[:min(int64(len(buf)), maxSize+1-total)]
		}
		n, eof, err := fill(r, buf)
		if err != nil {
			p.release(bp)
			return total, err
		}
		total += int64(n)
		if maxSize > 0 && total > maxSize {
			p.release(bp)
			return total, errkind.New(errkind.TooLarge, "image", "", "image is larger than the limit of %d bytes", maxSize)
		}
		if first {
			info.Format = Detect(buf[:n])
			if info.Format == driver.ImageQCOW2 {
				if err := checkQCOW2(buf[:n]); err != nil {
					p.release(bp)
					return total, err
				}
			}
		}
		p.send(bp, n, total-int64(n))
		if eof {
			return total, nil
		}
	}
}

// pipeline hashes and sinks buffers in two goroutines of their own, each in stream order and at its own
// pace: a buffer goes back to the reader when both are done with it. With inFlight buffers, reading,
// hashing and writing all overlap.
type pipeline struct {
	sink     func([]byte, int64) error
	hash     hash.Hash
	toHash   chan chunk
	toSink   chan chunk
	free     chan *[]byte
	failed   chan struct{} // closed after the first write error, stored in werr
	finished sync.WaitGroup
	werr     error
}

type chunk struct {
	buf  *[]byte
	n    int
	off  int64
	refs *atomic.Int32 // workers still using buf
}

const inFlight = 4

func newPipeline(sink func([]byte, int64) error) *pipeline {
	p := &pipeline{
		sink: sink, hash: sha256.New(),
		toHash: make(chan chunk, inFlight), toSink: make(chan chunk, inFlight), free: make(chan *[]byte, inFlight),
		failed: make(chan struct{}),
	}
	for range inFlight {
		p.free <- bufPool.Get().(*[]byte)
	}
	p.finished.Add(2)
	go p.hasher()
	go p.writer()
	return p
}

// done returns c's buffer to the reader once both workers are finished with it.
func (p *pipeline) done(c chunk) {
	if c.refs.Add(-1) == 0 {
		p.free <- c.buf
	}
}

func (p *pipeline) hasher() {
	defer p.finished.Done()
	for c := range p.toHash {
		p.hash.Write((*c.buf)[:c.n])
		p.done(c)
	}
}

func (p *pipeline) writer() {
	defer p.finished.Done()
	for c := range p.toSink {
		if p.werr == nil {
			if err := p.sink((*c.buf)[:c.n], c.off); err != nil {
				p.werr = fmt.Errorf("imagefmt: write at %d: %w", c.off, err)
				close(p.failed)
			}
		}
		p.done(c)
	}
}

// buffer returns a free buffer, or the write error once one has happened.
func (p *pipeline) buffer() (*[]byte, error) {
	select {
	case <-p.failed:
		return nil, p.werr
	default:
	}
	select {
	case bp := <-p.free:
		return bp, nil
	case <-p.failed:
		return nil, p.werr
	}
}

// release gives back a buffer that was not sent.
func (p *pipeline) release(bp *[]byte) { p.free <- bp }

func (p *pipeline) send(bp *[]byte, n int, off int64) {
	refs := &atomic.Int32{}
	refs.Store(2)
	c := chunk{bp, n, off, refs}
	p.toHash <- c
	p.toSink <- c
}

// close waits until everything sent has been hashed and written, returns the buffers to the pool and
// reports the first write error.
func (p *pipeline) close() error {
	close(p.toHash)
	close(p.toSink)
	p.finished.Wait()
	for range inFlight {
		bufPool.Put(<-p.free)
	}
	return p.werr
}

// fill reads into p until it is full or r ends; eof reports the end of r.
func fill(r io.Reader, p []byte) (n int, eof bool, err error) {
	empty := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		switch {
		case errors.Is(err, io.EOF):
			return n, true, nil
		case err != nil:
			return n, false, fmt.Errorf("imagefmt: read: %w", err)
		case m == 0:
			if empty++; empty >= maxEmptyReads {
				return n, false, fmt.Errorf("imagefmt: read: %w", io.ErrNoProgress)
			}
		default:
			empty = 0
		}
	}
	return n, false, nil
}

// checkQCOW2 refuses a qcow2 image that would make a hypervisor open other files (a backing file or an
// external data file), or whose header is not valid. head is the start of the image: at least
// BufferSize bytes unless the image is shorter, so it holds the whole header area.
func checkQCOW2(head []byte) error {
	h, err := qcow2.ReadHeader(bytes.NewReader(head))
	if err != nil {
		return errkind.Wrap(errkind.Invalid, err, "image", "", "invalid qcow2 image")
	}
	if h.BackingFile != "" || h.BackingFileOffset != 0 {
		return errkind.New(errkind.Invalid, "image", "", "qcow2 image with a backing file (%q) is not accepted", h.BackingFile)
	}
	if h.HasDataFile() {
		return errkind.New(errkind.Invalid, "image", "", "qcow2 image with an external data file (%q) is not accepted", h.ExternalDataFile)
	}
	return nil
}
