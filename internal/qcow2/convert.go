package qcow2

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/openvair/openvair/internal/errkind"
)

// convertChunk is how much guest data Convert and ToRaw read at once. convertBuffers buffers let reading run
// ahead of zero detection, and zero detection ahead of the convertWriters goroutines that write: two writes in
// flight keep the destination busy when one of them blocks (page cache reclaim, writeback).
const (
	convertChunk   = 4 << 20
	convertBuffers = 6
	convertWriters = 2
	rangeWindow    = 4 << 30 // how far one DataRange call of streamChunks looks (a multiple of every alignment)
)

// ConvertOptions tunes Convert.
type ConvertOptions struct {
	ClusterSize int64 // power of two in [512, 2 MiB]; default 65536
	// Progress, when not nil, is called now and then, from the goroutine that called Convert, with the number
	// of guest bytes done so far: non-decreasing, the last call with the virtual size once everything is
	// written.
	Progress func(done int64)
}

// Convert writes into f a qcow2 version 3 image of virtualSize bytes (a multiple of 512) whose guest data is
// read from src, a raw view of a disk: a raw file, or a *Reader of another qcow2 image. Bytes src lacks (it is
// shorter than virtualSize) read as zeros. Clusters that read as all zeros are not allocated, so the output
// is sparse in the qcow2 sense and small. Returns the length of the file written.
//
// f must be empty, unless it has a Truncate method (an *os.File), in which case Convert truncates a non-empty
// f first. src is read sequentially in large chunks, ahead of the writes, and only where it may hold data when
// it can tell: a DataRanger (a *Reader) says so, a raw *os.File is asked with SEEK_DATA and SEEK_HOLE; zero
// clusters inside data are still found by their content. Data is written by two goroutines at once (on
// disjoint ranges, as io.WriterAt allows), so that a slow write does not stall the others. ctx is checked
// between chunks: a cancelled ctx ends Convert with an error wrapping context.Canceled (errkind.Timeout for an
// expired deadline).
//
// The image is laid out as the header, the L1 table, data clusters and L2 tables in the order they are met,
// then the refcount blocks and the refcount table. The header is written last, after a Sync when f has one:
// an interrupted or failed Convert leaves a file without a header, never an image with wrong content. The
// caller removes it. Like Create, Convert does not sync the header itself.
func Convert(ctx context.Context, f File, src io.ReaderAt, virtualSize int64, opts ConvertOptions) (fileSize int64, err error) {
	cs := opts.ClusterSize
	if cs == 0 {
		cs = DefaultClusterSize
	}
	if cs < 1<<minClusterBits || cs > 1<<maxClusterBits || cs&(cs-1) != 0 {
		return 0, invalid("cluster size %d must be a power of two between 512 and 2 MiB", cs)
	}
	if virtualSize < 0 || virtualSize%512 != 0 {
		return 0, invalid("virtual size %d must be a non-negative multiple of 512", virtualSize)
	}
	if src == nil {
		return 0, invalid("Convert needs a source")
	}
	l, err := planCreate(virtualSize, cs, false)
	if err != nil {
		return 0, err
	}
	if !isEmpty(f) {
		t, ok := f.(interface{ Truncate(int64) error })
		if !ok {
			return 0, invalid("Convert needs an empty file")
		}
		if err := t.Truncate(0); err != nil {
			return 0, fmt.Errorf("qcow2: truncate: %w", err)
		}
	}

	w := &convertWriter{
		f: f, cs: cs, l2e: cs / 8,
		l1:     make([]uint64, l.l1Entries),
		next:   1 + l.l1Clusters, // cluster 0 is the header, then the L1 table
		curL1:  -1,
		zeros:  make([]byte, cs),
		l2Buf:  make([]byte, cs),
		l1Base: 1,
	}
	chunk := max(convertChunk/cs, 1) * cs
	write := func(p []byte, at int64) error { return writeAt(f, p, at, "data clusters") }
	err = streamChunks(ctx, src, virtualSize, chunk, cs, write, func(c []byte, off int64, emit func(p []byte, at int64)) error {
		if err := w.chunk(c, off, emit); err != nil {
			return err
		}
		if opts.Progress != nil {
			opts.Progress(off + int64(len(c)))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if err := w.finish(); err != nil {
		return 0, err
	}
	l.rtStart, l.rtClusters = w.rtStart, w.rtClusters
	l.l1Start = 1
	fileSize = w.next * cs

	// Barrier, then the header: a crash never leaves a valid header over missing data or metadata.
	if err := syncFile(f); err != nil {
		return 0, err
	}
	hdr := make([]byte, cs)
	putHeader(hdr, virtualSize, l)
	if err := writeAt(f, hdr, 0, "header"); err != nil {
		return 0, err
	}
	if opts.Progress != nil {
		opts.Progress(virtualSize)
	}
	return fileSize, nil
}

// isEmpty reports whether f reads as an empty file. Convert and ToRaw truncate only files that are not:
// truncating to zero asks ext4 to flush the file's data when it is closed (auto_da_alloc, for programs that
// replace a file by truncating it), which for a freshly written image costs a second or more per GiB.
func isEmpty(f io.ReaderAt) bool {
	var probe [1]byte
	n, _ := f.ReadAt(probe[:], 0)
	return n == 0
}

// convertWriter lays out the image Convert writes. Every cluster below next is used exactly once.
type convertWriter struct {
	f      File
	cs     int64
	l2e    int64    // entries per L2 table
	l1     []uint64 // the L1 table, written by finish
	l1Base int64    // first cluster of the L1 table
	next   int64    // next free cluster

	curL1 int64  // L1 index of the L2 table being filled, -1 when none
	l2Buf []byte // that L2 table
	l2At  int64  // the cluster reserved for it

	zeros []byte // one cluster of zeros

	rtStart, rtClusters int64 // set by finish
}

// chunk lays out the guest data c at guest offset off, a multiple of the cluster size: its non-zero clusters
// are packed towards the front of c (which is clobbered) and handed to emit in as few writes as the L2 tables
// allow. emit writes asynchronously: a region of c once emitted is not touched again.
func (w *convertWriter) chunk(c []byte, off int64, emit func(p []byte, at int64)) error {
	cs := w.cs
	base, packed := 0, 0 // c[base:packed] holds packed clusters not yet emitted
	var runHost int64    // cluster where c[base] goes
	flush := func() {
		if packed > base {
			emit(c[base:packed], runHost*cs)
		}
		base = packed
	}
	for i := 0; i < len(c); i += int(cs) {
		data := c[i:min(i+int(cs), len(c))]
		if bytes.Equal(data, w.zeros[:len(data)]) {
			continue
		}
		g := (off + int64(i)) / cs // guest cluster
		if l1i := g / w.l2e; l1i != w.curL1 {
			flush()
			if err := w.switchL2(l1i); err != nil {
				return err
			}
		}
		if packed == base {
			runHost = w.next
		}
		if i != packed {
			copy(c[packed:], data)
		}
		if len(data) < int(cs) {
			// The last cluster of a virtual size that is not a multiple of the cluster size: write it whole,
			// zero-padded. The chunk's buffer has room for it (its capacity is a multiple of the cluster size
			// and off is aligned), so c may be sliced past its length here and in flush.
			clear(c[packed+len(data) : packed+int(cs)])
		}
		packed += int(cs)
		binary.BigEndian.PutUint64(w.l2Buf[(g%w.l2e)*8:], uint64(w.next*cs)|oflagCopied)
		w.next++
	}
	flush()
	return nil
}

// switchL2 writes the L2 table being filled and starts the one of L1 index l1i in a newly reserved cluster.
func (w *convertWriter) switchL2(l1i int64) error {
	if err := w.flushL2(); err != nil {
		return err
	}
	w.curL1 = l1i
	w.l2At = w.next
	w.next++
	clear(w.l2Buf)
	w.l1[l1i] = uint64(w.l2At*w.cs) | oflagCopied
	return nil
}

func (w *convertWriter) flushL2() error {
	if w.curL1 < 0 {
		return nil
	}
	return writeAt(w.f, w.l2Buf, w.l2At*w.cs, "L2 table")
}

// finish writes the last L2 table, the L1 table, and refcount blocks and a refcount table that count every
// cluster once, placed after everything else.
func (w *convertWriter) finish() error {
	cs := w.cs
	if err := w.flushL2(); err != nil {
		return err
	}
	cw := newClusterWriter(w.f, cs, w.l1Base*cs)
	for i := int64(0); i < int64(len(w.l1)); i += cs / 8 {
		c, err := cw.next()
		if err != nil {
			return err
		}
		for j := i; j < min(i+cs/8, int64(len(w.l1))); j++ {
			binary.BigEndian.PutUint64(c[(j-i)*8:], w.l1[j])
		}
	}
	if err := cw.flush(); err != nil {
		return err
	}

	perBlock := cs * 8 >> createRefOrder
	used := w.next
	var blocks, rt int64
	for {
		total := used + blocks + rt
		b := ceilDiv(total, perBlock)
		r := ceilDiv(b*8, cs)
		if b == blocks && r == rt {
			break
		}
		blocks, rt = max(b, blocks), max(r, rt)
	}
	if rt*cs > maxRefTableBytes {
		return errkind.New(errkind.TooLarge, "qcow2", "", "image of %d clusters needs a refcount table over %d bytes; use larger clusters", used, maxRefTableBytes)
	}
	total := used + blocks + rt
	rbStart := used
	w.rtStart, w.rtClusters = used+blocks, rt
	cw = newClusterWriter(w.f, cs, rbStart*cs)
	for i := range blocks {
		c, err := cw.next()
		if err != nil {
			return err
		}
		for j := range min(perBlock, total-i*perBlock) {
			binary.BigEndian.PutUint16(c[j*2:], 1)
		}
	}
	for i := range rt {
		c, err := cw.next()
		if err != nil {
			return err
		}
		first := i * cs / 8
		for j := int64(0); j < cs/8 && first+j < blocks; j++ {
			binary.BigEndian.PutUint64(c[j*8:], uint64((rbStart+first+j)*cs))
		}
	}
	if err := cw.flush(); err != nil {
		return err
	}
	w.next = total
	return nil
}

// RawFile is the destination of ToRaw: an *os.File, or an NFS file.
type RawFile interface {
	io.WriterAt
	Truncate(size int64) error
}

// rawBlock is the granularity at which ToRaw finds zeros to leave as holes (a filesystem block).
const rawBlock = 4096

// ToRaw writes the first virtualSize bytes of the guest data of src (a *Reader of a qcow2 image, or any raw
// view) into dst as a raw image: it truncates dst to zero (unless dst reads as empty) and then to virtualSize,
// and writes only the 4 KiB blocks that hold non-zero bytes, so that zeros stay holes. Bytes src lacks read as
// zeros. Reading, ctx and progress (may be nil) work as in Convert; writes may run in parallel (as
// io.WriterAt allows). ToRaw does not sync dst; on error the caller removes it.
func ToRaw(ctx context.Context, dst RawFile, src io.ReaderAt, virtualSize int64, progress func(done int64)) error {
	if virtualSize < 0 {
		return invalid("negative virtual size %d", virtualSize)
	}
	if src == nil {
		return invalid("ToRaw needs a source")
	}
	if r, ok := dst.(io.ReaderAt); !ok || !isEmpty(r) {
		if err := dst.Truncate(0); err != nil {
			return fmt.Errorf("qcow2: truncate: %w", err)
		}
	}
	if err := dst.Truncate(virtualSize); err != nil {
		return fmt.Errorf("qcow2: truncate to %d: %w", virtualSize, err)
	}
	var zeros [rawBlock]byte
	write := func(p []byte, at int64) error {
		if _, err := dst.WriteAt(p, at); err != nil {
			return fmt.Errorf("qcow2: write raw data at %d: %w", at, err)
		}
		return nil
	}
	err := streamChunks(ctx, src, virtualSize, convertChunk, rawBlock, write, func(c []byte, off int64, emit func(p []byte, at int64)) error {
		start := -1 // first byte of the current run of non-zero blocks
		for i := 0; i < len(c); i += rawBlock {
			b := c[i:min(i+rawBlock, len(c))]
			switch zero := bytes.Equal(b, zeros[:len(b)]); {
			case !zero && start < 0:
				start = i
			case zero && start >= 0:
				emit(c[start:i], off+int64(start))
				start = -1
			}
		}
		if start >= 0 {
			emit(c[start:], off+int64(start))
		}
		if progress != nil {
			progress(off + int64(len(c)))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if progress != nil {
		progress(virtualSize)
	}
	return nil
}

// streamChunks reads the first size bytes of src in chunks of up to chunk bytes (a multiple of align),
// starting at multiples of align, and hands them in order to sink, which may modify a chunk and emit writes of
// parts of it (write(p, at) then runs on one of convertWriters goroutines; emitted parts must not overlap).
// Reading runs in a goroutine of its own, ahead of sink. Ranges that src's DataRanger reports as holes are not
// read: a chunk made only of holes is skipped, and holes inside a chunk are zeros in it. streamChunks returns
// the first error of reading, sink or a write, once every goroutine it started has ended: nothing is read or
// written after it returns.
func streamChunks(ctx context.Context, src io.ReaderAt, size, chunk, align int64, write func(p []byte, at int64) error,
	sink func(c []byte, off int64, emit func(p []byte, at int64)) error) error {
	type filled struct {
		buf *chunkBuf
		off int64
		n   int64
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	free := make(chan *chunkBuf, convertBuffers)
	full := make(chan filled, convertBuffers)
	for range convertBuffers {
		free <- &chunkBuf{b: getChunkBuf(chunk), free: free}
	}
	defer func() {
		for range convertBuffers {
			putChunkBuf((<-free).b)
		}
	}()

	// Writers.
	type job struct {
		p   []byte
		at  int64
		buf *chunkBuf
	}
	jobs := make(chan job, 4*convertBuffers)
	var writeErr error
	var writeErrOnce sync.Once
	var skipped atomic.Bool // a write was left out because ctx was done
	var writers sync.WaitGroup
	for range convertWriters {
		writers.Go(func() {
			for j := range jobs {
				if ctx.Err() != nil {
					skipped.Store(true)
				} else if err := write(j.p, j.at); err != nil {
					writeErrOnce.Do(func() { writeErr = err })
					cancel()
				}
				j.buf.release()
			}
		})
	}

	// Reader.
	ranger := dataRanger(src)
	var reader sync.WaitGroup
	reader.Go(func() {
		defer close(full)
		for pos := int64(0); pos < size; {
			if err := ctx.Err(); err != nil {
				full <- filled{err: err}
				return
			}
			start, end := pos, size
			if ranger != nil {
				// Look for data window by window, so that ctx is seen even in a huge sparse source.
				lim := min(size, pos+rangeWindow)
				var err error
				if start, end, err = ranger.DataRange(pos, lim); err != nil {
					full <- filled{err: err}
					return
				}
				if start >= lim {
					pos = lim // zeros to the end of the window
					continue
				}
			}
			var buf *chunkBuf
			select {
			case buf = <-free:
			case <-ctx.Done():
				full <- filled{err: ctx.Err()}
				return
			}
			pos = max(pos, start/align*align)
			n := min(chunk, size-pos)
			err := fillChunk(src, ranger, buf.b[:n], pos, start, end)
			full <- filled{buf: buf, off: pos, n: n, err: err}
			if err != nil {
				return
			}
			pos += n
		}
	})

	// Layout, in this goroutine.
	var err error
	for c := range full {
		if err == nil {
			err = c.err
		}
		if err == nil {
			err = ctx.Err()
		}
		if c.buf == nil {
			continue
		}
		c.buf.pending.Store(1) // held by sink until it returns
		if err == nil {
			buf := c.buf
			err = sink(buf.b[:c.n], c.off, func(p []byte, at int64) {
				buf.pending.Add(1)
				jobs <- job{p: p, at: at, buf: buf}
			})
		}
		if err != nil {
			cancel() // the reader stops at its next check; keep draining until it has
		}
		c.buf.release()
	}
	reader.Wait()
	close(jobs)
	writers.Wait()
	switch {
	case writeErr != nil:
		err = writeErr // the cause of the cancellation, if any
	case err == nil && skipped.Load():
		err = ctx.Err() // the caller's ctx ended while the last writes were queued
	}
	return ctxErr(err)
}

// chunkBuf is a chunk buffer of streamChunks, back to free once sink and every write of it are done.
type chunkBuf struct {
	b       []byte
	pending atomic.Int32
	free    chan<- *chunkBuf
}

func (c *chunkBuf) release() {
	if c.pending.Add(-1) == 0 {
		c.free <- c
	}
}

// chunkBufs recycles the chunk buffers of streamChunks between calls (a conversion needs convertBuffers
// buffers of convertChunk bytes, so that allocating and faulting them in afresh is measurable).
var chunkBufs sync.Pool

func getChunkBuf(n int64) []byte {
	if n == convertChunk {
		if b, ok := chunkBufs.Get().(*[]byte); ok {
			return (*b)[:n]
		}
	}
	return make([]byte, n)
}

func putChunkBuf(b []byte) {
	if cap(b) == convertChunk {
		chunkBufs.Put(&b)
	}
}

// fillChunk reads the guest data at [off, off+len(buf)) into buf, reading only the ranges ranger (may be
// nil) reports as data; [start, end) is the first of them, already known.
func fillChunk(src io.ReaderAt, ranger DataRanger, buf []byte, off, start, end int64) error {
	limit := off + int64(len(buf))
	for pos := off; pos < limit; {
		if pos > start || start >= end { // the known range is used up: ask for the next one
			start, end = pos, limit
			if ranger != nil {
				var err error
				if start, end, err = ranger.DataRange(pos, limit); err != nil {
					return err
				}
			}
		}
		start, end = min(max(start, pos), limit), min(end, limit)
		if end <= start && start < limit {
			end = limit // an empty range breaks the contract: read everything rather than loop
		}
		clear(buf[pos-off : start-off])
		if start >= limit {
			return nil
		}
		p := buf[start-off : end-off]
		n, err := src.ReadAt(p, start)
		if n < len(p) {
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("qcow2: read source at %d: %w", start+int64(n), err)
			}
			clear(p[n:]) // the source ends before the virtual size: zeros
		}
		pos = end
	}
	return nil
}

// ctxErr turns an expired deadline into an errkind.Timeout error and wraps cancellation; other errors pass.
func ctxErr(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded) && errkind.Name(err) == "":
		return errkind.Wrap(errkind.Timeout, err, "qcow2", "", "deadline exceeded")
	case errors.Is(err, context.Canceled) && errkind.Name(err) == "":
		return fmt.Errorf("qcow2: %w", err)
	}
	return err
}
