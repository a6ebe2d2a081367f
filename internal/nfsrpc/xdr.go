package nfsrpc

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrShortReply is returned when a reply ends before a field it must contain.
var ErrShortReply = errors.New("nfsrpc: reply too short")

// Decoder reads XDR items from a byte slice. After the first error every read returns zero and Err reports it.
type Decoder struct {
	b   []byte
	off int
	err error
}

// NewDecoder returns a Decoder over b.
func NewDecoder(b []byte) *Decoder { return &Decoder{b: b} }

// Err returns the first decoding error.
func (d *Decoder) Err() error { return d.err }

// Rest returns the bytes not read yet.
func (d *Decoder) Rest() []byte {
	if d.err != nil {
		return nil
	}
	return d.b[d.off:]
}

func (d *Decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		d.err = fmt.Errorf("%w: need %d bytes at offset %d, have %d", ErrShortReply, n, d.off, len(d.b)-d.off)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

// Uint32 reads an unsigned int.
func (d *Decoder) Uint32() uint32 {
	p := d.take(4)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint32(p)
}

// Uint64 reads an unsigned hyper.
func (d *Decoder) Uint64() uint64 {
	p := d.take(8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

// Bool reads a boolean.
func (d *Decoder) Bool() bool { return d.Uint32() != 0 }

// Opaque reads variable-length opaque data (length, bytes, padding to 4), refusing more than max bytes.
func (d *Decoder) Opaque(max int) []byte {
	n := d.Uint32()
	if d.err != nil {
		return nil
	}
	if int64(n) > int64(max) {
		d.err = fmt.Errorf("nfsrpc: opaque of %d bytes exceeds limit %d", n, max)
		return nil
	}
	p := d.take(int(n))
	d.take(pad(int(n)))
	return p
}

// Skip skips n bytes.
func (d *Decoder) Skip(n int) { d.take(n) }

func pad(n int) int { return (4 - n%4) % 4 }

// Encoder appends XDR items to a byte slice.
type Encoder struct{ B []byte }

// Uint32 appends an unsigned int.
func (e *Encoder) Uint32(v uint32) { e.B = binary.BigEndian.AppendUint32(e.B, v) }

// Uint64 appends an unsigned hyper.
func (e *Encoder) Uint64(v uint64) { e.B = binary.BigEndian.AppendUint64(e.B, v) }

// Bool appends a boolean.
func (e *Encoder) Bool(v bool) {
	if v {
		e.Uint32(1)
	} else {
		e.Uint32(0)
	}
}

// Opaque appends variable-length opaque data with its padding.
func (e *Encoder) Opaque(p []byte) {
	e.Uint32(uint32(len(p)))
	e.B = append(e.B, p...)
	e.B = append(e.B, make([]byte, pad(len(p)))...)
}
